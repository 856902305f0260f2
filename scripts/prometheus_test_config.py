#!/usr/bin/env python3
"""Write a Prometheus configuration that scrapes one local service through the
project's own scrape jobs, for checks and tests with Debian's Prometheus.

It starts from deploy/prometheus/prometheus.yml: the `sepsis` job's static target
becomes SERVICE (host:port), and rule_files become absolute paths. The jobs of
deploy/prometheus/kubernetes-pods.yml are appended with their relabel rules
unchanged, but with `kubernetes_sd_configs` replaced by static targets that carry
the meta labels Kubernetes discovery would give three pods:
  - sepsis-0: annotated for scraping on SERVICE's port and path /metrics, labelled
    app.kubernetes.io/name=sepsis, with a discovered container port (1) that the
    annotation must replace, so it is scraped as job="sepsis", pod="sepsis-0";
  - unannotated-0: running, without the scrape annotation, so it must be dropped;
  - finished-0: annotated but in phase Succeeded, so it must be dropped.
Debian's Prometheus is built without Kubernetes discovery, so this is how its
relabel rules get checked and run.

Usage: prometheus_test_config.py --deploy-dir DIR --service HOST:PORT
                                 [--interval DURATION] OUTPUT
"""

import argparse
import sys
from pathlib import Path

import yaml

FAKE_NAMESPACE = "sepsis-ews"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", type=Path, help="file to write the configuration to")
    parser.add_argument("--service", required=True, help="host:port of the service to scrape")
    parser.add_argument(
        "--interval",
        default=None,
        help="scrape and evaluation interval, such as 1s (default: the file's)",
    )
    parser.add_argument(
        "--deploy-dir",
        type=Path,
        required=True,
        help="folder with prometheus/prometheus.yml and prometheus/kubernetes-pods.yml",
    )
    args = parser.parse_args()

    host, separator, port = args.service.rpartition(":")
    if not separator or not host or not port.isdigit():
        print(f"invalid --service {args.service!r}: expected HOST:PORT", file=sys.stderr)
        return 2

    prometheus_dir = args.deploy_dir / "prometheus"
    config = yaml.safe_load((prometheus_dir / "prometheus.yml").read_text(encoding="utf-8"))
    kubernetes = yaml.safe_load(
        (prometheus_dir / "kubernetes-pods.yml").read_text(encoding="utf-8")
    )

    if args.interval:
        config.setdefault("global", {})["scrape_interval"] = args.interval
        config["global"]["evaluation_interval"] = args.interval
        config["global"]["scrape_timeout"] = args.interval
    config["rule_files"] = [
        str((prometheus_dir / pattern).resolve()) for pattern in config.get("rule_files") or []
    ]

    sepsis_jobs = [job for job in config["scrape_configs"] if job.get("job_name") == "sepsis"]
    if len(sepsis_jobs) != 1:
        print(
            f"{prometheus_dir / 'prometheus.yml'}: expected one scrape job named sepsis",
            file=sys.stderr,
        )
        return 1
    sepsis_jobs[0]["static_configs"] = [{"targets": [args.service]}]

    for job in kubernetes.get("scrape_configs") or []:
        if job.pop("kubernetes_sd_configs", None) is None:
            print(
                f"{prometheus_dir / 'kubernetes-pods.yml'}: job {job.get('job_name')!r} has no "
                "kubernetes_sd_configs, so there is no discovery to replace",
                file=sys.stderr,
            )
            return 1
        job["static_configs"] = fake_pods(host, port)
        config["scrape_configs"].append(job)

    args.output.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return 0


def fake_pods(host: str, port: str) -> list[dict]:
    """Static targets with the meta labels of Kubernetes pod discovery."""

    def pod(name: str, phase: str, annotated: bool) -> dict:
        labels = {
            "__meta_kubernetes_namespace": FAKE_NAMESPACE,
            "__meta_kubernetes_pod_name": name,
            "__meta_kubernetes_pod_phase": phase,
            "__meta_kubernetes_pod_label_app_kubernetes_io_name": "sepsis",
        }
        if annotated:
            labels["__meta_kubernetes_pod_annotation_prometheus_io_scrape"] = "true"
            labels["__meta_kubernetes_pod_annotation_prometheus_io_port"] = port
            labels["__meta_kubernetes_pod_annotation_prometheus_io_path"] = "/metrics"
        # Discovery gives the pod IP with a declared container port. Port 1 is
        # closed, so the scrape succeeds only if the annotation replaced it.
        return {"targets": [f"{host}:1"], "labels": labels}

    return [
        pod("sepsis-0", "Running", annotated=True),
        pod("unannotated-0", "Running", annotated=False),
        pod("finished-0", "Succeeded", annotated=True),
    ]


if __name__ == "__main__":
    sys.exit(main())
