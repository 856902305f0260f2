"""Print an MLflow run, read with MLflow's own Python client, as one JSON object.

The tracking tests run this to check what the Rust client logged. The server
and credentials come from MLFLOW_TRACKING_URI, MLFLOW_TRACKING_USERNAME and
MLFLOW_TRACKING_PASSWORD.

Usage:
    check_mlflow.py RUN_ID [--experiment NAME] [--model NAME] [--alias ALIAS]

With --experiment, the output lists the ids of every run in that experiment.
With --model, it resolves models:/NAME@ALIAS, lists the model's versions, and
downloads the aliased version's files with SHA-256 digests.

Non-finite metric values are printed as the strings "NaN", "Infinity" and
"-Infinity", because JSON has no such numbers.
"""

import argparse
import hashlib
import json
import math
import os
import tempfile

import mlflow.artifacts
from mlflow import MlflowClient


def json_number(value):
    if isinstance(value, float) and not math.isfinite(value):
        if math.isnan(value):
            return "NaN"
        return "Infinity" if value > 0 else "-Infinity"
    return value


def artifact_paths(client, run_id, path=None):
    """Return the paths of every artifact file of a run, folders walked."""
    paths = []
    for info in client.list_artifacts(run_id, path):
        if info.is_dir:
            paths.extend(artifact_paths(client, run_id, info.path))
        else:
            paths.append(info.path)
    return sorted(paths)


def file_digests(root):
    """Return the SHA-256 of every file under root, by path relative to it."""
    digests = {}
    for folder, _, names in os.walk(root):
        for name in names:
            full = os.path.join(folder, name)
            with open(full, "rb") as handle:
                digest = hashlib.sha256(handle.read()).hexdigest()
            digests[os.path.relpath(full, root).replace(os.sep, "/")] = digest
    return digests


def describe_model(client, name, alias):
    version = client.get_model_version_by_alias(name, alias)
    versions = client.search_model_versions(f"name = '{name}'")
    with tempfile.TemporaryDirectory() as folder:
        local = mlflow.artifacts.download_artifacts(
            artifact_uri=f"models:/{name}@{alias}", dst_path=folder
        )
        files = file_digests(local)
    return {
        "version": version.version,
        "run_id": version.run_id,
        "source": version.source,
        "aliases": sorted(version.aliases),
        "all_versions": sorted(v.version for v in versions),
        "files": files,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_id")
    parser.add_argument("--experiment", help="list the run ids of this experiment")
    parser.add_argument("--model", help="registered model to resolve by alias")
    parser.add_argument("--alias", default="champion")
    args = parser.parse_args()

    client = MlflowClient()
    run = client.get_run(args.run_id)
    metric_history = {
        key: len(client.get_metric_history(args.run_id, key)) for key in run.data.metrics
    }
    output = {
        "run": {
            "run_id": run.info.run_id,
            "name": run.info.run_name,
            "experiment_id": run.info.experiment_id,
            "status": run.info.status,
            "params": run.data.params,
            "metrics": {key: json_number(value) for key, value in run.data.metrics.items()},
            "metric_history_lengths": metric_history,
            "tags": run.data.tags,
            "artifacts": artifact_paths(client, args.run_id),
        }
    }

    if args.experiment:
        experiment = client.get_experiment_by_name(args.experiment)
        runs = client.search_runs([experiment.experiment_id], max_results=1000)
        output["experiment_run_ids"] = sorted(r.info.run_id for r in runs)

    if args.model:
        output["model"] = describe_model(client, args.model, args.alias)

    print(json.dumps(output, sort_keys=True))


if __name__ == "__main__":
    main()
