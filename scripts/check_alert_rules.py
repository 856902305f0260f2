#!/usr/bin/env python3
"""Check the conventions of the Prometheus rules and that their unit tests cover them.

Every alert rule in RULES_DIR/*.yml must have a `for` duration, a severity label
(critical, warning or info) and the annotations summary, description and runbook.
The promtool unit tests in TESTS_DIR/*.yml must have, for every alert, one case where
it fires (non-empty exp_alerts) and one where it does not (empty exp_alerts). They must
name no alert that the rules lack, because promtool passes a case that expects no alert
from an alert that does not exist. Every recording rule must appear in a
promql_expr_test.

Every problem is printed with the file and the rule, and the exit status is 1 if
there is any.

Usage: check_alert_rules.py RULES_DIR TESTS_DIR
"""

import re
import sys
from pathlib import Path

import yaml

SEVERITIES = {"critical", "warning", "info"}
ANNOTATIONS = ("summary", "description", "runbook")


def main() -> int:
    if len(sys.argv) != 3:
        print("usage: check_alert_rules.py RULES_DIR TESTS_DIR", file=sys.stderr)
        return 2
    rules_dir, tests_dir = Path(sys.argv[1]), Path(sys.argv[2])
    problems: list[str] = []

    alerts: dict[str, Path] = {}
    records: dict[str, Path] = {}
    rule_files = sorted(rules_dir.glob("*.yml"))
    if not rule_files:
        problems.append(f"{rules_dir}: no rule file (*.yml) found")
    for path in rule_files:
        document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        for group in document.get("groups") or []:
            for rule in group.get("rules") or []:
                if "alert" in rule:
                    alerts[rule["alert"]] = path
                    check_alert(rule, path, problems)
                elif "record" in rule:
                    records[rule["record"]] = path

    firing: set[str] = set()
    silent: set[str] = set()
    tested_exprs: list[str] = []
    test_files = sorted(tests_dir.glob("*.yml"))
    if not test_files:
        problems.append(f"{tests_dir}: no test file (*.yml) found")
    for path in test_files:
        document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        for test in document.get("tests") or []:
            for case in test.get("alert_rule_test") or []:
                name = case.get("alertname")
                if name not in alerts:
                    test_name = test.get("name")
                    problems.append(
                        f"{path}: test {test_name!r} names alert {name!r}, which no rule defines"
                    )
                (firing if case.get("exp_alerts") else silent).add(name)
            tested_exprs.extend(case.get("expr", "") for case in test.get("promql_expr_test") or [])

    for name, path in sorted(alerts.items()):
        if name not in firing:
            problems.append(f"{path}: alert {name} has no test case where it fires")
        if name not in silent:
            problems.append(f"{path}: alert {name} has no test case where it does not fire")
    for name, path in sorted(records.items()):
        pattern = re.compile(rf"(?<![\w:]){re.escape(name)}(?![\w:])")
        if not any(pattern.search(expr) for expr in tested_exprs):
            problems.append(f"{path}: recording rule {name} has no promql_expr_test")

    if problems:
        for problem in problems:
            print(f"FAILED: {problem}", file=sys.stderr)
        return 1
    print(
        f"rule check: {len(alerts)} alerts and {len(records)} recording rule names, "
        f"each with its conventions and tests"
    )
    return 0


def check_alert(rule: dict, path: Path, problems: list[str]) -> None:
    name = rule["alert"]
    if not rule.get("for"):
        problems.append(f"{path}: alert {name} has no `for` duration")
    severity = (rule.get("labels") or {}).get("severity")
    if severity not in SEVERITIES:
        problems.append(
            f"{path}: alert {name} has severity {severity!r}, expected one of {sorted(SEVERITIES)}"
        )
    annotations = rule.get("annotations") or {}
    for key in ANNOTATIONS:
        if not annotations.get(key):
            problems.append(f"{path}: alert {name} has no {key} annotation")


if __name__ == "__main__":
    sys.exit(main())
