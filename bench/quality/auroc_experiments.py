"""AUROC experiments on a stored feature table, with the pipeline's own split.

Usage: python bench/quality/auroc_experiments.py FEATURES_PARQUET EXPERIMENT

FEATURES_PARQUET is `feature-store/<version>/features.parquet` of a `sepsis pipeline` run (its
columns: patient_id, hour, label, outcome, then the model's features). EXPERIMENT is one of
the names in EXPERIMENTS below. The script trains Python LightGBM on the fit patients, or
cross-fits on the fit and calibration patients, and scores the validation patients. It prints
one JSON line with the AUROC against SepsisLabel (`outcome`) and against the 12-hour label.
The line also gives the AUROC of each half of the validation patients. The split is the one `sepsis pipeline`
uses with split.seed 42, validation_fraction 0.2 and calibration_fraction 0.2.
"""

import hashlib
import json
import math
import sys
import time

import lightgbm as lgb
import numpy as np
import pandas as pd
import pyarrow.parquet as pq

# The training parameters of config/config.yaml.
DEFAULT_PARAMS = dict(
    objective="binary", num_iterations=300, num_leaves=15, learning_rate=0.05, max_bin=255,
    min_data_in_leaf=500, feature_fraction=0.5, bagging_fraction=1.0, bagging_freq=0,
    lambda_l2=10.0, seed=42, deterministic=True, force_row_wise=True, verbosity=-1,
)

# name: (target column, cross-fit, extra LightGBM parameters, measurement-count features)
EXPERIMENTS = {
    "default": ("label", False, {}, False),
    "target_sepsis_label": ("outcome", False, {}, False),
    "extra_trees": ("label", False, {"extra_trees": True}, False),
    "path_smooth": ("label", False, {"path_smooth": 10.0}, False),
    "cross_fit": ("label", True, {}, False),
    "cross_fit_sepsis_label": ("outcome", True, {}, False),
    "cross_fit_extra_trees": ("label", True, {"extra_trees": True}, False),
    "measurement_counts": ("label", False, {}, True),
}
FOLDS = 5
VITAL_SIGNS = {"HR", "O2Sat", "Temp", "SBP", "MAP", "DBP", "Resp", "EtCO2"}


def key(seed, patient):
    return hashlib.sha256(f"{seed}:{patient}".encode()).hexdigest()


def round_half_away(x):
    return math.floor(x + 0.5) if x >= 0 else -math.floor(-x + 0.5)


def split(patients, septic, seed, fraction):
    """Returns the patients that the pipeline's seeded, stratified split chooses."""
    chosen = set()
    for stratum_septic in (True, False):
        stratum = sorted((p for p in patients if septic[p] == stratum_septic),
                         key=lambda p: (key(seed, p), p))
        take = round_half_away(len(stratum) * fraction)
        if len(stratum) >= 2:
            take = min(max(take, 1), len(stratum) - 1)
        chosen.update(stratum[:take])
    return chosen


def auroc(labels, scores):
    """Computes the area under the ROC curve, with tied scores sharing their mean rank."""
    labels = np.asarray(labels, dtype=bool)
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    mean_rank = np.cumsum(counts) - (counts - 1) / 2.0
    ranks = mean_rank[inverse]
    positives = labels.sum()
    negatives = len(labels) - positives
    return (ranks[labels].sum() - positives * (positives + 1) / 2.0) / (positives * negatives)


