#!/usr/bin/env python3
"""Python reference for `sepsis pipeline`, used by bench/run for the side-by-side benchmark.

Usage: reference_pipeline.py DATA OUT_DIR

DATA is a PhysioNet 2019 CSV (optionally gzip-compressed) with `patient_id` followed by the
41 challenge columns. The script runs the same seven steps as the Rust pipeline (import,
ingest, validate, transform, split, train, evaluate), writes each step's artefact under
OUT_DIR and prints one JSON line with the metrics and the wall time of each step.
It exits with status 1 when the input lacks a column, when validation fails (after writing
the validation report) or when the training rows have no positive label.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
import time
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv

CHALLENGE_COLUMNS = [
    "HR", "O2Sat", "Temp", "SBP", "MAP", "DBP", "Resp", "EtCO2",
    "BaseExcess", "HCO3", "FiO2", "pH", "PaCO2", "SaO2", "AST", "BUN", "Alkalinephos",
    "Calcium", "Chloride", "Creatinine", "Bilirubin_direct", "Glucose", "Lactate",
    "Magnesium", "Phosphate", "Potassium", "Bilirubin_total", "TroponinI", "Hct", "Hgb",
    "PTT", "WBC", "Fibrinogen", "Platelets",
    "Age", "Gender", "Unit1", "Unit2", "HospAdmTime", "ICULOS", "SepsisLabel",
]
VITALS_AND_LABS = CHALLENGE_COLUMNS[:34]
UNIT_FEATURES = ["unit_MICU", "unit_SICU", "unit_unknown"]
FEATURES = VITALS_AND_LABS + ["Age", "Gender", "HospAdmTime", "ICULOS"] + UNIT_FEATURES

# Inclusive plausibility bounds per challenge column, chosen wide enough that every value of
# training set A passes. The comments give the set A min and max (790,215 rows). EtCO2 is
# never recorded in set A.
VALUE_RANGES = {
    "HR": (0.0, 400.0),                    # 20 to 280
    "O2Sat": (0.0, 100.0),                 # 20 to 100
    "Temp": (10.0, 50.0),                  # 20.9 to 42.22
    "SBP": (0.0, 400.0),                   # 22 to 281
    "MAP": (0.0, 400.0),                   # 20 to 300
    "DBP": (0.0, 400.0),                   # 20 to 298
    "Resp": (0.0, 150.0),                  # 1 to 69
    "EtCO2": (0.0, 200.0),                 # no values
    "BaseExcess": (-100.0, 150.0),         # -32 to 100
    "HCO3": (0.0, 100.0),                  # 0 to 55
    "FiO2": (0.0, 100.0),                  # 0 to 10 as fractions, and the bound also admits %
    "pH": (6.0, 8.5),                      # 6.62 to 7.93
    "PaCO2": (0.0, 200.0),                 # 10 to 100
    "SaO2": (0.0, 100.0),                  # 24 to 100
    "AST": (0.0, 50000.0),                 # 3 to 9890
    "BUN": (0.0, 500.0),                   # 1 to 266
    "Alkalinephos": (0.0, 10000.0),        # 7 to 3833
    "Calcium": (0.0, 50.0),                # 1.6 to 22
    "Chloride": (0.0, 250.0),              # 26 to 145
    "Creatinine": (0.0, 100.0),            # 0.1 to 46.6
    "Bilirubin_direct": (0.0, 100.0),      # 0.1 to 37.5
    "Glucose": (0.0, 2000.0),              # 10 to 988
    "Lactate": (0.0, 50.0),                # 0.2 to 31
    "Magnesium": (0.0, 20.0),              # 0.2 to 9.7
    "Phosphate": (0.0, 50.0),              # 0.2 to 18.8
    "Potassium": (0.0, 50.0),              # 1 to 27.5
    "Bilirubin_total": (0.0, 100.0),       # 0.1 to 46.6
    "TroponinI": (0.0, 500.0),             # 0.3 to 49.3
    "Hct": (0.0, 100.0),                   # 5.5 to 71.7
    "Hgb": (0.0, 50.0),                    # 2.2 to 32
    "PTT": (0.0, 300.0),                   # 12.5 to 150
    "WBC": (0.0, 1000.0),                  # 0.1 to 422.9
    "Fibrinogen": (0.0, 5000.0),           # 34 to 1760
    "Platelets": (0.0, 5000.0),            # 5 to 1783
    "Age": (0.0, 120.0),                   # 18.11 to 89 (the challenge codes 90 and over as 100)
    "HospAdmTime": (-10000.0, 1000.0),     # -3710.66 to 23.99
    "ICULOS": (1.0, 5000.0),               # 1 to 336
}
# Columns whose non-missing values must be 0 or 1.
BINARY_COLUMNS = ["Gender", "Unit1", "Unit2", "SepsisLabel", "label_12h"]
# Columns that must have a value in every row.
REQUIRED_COLUMNS = ["patient_id", "Age", "Gender", "ICULOS", "SepsisLabel", "label_12h"]

SEED = 42
VALIDATION_FRACTION = 0.2
THRESHOLD = 0.5
LIGHTGBM_PARAMS = {
    "objective": "binary",
    "num_iterations": 300,
    "num_leaves": 31,
    "learning_rate": 0.05,
    "max_bin": 255,
    "seed": SEED,
    "deterministic": True,
    # The Rust side fixes the histogram mode, as LightGBM advises for
    # deterministic runs; the same setting here keeps the two trainings equal.
    "force_row_wise": True,
    "verbosity": -1,
}


class PipelineError(Exception):
    """An input or validation failure that ends the run with exit status 1."""


def import_raw(data_path: Path, out_dir: Path) -> tuple[Path, str]:
    """Read the source CSV, add `label_12h` and write raw-data/sepsis-data.csv.

    Returns the written path and its SHA-256 in hex.
    """
    df = pd.read_csv(data_path)
    missing = [column for column in ["patient_id", *CHALLENGE_COLUMNS] if column not in df.columns]
    if missing:
        raise PipelineError(f"{data_path}: missing columns {', '.join(missing)}. The file must have "
                            "patient_id followed by the 41 PhysioNet 2019 challenge columns.")
    df["label_12h"] = label_12h(df)

    raw_path = out_dir / "raw-data" / "sepsis-data.csv"
    raw_path.parent.mkdir(parents=True, exist_ok=True)
    # pyarrow's CSV writer is used because DataFrame.to_csv is much slower: on set A with
    # pandas 3.1.1 on a 2-core AMD EPYC, to_csv took 12-15 s and pyarrow about 2 s.
    # A slow writer would flatter the Rust side of the benchmark.
    # pyarrow quotes the header names even with quoting_style="none", so the script writes the
    # header itself. With "none" pyarrow raises on a value that would need quotes.
    columns = ["patient_id", *CHALLENGE_COLUMNS, "label_12h"]
    table = pa.Table.from_pandas(df[columns], preserve_index=False)
    with raw_path.open("wb") as handle:
        handle.write((",".join(columns) + "\n").encode())
        pa_csv.write_csv(table, handle,
                         write_options=pa_csv.WriteOptions(include_header=False, quoting_style="none"))

    return raw_path, sha256_file(raw_path)


def label_12h(df: pd.DataFrame) -> np.ndarray:
    """Return the 12-hour-ahead target: 1 from 6 h before a patient's first positive hour.

    SepsisLabel is already 1 from t_sepsis - 6, so onset = first positive ICULOS + 6, and the
    target is 1 for ICULOS >= onset - 12. Patients with no positive row get 0 throughout.
    """
    first_positive = (
        df["ICULOS"].where(df["SepsisLabel"] == 1).groupby(df["patient_id"], sort=False).transform("min")
    )
    onset = first_positive + 6
    # A NaN onset compares False, which gives 0 for non-septic patients.
    return (df["ICULOS"] >= onset - 12).to_numpy(dtype=np.int8)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def ingest(raw_path: Path, out_dir: Path) -> pd.DataFrame:
    """Read raw-data/sepsis-data.csv with explicit dtypes and write processed-data/snapshot.parquet."""
    dtypes = {"patient_id": "string", "label_12h": "int8"}
    dtypes.update({column: "float64" for column in CHALLENGE_COLUMNS})
    df = pd.read_csv(raw_path, dtype=dtypes)

    snapshot_path = out_dir / "processed-data" / "snapshot.parquet"
    snapshot_path.parent.mkdir(parents=True, exist_ok=True)
    df.to_parquet(snapshot_path, index=False)
    return df


def validate(df: pd.DataFrame, out_dir: Path) -> dict:
    """Run the data checks, write validation/report.json and raise PipelineError on any failure."""
    checks: list[dict] = []
    expected = ["patient_id", *CHALLENGE_COLUMNS, "label_12h"]
    missing = [column for column in expected if column not in df.columns]
    checks.append({"check": "expected_columns", "passed": not missing, "missing": missing})

    if not missing:
        checks.append({"check": "non_empty", "passed": len(df) > 0, "rows": len(df)})

        missing_values = {column: int(df[column].isna().sum()) for column in REQUIRED_COLUMNS}
        missing_values = {column: count for column, count in missing_values.items() if count}
        checks.append({"check": "required_values", "passed": not missing_values,
                       "failing_rows": missing_values})

        not_binary = {column: int((~(df[column].isin([0, 1]) | df[column].isna())).sum())
                      for column in BINARY_COLUMNS}
        not_binary = {column: count for column, count in not_binary.items() if count}
        checks.append({"check": "binary_values", "passed": not not_binary, "failing_rows": not_binary})

        duplicates = int(df.duplicated(["patient_id", "ICULOS"]).sum())
        checks.append({"check": "unique_patient_hour", "passed": duplicates == 0, "failing_rows": duplicates})

        # The first row of each patient has a NaN difference and passes.
        step = df.groupby("patient_id", sort=False)["ICULOS"].diff()
        not_increasing = int((step <= 0).sum())
        checks.append({"check": "iculos_strictly_increasing", "passed": not_increasing == 0,
                       "failing_rows": not_increasing})

        failing = {}
        for column, (lower, upper) in VALUE_RANGES.items():
            # NaN compares False on both sides, so missing values pass.
            count = int(((df[column] < lower) | (df[column] > upper)).sum())
            if count:
                failing[column] = count
        checks.append({"check": "value_ranges", "passed": not failing, "failing_values": failing,
                       "ranges": {column: list(bounds) for column, bounds in VALUE_RANGES.items()}})

    report = {"passed": all(check["passed"] for check in checks), "rows": len(df), "checks": checks}
    report_path = out_dir / "validation" / "report.json"
    report_path.parent.mkdir(parents=True, exist_ok=True)
    report_path.write_text(json.dumps(report, indent=2) + "\n")

    if not report["passed"]:
        failed = [check["check"] for check in checks if not check["passed"]]
        raise PipelineError(f"validation failed: {', '.join(failed)} (see {report_path})")
    return report


def transform(df: pd.DataFrame, out_dir: Path) -> pd.DataFrame:
    """Build the 41 float32 features and write feature-store/features.parquet.

    ICULOS is both a key column and a feature, so the file stores it once, as float32.
    Missing values stay NaN, which LightGBM treats as missing.
    """
    unit_micu = df["Unit1"] == 1
    unit_sicu = ~unit_micu & (df["Unit2"] == 1)
    units = {
        "unit_MICU": unit_micu,
        "unit_SICU": unit_sicu,
        "unit_unknown": ~unit_micu & ~unit_sicu,
    }

    columns = {
        "patient_id": df["patient_id"],
        "ICULOS": df["ICULOS"].astype("float32"),
        "SepsisLabel": df["SepsisLabel"].astype("int8"),
        "label_12h": df["label_12h"].astype("int8"),
    }
    for name in FEATURES:
        if name in units:
            columns[name] = units[name].astype("float32")
        elif name != "ICULOS":
            columns[name] = df[name].astype("float32")
    features = pd.DataFrame(columns)

    features_path = out_dir / "feature-store" / "features.parquet"
    features_path.parent.mkdir(parents=True, exist_ok=True)
    features.to_parquet(features_path, index=False)
    return features


def split_patients(features: pd.DataFrame) -> tuple[np.ndarray, dict]:
    """Return a boolean mask of validation rows and a summary of the patient-level split.

    Each patient gets key = sha256(f"{SEED}:{patient_id}").hexdigest(). Within the septic and
    the non-septic stratum, patients are sorted by key and the first
    round(n * VALIDATION_FRACTION) (half away from zero) go to validation. The Rust pipeline
    uses the same rule, so both languages pick the same patients.
    """
    septic = features.groupby("patient_id", sort=False)["SepsisLabel"].max() == 1
    patients = pd.DataFrame({"septic": septic.to_numpy()}, index=septic.index)
    patients["key"] = [hashlib.sha256(f"{SEED}:{patient_id}".encode()).hexdigest()
                       for patient_id in patients.index]

    validation_ids: list[str] = []
    summary = {}
    for stratum_name, is_septic in (("septic", True), ("non_septic", False)):
        stratum = patients[patients["septic"] == is_septic]
        count = len(stratum)
        validation_count = round_half_away_from_zero(count * VALIDATION_FRACTION)
        # As on the Rust side, a stratum of two or more keeps one patient on each side.
        if count >= 2:
            validation_count = min(max(validation_count, 1), count - 1)
        validation_ids.extend(stratum.sort_values("key").index[:validation_count])
        summary[stratum_name] = {"patients": count, "validation_patients": validation_count}

    validation_mask = features["patient_id"].isin(validation_ids).to_numpy()
    return validation_mask, summary


def round_half_away_from_zero(value: float) -> int:
    return int(math.copysign(math.floor(abs(value) + 0.5), value))


def train(features: pd.DataFrame, validation_mask: np.ndarray, out_dir: Path) -> tuple[lgb.Booster, dict]:
    """Train LightGBM on the training rows and save the model as text in models/model.txt."""
    train_rows = features.loc[~validation_mask]
    x_train = train_rows[FEATURES].to_numpy(dtype=np.float32)
    y_train = train_rows["label_12h"].to_numpy()

    positives = int(y_train.sum())
    negatives = len(y_train) - positives
    if positives == 0:
        raise PipelineError("the training rows contain no positive label_12h, so scale_pos_weight is "
                            "undefined. Use data with septic patients.")
    params = {**LIGHTGBM_PARAMS, "scale_pos_weight": negatives / positives}

    dataset = lgb.Dataset(x_train, label=y_train, feature_name=FEATURES)
    booster = lgb.train(params, dataset)

    model_path = out_dir / "models" / "model.txt"
    model_path.parent.mkdir(parents=True, exist_ok=True)
    booster.save_model(model_path)

    info = {"train_rows": len(y_train), "train_positive_rows": positives,
            "scale_pos_weight": params["scale_pos_weight"]}
    return booster, info


def evaluate(booster: lgb.Booster, features: pd.DataFrame, validation_mask: np.ndarray,
             out_dir: Path) -> dict:
    """Score the validation rows against label_12h and write metrics/metrics.json."""
    validation_rows = features.loc[validation_mask]
    y_true = validation_rows["label_12h"].to_numpy()
    scores = booster.predict(validation_rows[FEATURES].to_numpy(dtype=np.float32))

    predicted = scores >= THRESHOLD
    true_positives = int((predicted & (y_true == 1)).sum())
    predicted_positives = int(predicted.sum())
    actual_positives = int(y_true.sum())
    precision = true_positives / predicted_positives if predicted_positives else 0.0
    recall = true_positives / actual_positives if actual_positives else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0

    auroc, auprc = roc_auc_and_average_precision(y_true, scores)
    metrics = {
        "auroc": auroc,
        "auprc": auprc,
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "threshold": THRESHOLD,
        "validation_rows": len(y_true),
        "validation_positive_rows": actual_positives,
    }
    metrics_path = out_dir / "metrics" / "metrics.json"
    metrics_path.parent.mkdir(parents=True, exist_ok=True)
    metrics_path.write_text(json.dumps(metrics, indent=2) + "\n")
    return metrics


def roc_auc_and_average_precision(y_true: np.ndarray, scores: np.ndarray) -> tuple[float | None, float | None]:
    """Return (AUROC, AUPRC), treating each run of tied scores as one threshold.

    AUROC is the trapezoidal area under the ROC curve. AUPRC is average precision as
    scikit-learn's average_precision_score defines it: the sum over thresholds of
    (R_n - R_(n-1)) * P_n, without interpolation. Both are None when y_true has only one class.
    """
    positives = int(y_true.sum())
    negatives = len(y_true) - positives
    if positives == 0 or negatives == 0:
        return None, None

    order = np.argsort(-scores, kind="mergesort")
    sorted_scores = scores[order]
    sorted_true = y_true[order]
    # Last index of each run of equal scores, so every distinct score is one threshold.
    threshold_ends = np.r_[np.flatnonzero(np.diff(sorted_scores)), len(sorted_scores) - 1]
    true_positives = np.cumsum(sorted_true)[threshold_ends]
    false_positives = threshold_ends + 1 - true_positives

    tpr = np.r_[0.0, true_positives / positives]
    fpr = np.r_[0.0, false_positives / negatives]
    auroc = float(np.trapezoid(tpr, fpr))

    precision = true_positives / (true_positives + false_positives)
    recall = true_positives / positives
    auprc = float(np.sum(np.diff(np.r_[0.0, recall]) * precision))
    return auroc, auprc


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", type=Path, help="PhysioNet 2019 CSV or CSV.gz with patient_id first")
    parser.add_argument("out_dir", type=Path, help="directory for the artefacts, created if missing")
    args = parser.parse_args()
    if not args.data.is_file():
        parser.error(f"data file not found: {args.data}")
    args.out_dir.mkdir(parents=True, exist_ok=True)

    timings: dict[str, float] = {}
    started = time.perf_counter()

    def finish_step(name: str, step_started: float) -> float:
        now = time.perf_counter()
        timings[name] = round(now - step_started, 3)
        return now

    try:
        step_started = time.perf_counter()
        raw_path, raw_sha256 = import_raw(args.data, args.out_dir)
        step_started = finish_step("import", step_started)

        snapshot = ingest(raw_path, args.out_dir)
        step_started = finish_step("ingest", step_started)

        validate(snapshot, args.out_dir)
        step_started = finish_step("validate", step_started)

        features = transform(snapshot, args.out_dir)
        del snapshot
        step_started = finish_step("transform", step_started)

        validation_mask, split_summary = split_patients(features)
        step_started = finish_step("split", step_started)

        booster, train_info = train(features, validation_mask, args.out_dir)
        step_started = finish_step("train", step_started)

        metrics = evaluate(booster, features, validation_mask, args.out_dir)
        finish_step("evaluate", step_started)
    except PipelineError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1

    result = {
        "metrics": metrics,
        "timings_s": timings,
        "total_s": round(time.perf_counter() - started, 3),
        "rows": len(features),
        "raw_sha256": raw_sha256,
        "split": split_summary,
        "train": train_info,
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
