"""AUROC experiments on a stored feature table, with the pipeline's own split.

Usage: python bench/quality/auroc_experiments.py FEATURES_PARQUET EXPERIMENT [SPLIT_SEED]

FEATURES_PARQUET is `feature-store/<version>/features.parquet` of a `sepsis pipeline` run (its
columns: patient_id, hour, label, outcome, then the model's features). EXPERIMENT is one of
the names in EXPERIMENTS or FACTORED below. The script trains Python LightGBM on the fit patients, or
cross-fits on the fit and calibration patients, and scores the validation patients. It prints
one JSON line with the AUROC against SepsisLabel (`outcome`) and against the 12-hour label.
The line also gives the AUROC of each half of the validation patients. The split is the one `sepsis pipeline`
uses with split.seed SPLIT_SEED (default 42), validation_fraction 0.2 and calibration_fraction 0.2.
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

FOLDS = 5
VITAL_SIGNS = {"HR", "O2Sat", "Temp", "SBP", "MAP", "DBP", "Resp", "EtCO2"}
# Measurements whose deviation from the patient's own history is added by baseline_features.
BASELINE_COLUMNS = ["HR", "O2Sat", "Temp", "SBP", "MAP", "DBP", "Resp", "Platelets",
                    "Creatinine", "WBC", "Lactate", "BUN", "Hct", "Glucose", "HCO3", "pH"]


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


def pipeline_split(patient, label, seed=42):
    """Returns whether each patient is septic (in order of first row), and the validation and
    calibration patients of the pipeline's split with the given split.seed."""
    septic = pd.Series(label).groupby(patient, sort=False).max().astype(bool).to_dict()
    validation = split(list(septic), septic, seed, 0.2)
    rest = [p for p in septic if p not in validation]
    return septic, validation, split(rest, septic, seed + 1, 0.2)


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


def rise_features(values, patient, name):
    """Computes the change of one hourly series over 6 h and 24 h, its rise above the lowest
    value of the last 24 h, 72 h and the whole stay so far, and the highest values of those
    spans. Every value uses the rows up to its own hour only."""
    series = pd.Series(values, dtype=np.float64)
    grouped = series.groupby(patient, sort=False)
    added = {}
    for hours in (6, 24):
        added[f"{name}_change_{hours}h"] = series - grouped.shift(hours)
    for hours in (24, 72):
        rolling = grouped.rolling(hours, min_periods=1)
        lowest = rolling.min().reset_index(level=0, drop=True)
        highest = rolling.max().reset_index(level=0, drop=True)
        added[f"{name}_rise_{hours}h"] = series - lowest
        added[f"{name}_max_{hours}h"] = highest
    added[f"{name}_rise_since_admission"] = series - grouped.cummin()
    added[f"{name}_max_since_admission"] = grouped.cummax()
    return {key: value.to_numpy() for key, value in added.items()}


def score_history_features(table, names):
    """Adds the SpO2/FiO2 ratio and respiratory SOFA points from it, with cut-offs of 512,
    357, 214 and 89 taken as estimates of the PaO2/FiO2 ratio's 400, 300, 200 and 100. A SOFA
    with those points is added too. Then come the rise features of each bedside score. The
    labels follow a SOFA rise of 2 points, and the stored features give only the score of the
    hour."""
    patient = table["patient_id"].to_numpy()
    fio2 = table["FiO2"].to_numpy(dtype=np.float64)
    fio2 = np.where(fio2 > 1.0, fio2 / 100.0, fio2)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = table["O2Sat"].to_numpy(dtype=np.float64) / fio2
    ratio[~np.isfinite(ratio)] = np.nan
    respiration = np.select([ratio < 89, ratio < 214, ratio < 357, ratio < 512], [4, 3, 2, 1], 0)
    respiration = np.where(np.isnan(ratio), 0, respiration).astype(np.float64)
    added = {"spo2_fio2": ratio, "sofa_respiration_spo2_fio2": respiration}
    scores = {name: table[name].to_numpy(dtype=np.float64)
              for name in ("sofa_partial", "news2", "sirs", "qsofa", "shock_index")}
    scores["sofa_with_respiration"] = scores["sofa_partial"] + respiration
    for name, values in scores.items():
        added.update(rise_features(values, patient, name))
    return list(added), np.column_stack(list(added.values())).astype(np.float32)


