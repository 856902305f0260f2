#!/usr/bin/env python3
"""Write the plot files of the DVC pipeline's `plots` stage from a trained run.

Reads the one run folder under RUNS_DIR (`<store>/artifacts/runs`) and writes
into OUT_DIR:

- reliability.csv: the reliability curve of the validation patients, one row
  per probability bin, from the run's metrics.json;
- top-features.csv: the features with the largest total split gain;
- roc.svg, precision-recall.svg: the ROC and precision-recall charts of the
  run's report.html. The run keeps no ROC or precision-recall points in its
  JSON files, so these two are images, not data.

Uses only the standard library.
"""

import argparse
import csv
import json
import re
import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path

# The report names each chart with an aria-label on its <svg> element.
SVG_CHARTS = {
    "roc.svg": "ROC curve",
    "precision-recall.svg": "Precision-recall curve",
}

RELIABILITY_COLUMNS = ["lower", "upper", "count", "mean_predicted", "observed_rate"]


def fail(message):
    print(f"dvc_plots.py: {message}", file=sys.stderr)
    sys.exit(1)


def find_run(runs_dir):
    """Find the only complete run folder under runs_dir, or exit with an error."""
    if not runs_dir.is_dir():
        fail(f"{runs_dir} does not exist; the train stage writes it")
    runs = sorted(p for p in runs_dir.iterdir() if (p / "model.txt").is_file())
    if len(runs) != 1:
        # DVC deletes a stage's outputs before it runs the stage, so the train
        # stage leaves exactly one run behind.
        fail(
            f"expected exactly one run with a model.txt in {runs_dir}, found {len(runs)}; "
            "`dvc repro --force train` writes a single run"
        )
    return runs[0]


def write_reliability(metrics, path):
    calibration = metrics["model"].get("calibration")
    if calibration is None:
        fail(f"{path.name}: the run's metrics.json has no calibration")
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.DictWriter(out, fieldnames=RELIABILITY_COLUMNS, lineterminator="\n")
        writer.writeheader()
        for row in calibration["reliability"]:
            writer.writerow({column: row[column] for column in RELIABILITY_COLUMNS})


def write_top_features(metrics, path):
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["feature", "gain"])
        for feature, gain in metrics["top_features"]:
            writer.writerow([feature, gain])


def extract_svg(report_html, label, path):
    """Copy the <svg> element named `label` out of the report into `path`."""
    match = re.search(
        r'<svg role="img" aria-label="' + re.escape(label) + r'".*?</svg>',
        report_html,
        flags=re.DOTALL,
    )
    if match is None:
        fail(
            f"report.html has no {label!r} chart; the report shows a placeholder in its "
            "place when the curve has no finite points or could not be drawn"
        )
    svg = match.group(0)
    try:
        ElementTree.fromstring(svg)
    except ElementTree.ParseError as error:
        fail(f"the {label!r} chart of report.html is not valid SVG: {error}")
    path.write_text('<?xml version="1.0" encoding="UTF-8"?>\n' + svg + "\n", encoding="utf-8")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs_dir", type=Path, help="the store's artifacts/runs folder")
    parser.add_argument("out_dir", type=Path, help="folder for the plot files, created if missing")
    args = parser.parse_args()

    run = find_run(args.runs_dir)
    metrics = json.loads((run / "metrics.json").read_text(encoding="utf-8"))
    report_html = (run / "report.html").read_text(encoding="utf-8")

    args.out_dir.mkdir(parents=True, exist_ok=True)
    write_reliability(metrics, args.out_dir / "reliability.csv")
    write_top_features(metrics, args.out_dir / "top-features.csv")
    for file_name, label in SVG_CHARTS.items():
        extract_svg(report_html, label, args.out_dir / file_name)


if __name__ == "__main__":
    main()
