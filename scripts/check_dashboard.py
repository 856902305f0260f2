#!/usr/bin/env python3
"""Check the Grafana dashboards and their provisioning files.

For every dashboard JSON file in DASHBOARDS_DIR it checks that:
  - the file parses as JSON and has a uid, a title, a schemaVersion and unique panel ids;
  - every panel, including the panels nested in rows, has targets whose `expr` is valid
    PromQL (each expression, with Grafana variables replaced by sample values, goes
    through `promtool check rules` as a recording rule);
  - every datasource reference, on panels, targets, variables and annotations, is an
    object whose type and uid a file in PROVISIONING_DIR/datasources declares.
It also checks that a file provider in PROVISIONING_DIR/dashboards reads from the folder
where the dashboards are mounted: MOUNT_PATH, or the target of the compose file's
volume for DASHBOARDS_DIR when --compose is given. With --compose, PROVISIONING_DIR
must also be mounted at /etc/grafana/provisioning.

Every problem is printed with the file, the panel title and the expression, and the
exit status is 1 if there is any.

Usage: check_dashboard.py [--promtool PATH] [--mount-path PATH] [--compose FILE]
                          PROVISIONING_DIR DASHBOARDS_DIR
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

DEFAULT_MOUNT_PATH = "/var/lib/grafana/dashboards"
PROVISIONING_MOUNT_PATH = "/etc/grafana/provisioning"

# Sample values for Grafana's built-in variables, so that an expression parses
# as PromQL. Only the syntax is checked, so any valid duration or number works.
BUILTIN_VARIABLES = {
    "__rate_interval": "1m",
    "__interval": "15s",
    "__range": "6h",
    "__rate_interval_ms": "60000",
    "__interval_ms": "15000",
    "__range_s": "21600",
    "__range_ms": "21600000",
}

# $name, ${name}, ${name:format} and [[name]]. A name starts with a letter or
# an underscore, so the "$1" of label_replace is not taken for a variable.
VARIABLE_PATTERN = re.compile(
    r"\$\{([A-Za-z_]\w*)(?::[^}]*)?\}|\$([A-Za-z_]\w*)|\[\[([A-Za-z_]\w*)\]\]"
)

# Panel types that show no query results and so need no targets.
PANELS_WITHOUT_QUERIES = {"text", "news", "dashlist", "alertlist", "annolist"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("provisioning_dir", type=Path)
    parser.add_argument("dashboards_dir", type=Path)
    parser.add_argument(
        "--promtool", default="promtool", help="promtool binary (default: promtool)"
    )
    parser.add_argument(
        "--mount-path",
        default=DEFAULT_MOUNT_PATH,
        help=f"folder where Grafana sees the dashboards (default: {DEFAULT_MOUNT_PATH})",
    )
    parser.add_argument(
        "--compose",
        type=Path,
        help="docker-compose.yml whose volumes mount the dashboards and the provisioning folder",
    )
    args = parser.parse_args()

    problems: list[str] = []
    datasources = declared_datasources(args.provisioning_dir, problems)

    mount_path = args.mount_path
    if args.compose is not None:
        mounts = compose_mounts(args.compose, problems)
        mount_path = check_compose_mounts(
            mounts, args.compose, args.dashboards_dir, args.provisioning_dir, problems
        )
    check_providers(args.provisioning_dir, mount_path, problems)

    dashboard_files = sorted(args.dashboards_dir.glob("*.json"))
    if not dashboard_files:
        problems.append(f"{args.dashboards_dir}: no dashboard (*.json) found")
    panel_count = 0
    expressions = 0
    with tempfile.TemporaryDirectory(prefix="check-dashboard-") as scratch:
        for path in dashboard_files:
            panels, exprs = check_dashboard(
                path, datasources, args.promtool, Path(scratch), problems
            )
            panel_count += panels
            expressions += exprs

    if problems:
        for problem in problems:
            print(f"FAILED: {problem}", file=sys.stderr)
        print(f"dashboard check: {len(problems)} problem(s)", file=sys.stderr)
        return 1
    print(
        f"dashboard check: {len(dashboard_files)} dashboard(s), {panel_count} panels, "
        f"{expressions} expressions valid; provider path {mount_path}"
    )
    return 0


def load_yaml(path: Path, problems: list[str]):
    try:
        with path.open(encoding="utf-8") as file:
            return yaml.safe_load(file)
    except (OSError, yaml.YAMLError) as error:
        problems.append(f"{path}: cannot read YAML: {error}")
        return None


def declared_datasources(provisioning_dir: Path, problems: list[str]) -> set[tuple[str, str]]:
    """Return the (type, uid) pairs that the datasource provisioning files declare."""
    declared = set()
    files = sorted((provisioning_dir / "datasources").glob("*.y*ml"))
    if not files:
        problems.append(
            f"{provisioning_dir / 'datasources'}: no datasource provisioning file found"
        )
    for path in files:
        document = load_yaml(path, problems) or {}
        for index, source in enumerate(document.get("datasources") or []):
            kind, uid = source.get("type"), source.get("uid")
            if not kind or not uid:
                problems.append(f"{path}: datasources[{index}] has no type or no uid")
                continue
            declared.add((kind, uid))
    return declared


def check_providers(provisioning_dir: Path, mount_path: str, problems: list[str]) -> None:
    files = sorted((provisioning_dir / "dashboards").glob("*.y*ml"))
    paths = []
    for path in files:
        document = load_yaml(path, problems) or {}
        for provider in document.get("providers") or []:
            if provider.get("type", "file") == "file":
                paths.append((path, (provider.get("options") or {}).get("path")))
    if not paths:
        problems.append(f"{provisioning_dir / 'dashboards'}: no file provider of dashboards found")
    for path, provider_path in paths:
        if provider_path is None or os.path.normpath(provider_path) != os.path.normpath(mount_path):
            problems.append(
                f"{path}: the provider reads dashboards from {provider_path!r}, "
                f"but they are mounted at {mount_path!r}"
            )


def compose_mounts(compose: Path, problems: list[str]) -> list[tuple[Path, str]]:
    """Return (host source, container target) of every bind mount in the compose file."""
    document = load_yaml(compose, problems) or {}
    mounts = []
    for service in (document.get("services") or {}).values():
        for volume in (service or {}).get("volumes") or []:
            if isinstance(volume, str):
                parts = volume.split(":")
                if len(parts) < 2:
                    continue
                source, target = parts[0], parts[1]
            else:
                source, target = volume.get("source"), volume.get("target")
                if volume.get("type", "bind") != "bind" or not source or not target:
                    continue
            # Only host paths are bind mounts. Other sources are named volumes.
            if not source.startswith((".", "/", "~")):
                continue
            host = (compose.parent / os.path.expanduser(source)).resolve()
            mounts.append((host, target))
    return mounts


def check_compose_mounts(
    mounts: list[tuple[Path, str]],
    compose: Path,
    dashboards_dir: Path,
    provisioning_dir: Path,
    problems: list[str],
) -> str:
    """Check that compose mounts both folders, and return where it mounts the dashboards."""
    dashboard_targets = [t for s, t in mounts if s == dashboards_dir.resolve()]
    provisioning_targets = [t for s, t in mounts if s == provisioning_dir.resolve()]
    if not provisioning_targets:
        problems.append(f"{compose}: no volume mounts {provisioning_dir}")
    for target in provisioning_targets:
        if os.path.normpath(target) != PROVISIONING_MOUNT_PATH:
            problems.append(
                f"{compose}: {provisioning_dir} is mounted at {target!r}, "
                f"but Grafana reads provisioning files from {PROVISIONING_MOUNT_PATH!r}"
            )
    if not dashboard_targets:
        problems.append(f"{compose}: no volume mounts {dashboards_dir}")
        return DEFAULT_MOUNT_PATH
    return dashboard_targets[0]


def walk_panels(panels: list) -> list:
    """Return the panels in order, with the panels of collapsed rows after their row."""
    result = []
    for panel in panels or []:
        result.append(panel)
        result.extend(walk_panels(panel.get("panels") or []))
    return result


def check_dashboard(
    path: Path,
    datasources: set[tuple[str, str]],
    promtool: str,
    scratch: Path,
    problems: list[str],
) -> tuple[int, int]:
    """Check one dashboard file, and return the number of panels and of expressions checked."""
    try:
        dashboard = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        problems.append(f"{path}: invalid JSON: {error}")
        return 0, 0
    name = path.name
    for key in ("uid", "title", "schemaVersion"):
        if not dashboard.get(key):
            problems.append(f"{name}: missing {key!r}")

    variables = dashboard_variables(dashboard, name, problems)
    for variable in (dashboard.get("templating") or {}).get("list") or []:
        if "datasource" in variable:
            where = f"variable {variable.get('name')!r}"
            check_datasource(variable["datasource"], datasources, name, where, problems)
    for annotation in (dashboard.get("annotations") or {}).get("list") or []:
        if "datasource" in annotation:
            where = f"annotation {annotation.get('name')!r}"
            check_datasource(annotation["datasource"], datasources, name, where, problems)

    panels = walk_panels(dashboard.get("panels") or [])
    seen_ids: dict[int, str] = {}
    expressions = 0
    for panel in panels:
        title = panel.get("title") or "(untitled)"
        panel_id = panel.get("id")
        if panel_id in seen_ids:
            problems.append(
                f"{name}: panel {title!r} has the id {panel_id} of panel {seen_ids[panel_id]!r}"
            )
        seen_ids[panel_id] = title
        kind = panel.get("type")
        if kind == "row":
            continue
        where = f"panel {title!r}"
        if kind in PANELS_WITHOUT_QUERIES:
            continue
        check_datasource(panel.get("datasource"), datasources, name, where, problems)
        targets = panel.get("targets") or []
        if not targets:
            problems.append(f"{name}: {where} has no targets")
        for target in targets:
            target_where = f"{where}, target {target.get('refId', '?')}"
            check_datasource(target.get("datasource"), datasources, name, target_where, problems)
            expr = target.get("expr")
            if not isinstance(expr, str) or not expr.strip():
                problems.append(f"{name}: {target_where} has no expr")
                continue
            expressions += 1
            check_expression(
                expr, variables, promtool, scratch, f"{name}: {target_where}", problems
            )
    return len(panels), expressions


def dashboard_variables(dashboard: dict, name: str, problems: list[str]) -> dict[str, str]:
    """Return a sample value for each variable: the built-ins and the dashboard's own."""
    values = dict(BUILTIN_VARIABLES)
    for variable in (dashboard.get("templating") or {}).get("list") or []:
        current = (variable.get("current") or {}).get("value")
        if current in ("$__all", ["$__all"]):
            current = variable.get("allValue") or ".*"
        if isinstance(current, list):
            current = "|".join(current)
        if current is None:
            problems.append(f"{name}: variable {variable.get('name')!r} has no current value")
            current = ""
        values[variable.get("name")] = str(current)
    return values