def count_features(table, names):
    """Computes measurement counts of the last 6 h and 24 h from the cumulative counts."""
    bases = [n[: -len("_count")] for n in names if n.endswith("_count")]
    counts = table[[f"{b}_count" for b in bases]].to_numpy(dtype=np.float32)
    frame = pd.DataFrame(counts, columns=bases)
    frame["patient_id"] = table["patient_id"].to_numpy()
    grouped = frame.groupby("patient_id", sort=False)
    labs = [i for i, b in enumerate(bases) if b not in VITAL_SIGNS]
    vitals = [i for i, b in enumerate(bases) if b in VITAL_SIGNS]
    added = {}
    for hours in (6, 24):
        before = grouped[bases].shift(hours).fillna(0).to_numpy(dtype=np.float32)
        window = counts - before
        added[f"labs_measured_{hours}h"] = window[:, labs].sum(axis=1)
        added[f"vital_signs_measured_{hours}h"] = window[:, vitals].sum(axis=1)
        if hours == 24:
            for i in labs:
                added[f"{bases[i]}_count_24h"] = window[:, i]
    icu_hours = np.maximum(table["ICULOS"].to_numpy(dtype=np.float32), 1.0)
    added["labs_per_hour"] = counts[:, labs].sum(axis=1) / icu_hours
    return list(added), np.column_stack(list(added.values())).astype(np.float32)


def main():
    if len(sys.argv) != 3 or sys.argv[2] not in EXPERIMENTS:
        sys.exit(f"usage: {sys.argv[0]} FEATURES_PARQUET {{{','.join(EXPERIMENTS)}}}")
    path, name = sys.argv[1], sys.argv[2]
    target, cross_fit, extra, with_counts = EXPERIMENTS[name]

    table = pq.read_table(path).to_pandas()
    names = list(table.columns[4:])
    matrix = table[names].to_numpy(dtype=np.float32)
    if with_counts:
        added_names, added = count_features(table, names)
        names += added_names
        matrix = np.hstack([matrix, added])
    patient = table["patient_id"].to_numpy()
    label = table["label"].to_numpy()
    outcome = table["outcome"].to_numpy()
    y = table[target].to_numpy()

    patients = list(dict.fromkeys(patient))
    septic = pd.Series(label).groupby(patient, sort=False).max().astype(bool).to_dict()
    validation = split(patients, septic, 42, 0.2)
    rest = [p for p in patients if p not in validation]
    calibration = split(rest, septic, 43, 0.2)
    in_validation = np.isin(patient, list(validation))
    params = dict(DEFAULT_PARAMS, **extra)

    started = time.time()
    if not cross_fit:
        fit = ~in_validation & ~np.isin(patient, list(calibration))
        booster = lgb.train(params, lgb.Dataset(matrix[fit], y[fit], feature_name=names))
        scores = booster.predict(matrix[in_validation], raw_score=True)
    else:
        # Folds of the fit and calibration patients, stratified, by a hash of the id.
        fold = {}
        for stratum_septic in (True, False):
            stratum = sorted((p for p in rest if septic[p] == stratum_septic),
                             key=lambda p: (key("fold", p), p))
            for i, p in enumerate(stratum):
                fold[p] = i % FOLDS
        row_fold = np.array([fold.get(p, -1) for p in patient])
        scores = np.zeros(in_validation.sum())
        for k in range(FOLDS):
            rows = (row_fold >= 0) & (row_fold != k)
            booster = lgb.train(params, lgb.Dataset(matrix[rows], y[rows], feature_name=names))
            scores += booster.predict(matrix[in_validation], raw_score=True) / FOLDS
    seconds = time.time() - started

    validation_patients = patient[in_validation]
    first_half = set(sorted(validation, key=lambda p: (key("half", p), p))[: len(validation) // 2])
    in_first = np.isin(validation_patients, list(first_half))
    sepsis_label = outcome[in_validation]
    print(json.dumps({
        "experiment": name,
        "auroc_sepsis_label": round(auroc(sepsis_label, scores), 4),
        "auroc_12h_label": round(auroc(label[in_validation], scores), 4),
        "auroc_sepsis_label_halves": [
            round(auroc(sepsis_label[half], scores[half]), 4) for half in (in_first, ~in_first)
        ],
        "validation_patients": len(validation),
        "training_seconds": round(seconds, 1),
    }))


if __name__ == "__main__":
    main()
