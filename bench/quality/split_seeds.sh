#!/usr/bin/env bash
# Runs `sepsis pipeline` on one data file once per split seed, so that each
# run holds out a different random fifth of the patients, and prints the
# validation measures of each run and their mean. One split's AUROC is
# uncertain by about ±0.02 on set A, and the mean over several splits is a
# steadier estimate of what the pipeline reaches on unseen patients.
#
# Usage: bench/quality/split_seeds.sh DATA [SEED ...] [-- PIPELINE_ARGS ...]
# Seeds are 1 to 5 by default. Arguments after -- go to each `sepsis pipeline`
# run, for example `-- --set training.folds=5`. Each run gets its own store in
# a temporary folder, removed at the end.
set -euo pipefail
source "$(dirname "$0")/../../scripts/lib/env.sh"
cd "$SEPSIS_REPO"

if [[ $# -lt 1 ]]; then
  echo "usage: $0 DATA [SEED ...] [-- PIPELINE_ARGS ...]" >&2
  exit 2
fi
data=$1
shift
seeds=()
while [[ $# -gt 0 && $1 != "--" ]]; do
  seeds+=("$1")
  shift
done
[[ $# -gt 0 ]] && shift
extra=("$@")
[[ ${#seeds[@]} -gt 0 ]] || seeds=(1 2 3 4 5)

ensure_build_deps
cargo build --release --locked --bin sepsis >&2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

for seed in "${seeds[@]}"; do
  echo "split seed $seed" >&2
  env -u MLFLOW_TRACKING_URI "$CARGO_TARGET_DIR/release/sepsis" pipeline \
    --data "$data" --store "$work/store-$seed" --set "split.seed=$seed" --json "${extra[@]}" \
    >"$work/seed-$seed.json"
done

"$SEPSIS_VENV/bin/python" - "$work" "${seeds[@]}" <<'PY'
import json
import statistics
import sys

work, seeds = sys.argv[1], sys.argv[2:]
measures = {
    "auroc_sepsis_label": lambda m: m["hourly"]["auroc_sepsis_label"],
    "utility": lambda m: m["hourly"]["utility"],
    "alerts_per_patient_day": lambda m: m["burden"]["alerts_per_patient_day"],
    "expected_calibration_error": lambda m: m["calibration"]["ece"],
}
rows = []
for seed in seeds:
    with open(f"{work}/seed-{seed}.json") as f:
        model = json.load(f)["metrics"]["model"]
    row = {"seed": int(seed), "septic_validation_patients": model["patients"]["septic_patients"]}
    row.update({name: round(read(model), 4) for name, read in measures.items()})
    rows.append(row)
    print(json.dumps(row))
summary = {"seeds": len(rows)}
for name in measures:
    values = [row[name] for row in rows]
    summary[f"{name}_mean"] = round(statistics.mean(values), 4)
    if len(values) > 1:
        summary[f"{name}_sd"] = round(statistics.stdev(values), 4)
print(json.dumps(summary))
PY