def check_datasource(
    reference, datasources: set, name: str, where: str, problems: list[str]
) -> None:
    if reference is None:
        problems.append(f"{name}: {where} has no datasource; it needs an object with type and uid")
        return
    if not isinstance(reference, dict):
        problems.append(
            f"{name}: {where}: datasource {reference!r} is not an object with type and uid"
        )
        return
    pair = (reference.get("type"), reference.get("uid"))
    if pair not in datasources:
        declared = ", ".join(f"{t}/{u}" for t, u in sorted(datasources)) or "none"
        problems.append(
            f"{name}: {where}: datasource type {pair[0]!r} uid {pair[1]!r} is not provisioned "
            f"(provisioned: {declared})"
        )


def check_expression(
    expr: str,
    variables: dict[str, str],
    promtool: str,
    scratch: Path,
    where: str,
    problems: list[str],
) -> None:
    """Check that expr parses as PromQL by running promtool on a one-rule file."""
    unknown = []

    def substitute(match: re.Match) -> str:
        variable = match.group(1) or match.group(2) or match.group(3)
        if variable not in variables:
            unknown.append(variable)
            return match.group(0)
        return variables[variable]

    promql = VARIABLE_PATTERN.sub(substitute, expr)
    if unknown:
        problems.append(
            f"{where}: unknown variable(s) {', '.join(sorted(set(unknown)))} in `{expr}`"
        )
        return

    # JSON is valid YAML, and json.dumps quotes the expression safely.
    rule_file = scratch / "expression.json"
    rule = {
        "groups": [
            {"name": "dashboard", "rules": [{"record": "dashboard:expression", "expr": promql}]}
        ]
    }
    rule_file.write_text(json.dumps(rule), encoding="utf-8")
    result = subprocess.run(
        [promtool, "check", "rules", str(rule_file)], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        output = (result.stdout + result.stderr).strip()
        detail = " ".join(
            line.strip() for line in output.splitlines() if line.strip() and "Checking" not in line
        )
        problems.append(f"{where}: invalid PromQL `{expr}`: {detail}")


if __name__ == "__main__":
    sys.exit(main())