def baseline_features(table, names):
    """Adds four features for each of BASELINE_COLUMNS. The first is the carried value minus
    the mean of the patient's measurements so far, and the second that difference in their
    standard deviations. The others are the value minus its 24 h mean, and the 6 h mean minus
    the 24 h mean."""
    patient = table["patient_id"].to_numpy()
    added = {}
    for column in BASELINE_COLUMNS:
        value = table[column].to_numpy(dtype=np.float64)
        measured = (table[f"{column}_missing"].to_numpy() == 0) & np.isfinite(value)
        x = np.where(measured, value, 0.0)
        sums = pd.DataFrame({"x": x, "xx": x * x, "n": measured.astype(np.float64)})
        sums = sums.groupby(patient, sort=False).cumsum()
        n = sums["n"].to_numpy()
        mean = np.where(n > 0, sums["x"].to_numpy() / np.maximum(n, 1), np.nan)
        variance = (sums["xx"].to_numpy() - n * mean * mean) / np.maximum(n - 1, 1)
        sd = np.where(n > 1, np.sqrt(np.maximum(variance, 0.0)), np.nan)
        added[f"{column}_minus_stay_mean"] = value - mean
        with np.errstate(divide="ignore", invalid="ignore"):
            added[f"{column}_stay_z"] = np.where(sd > 1e-6, (value - mean) / sd, np.nan)
        added[f"{column}_minus_mean_24h"] = value - table[f"{column}_mean_24h"].to_numpy()
        added[f"{column}_mean_6h_minus_24h"] = (table[f"{column}_mean_6h"].to_numpy()
                                                - table[f"{column}_mean_24h"].to_numpy())
    return list(added), np.column_stack(list(added.values())).astype(np.float32)


# name: (target column, cross-fit, extra LightGBM parameters, added features, top features).
# "added features" is a function of (table, feature names) that returns more columns. With
# "top features" N, the booster fitted on the fit patients ranks the features by gain, and a
# second booster is fitted on the N highest alone.
EXPERIMENTS = {
    "default": ("label", False, {}, None, None),
    "target_sepsis_label": ("outcome", False, {}, None, None),
    "extra_trees": ("label", False, {"extra_trees": True}, None, None),
    "path_smooth": ("label", False, {"path_smooth": 10.0}, None, None),
    "cross_fit": ("label", True, {}, None, None),
    "cross_fit_sepsis_label": ("outcome", True, {}, None, None),
    "cross_fit_extra_trees": ("label", True, {"extra_trees": True}, None, None),
    "measurement_counts": ("label", False, {}, count_features, None),
    "score_history": ("label", False, {}, score_history_features, None),
    "patient_baseline": ("label", False, {}, baseline_features, None),
    "top_120_features": ("label", False, {}, None, 120),
    "top_240_features": ("label", False, {}, None, 240),
}

# name: (LightGBM parameters of the onset booster, patients, objective, onset weighting). A
# factored experiment fits two boosters and scores with the sum of their log-probabilities,
# that is the product P(the patient becomes septic) * P(the hour is labelled positive | the
# patient becomes septic). With the objective "binary" the log-probability is the log-sigmoid
# of the raw score. With "poisson", the objective of `training.shape: patient_and_onset`, the
# raw score is the log-probability itself, so the score is the sum of the raw scores: the
# pipeline's default model. The first booster is trained on every hour with the patient's
# outcome as its label, and the second on the septic patients' hours alone, with `SepsisLabel`. The second
# has to tell a septic patient's hours near onset from the same patient's earlier hours,
# where the single booster ranks no better than chance.
# "patients" names what the boosters are fitted on. "fit" is the fit patients, and
# "fit_and_calibration" is 80 % of the patients, as many as cross-fitting's boosters see
# together. "cross_fit" fits one pair per fold, as the cross-fitting experiments do, and
# averages their scores. The onset weighting "hour" weighs every septic hour the same, and
# "patient" weighs each septic patient the same (each hour one over the patient's fitted hours,
# scaled to a mean of 1). The pipeline has no such setting: the gain on split seed 42 did not
# hold on seeds 1 and 2 (QUALITY.md).
SMALL_TREES = {"num_leaves": 7, "min_data_in_leaf": 200}
FACTORED = {
    "patient_and_onset": ({}, "fit", "binary", "hour"),
    "patient_and_onset_small_trees": (SMALL_TREES, "fit", "binary", "hour"),
    "patient_and_onset_small_trees_80": (SMALL_TREES, "fit_and_calibration", "binary", "hour"),
    "patient_and_onset_small_trees_cross_fit": (SMALL_TREES, "cross_fit", "binary", "hour"),
    "patient_and_onset_poisson": (SMALL_TREES, "fit", "poisson", "hour"),
    "patient_and_onset_poisson_patient_weights": (SMALL_TREES, "fit", "poisson", "patient"),
}

# Variants of the default pair (SMALL_TREES, "fit", "poisson", "hour"), each named by what it
# changes. "patient" gives LightGBM parameters of the patient booster and "onset" more
# parameters of the onset booster. With "patient_weight_power" p, each row of the patient
# booster weighs the number of the patient's fitted hours to the power -p, scaled to a mean of
# 1, so that p = 1 weighs every patient the same. "features" adds columns, as in EXPERIMENTS.
# None of them gained more than 0.0011 on the default split (QUALITY.md).
POISSON_PAIR = (SMALL_TREES, "fit", "poisson", "hour")
PAIR_VARIANTS = {
    "pair_patient_31_leaves": {"patient": {"num_leaves": 31, "min_data_in_leaf": 1000}},
    "pair_patient_7_leaves": {"patient": SMALL_TREES},
    "pair_patient_2000_rows_per_leaf": {
        "patient": {"min_data_in_leaf": 2000, "feature_fraction": 0.3}},
    "pair_patient_600_trees": {"patient": {"num_iterations": 600}},
    "pair_onset_600_trees": {"onset": {"num_iterations": 600}},
    "pair_patient_weights_sqrt": {"patient_weight_power": 0.5},
    "pair_patient_weights": {"patient_weight_power": 1.0},
    "pair_score_history": {"features": score_history_features},
    "pair_patient_baseline": {"features": baseline_features},
}
FACTORED.update({name: POISSON_PAIR for name in PAIR_VARIANTS})


def fold_of_rows(patient, septic, rest):
    """Returns each row's fold: the fit and calibration patients are cut into FOLDS folds,
    stratified, by a hash of the id. The validation patients' rows get -1."""
    fold = {}
    for stratum_septic in (True, False):
        stratum = sorted((p for p in rest if septic[p] == stratum_septic),
                         key=lambda p: (key("fold", p), p))
        for i, p in enumerate(stratum):
            fold[p] = i % FOLDS
    return np.array([fold.get(p, -1) for p in patient])


def log_sigmoid(raw):
    return -np.logaddexp(0.0, -raw)


def factored_scores(matrix, names, patient, outcome, septic, fit, in_validation, onset_params,
                    objective, weighting, variant):
    """Returns the factored experiment's validation scores. `variant` is an entry of
    PAIR_VARIANTS, or empty."""
    ever_septic = np.array([septic[p] for p in patient], dtype=np.float32)
    septic_fit = fit & (ever_septic == 1)
    params = dict(DEFAULT_PARAMS, objective=objective)
    onset_params = dict(onset_params, **variant.get("onset", {}))
    patient_weights = None
    if "patient_weight_power" in variant:
        fitted = pd.Series(patient[fit])
        hours = fitted.map(fitted.value_counts()).to_numpy(dtype=np.float64)
        patient_weights = hours ** -variant["patient_weight_power"]
        patient_weights /= patient_weights.mean()
    patient_booster = lgb.train(
        dict(params, **variant.get("patient", {})),
        lgb.Dataset(matrix[fit], ever_septic[fit], weight=patient_weights, feature_name=names))
    weights = None
    if weighting == "patient":
        fitted = pd.Series(patient[septic_fit])
        weights = 1.0 / fitted.map(fitted.value_counts()).to_numpy(dtype=np.float64)
        weights /= weights.mean()
    onset_booster = lgb.train(
        dict(params, **onset_params),
        lgb.Dataset(matrix[septic_fit], outcome[septic_fit], weight=weights, feature_name=names))
    rows = matrix[in_validation]
    log_probability = log_sigmoid if objective == "binary" else (lambda raw: raw)
    return (log_probability(patient_booster.predict(rows, raw_score=True))
            + log_probability(onset_booster.predict(rows, raw_score=True)))


def main():
    known = list(EXPERIMENTS) + list(FACTORED)
    if len(sys.argv) not in (3, 4) or sys.argv[2] not in known:
        sys.exit(f"usage: {sys.argv[0]} FEATURES_PARQUET {{{','.join(known)}}} [SPLIT_SEED]")
    path, name = sys.argv[1], sys.argv[2]
    split_seed = int(sys.argv[3]) if len(sys.argv) == 4 else 42
    target, cross_fit, extra, add_features, top = EXPERIMENTS.get(
        name, ("label", False, {}, None, None))
    variant = PAIR_VARIANTS.get(name, {})
    add_features = variant.get("features", add_features)

    table = pq.read_table(path).to_pandas()
    names = list(table.columns[4:])
    matrix = table[names].to_numpy(dtype=np.float32)
    if add_features is not None:
        added_names, added = add_features(table, names)
        names += added_names
        matrix = np.hstack([matrix, added])
    patient = table["patient_id"].to_numpy()
    label = table["label"].to_numpy()
    outcome = table["outcome"].to_numpy()
    y = table[target].to_numpy()

    septic, validation, calibration = pipeline_split(patient, label, split_seed)
    rest = [p for p in septic if p not in validation]
    in_validation = np.isin(patient, list(validation))
    params = dict(DEFAULT_PARAMS, **extra)

    started = time.time()
    fit = ~in_validation & ~np.isin(patient, list(calibration))
    if name in FACTORED:
        onset_params, fitted_on, objective, weighting = FACTORED[name]
        if fitted_on == "cross_fit":
            row_fold = fold_of_rows(patient, septic, rest)
            scores = np.zeros(in_validation.sum())
            for k in range(FOLDS):
                rows = (row_fold >= 0) & (row_fold != k)
                scores += factored_scores(matrix, names, patient, outcome, septic, rows,
                                          in_validation, onset_params, objective,
                                          weighting, variant) / FOLDS
        else:
            rows = ~in_validation if fitted_on == "fit_and_calibration" else fit
            scores = factored_scores(matrix, names, patient, outcome, septic, rows,
                                     in_validation, onset_params, objective, weighting,
                                     variant)
    elif not cross_fit:
        booster = lgb.train(params, lgb.Dataset(matrix[fit], y[fit], feature_name=names))
        if top is not None:
            keep = np.sort(np.argsort(-booster.feature_importance("gain"), kind="stable")[:top])
            names = [names[i] for i in keep]
            matrix = matrix[:, keep]
            booster = lgb.train(params, lgb.Dataset(matrix[fit], y[fit], feature_name=names))
        scores = booster.predict(matrix[in_validation], raw_score=True)
    else:
        row_fold = fold_of_rows(patient, septic, rest)
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
        "split_seed": split_seed,
        "auroc_sepsis_label": round(auroc(sepsis_label, scores), 4),
        "auroc_12h_label": round(auroc(label[in_validation], scores), 4),
        "auroc_sepsis_label_halves": [
            round(auroc(sepsis_label[half], scores[half]), 4) for half in (in_first, ~in_first)
        ],
        "features": len(names),
        "validation_patients": len(validation),
        "training_seconds": round(seconds, 1),
    }))


if __name__ == "__main__":
    main()
