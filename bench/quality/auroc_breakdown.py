"""A breakdown of the default model's hourly AUROC on SepsisLabel, by hours in the ICU and by
kind of negative hour, on the pipeline's split.

Usage: python bench/quality/auroc_breakdown.py FEATURES_PARQUET [FIT_UP_TO_HOUR]

FEATURES_PARQUET is `feature-store/<version>/features.parquet` of a `sepsis pipeline` run. The
script fits the default model of auroc_experiments.py on the fit patients, scores the validation
patients and prints one JSON object:

- the AUROC of the positive hours against the hours of patients who never became septic, and
  against the earlier hours of the septic patients themselves, with the mean AUROC inside one
  septic stay;
- for each band of hours in the ICU: the positive and negative hours, the AUROC inside the band
  and the band's share of the ranking errors. It also gives the mean share of all negative
  hours that score above one of the band's positive hours. A ranking error is a pair of one
  positive and one negative hour in which the negative scores higher, a tie counting one half;
  1 - AUROC is their share of all pairs;
- how long the stays of septic and other patients of the whole table last;
- what the model makes of a longer stay: the hours 37 to 60 of validation patients who never
  became septic, scored as they are and again with TIME_SHIFT_HOURS more in the ICU and since
  hospital admission. A second variant also scales each measurement count as if the
  measurements had gone on at the same rate. The mean probability is the booster's, before
  the pipeline's calibration.

With FIT_UP_TO_HOUR, the model is fitted only on the fit patients' hours up to that hour, and
everything is measured as before on all the validation hours.
"""

import json
import sys

import lightgbm as lgb
import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from auroc_experiments import DEFAULT_PARAMS, auroc, pipeline_split

BANDS = [(0, 24), (24, 48), (48, 60), (60, None)]
TIME_SHIFT_HOURS = 24


def band_name(low, high):
    return f"over {low} h" if high is None else f"{low} to {high} h"


def in_band(hours, low, high):
    return (hours > low) & (hours <= (np.inf if high is None else high))


def errors_below(sorted_scores, scores):
    """Counts, for each score, the sorted scores above it, and half of those equal to it."""
    below = np.searchsorted(sorted_scores, scores, side="left")
    equal = np.searchsorted(sorted_scores, scores, side="right") - below
    return len(sorted_scores) - below - equal + equal / 2.0


def time_shift(rows, names):
    """Returns the rows with TIME_SHIFT_HOURS more in the ICU and since hospital admission,
    and the same with every measurement count scaled by the longer time in the ICU."""
    later = rows.copy()
    icu = names.index("ICULOS")
    for column in (icu, names.index("hours_since_hospital_admission")):
        later[:, column] += TIME_SHIFT_HOURS
    with_counts = later.copy()
    counts = [i for i, n in enumerate(names) if n.endswith("_count")]
    growth = later[:, icu] / rows[:, icu]
    with_counts[:, counts] *= growth[:, None]
    return later, with_counts


def mean_probability(booster, rows):
    return round(float(np.mean(1.0 / (1.0 + np.exp(-booster.predict(rows, raw_score=True))))), 4)


def main():
    if len(sys.argv) not in (2, 3):
        sys.exit(f"usage: {sys.argv[0]} FEATURES_PARQUET [FIT_UP_TO_HOUR]")
    fit_up_to_hour = float(sys.argv[2]) if len(sys.argv) == 3 else np.inf
    table = pq.read_table(sys.argv[1]).to_pandas()
    names = list(table.columns[4:])
    patient = table["patient_id"].to_numpy()
    label = table["label"].to_numpy()
    outcome = table["outcome"].to_numpy().astype(bool)
    icu_hours = table["ICULOS"].to_numpy()

    septic, validation, calibration = pipeline_split(patient, label)
    in_validation = np.isin(patient, list(validation))
    fit = ~in_validation & ~np.isin(patient, list(calibration)) & (icu_hours <= fit_up_to_hour)

    matrix = table[names].to_numpy(dtype=np.float32)
    booster = lgb.train(DEFAULT_PARAMS, lgb.Dataset(matrix[fit], label[fit], feature_name=names))
    scores = booster.predict(matrix[in_validation], raw_score=True)

    row_patient = patient[in_validation]
    positive = outcome[in_validation]
    hours = icu_hours[in_validation]
    of_septic = np.array([septic[p] for p in row_patient])
    other_negative = ~of_septic
    septic_negative = of_septic & ~positive

    within = []
    for p in np.unique(row_patient[of_septic]):
        rows = row_patient == p
        if 0 < positive[rows].sum() < rows.sum():
            within.append(auroc(positive[rows], scores[rows]))

    negative_scores = np.sort(scores[~positive])
    errors = errors_below(negative_scores, scores[positive])
    total_errors = errors.sum()
    bands = []
    for low, high in BANDS:
        rows = in_band(hours, low, high)
        positive_rows = in_band(hours[positive], low, high)
        bands.append({
            "hours_in_icu": band_name(low, high),
            "positive_hours": int((rows & positive).sum()),
            "negative_hours_never_septic": int((rows & other_negative).sum()),
            "negative_hours_septic_before_label": int((rows & septic_negative).sum()),
            "auroc_within_band": round(auroc(positive[rows], scores[rows]), 4),
            "share_of_ranking_errors": round(errors[positive_rows].sum() / total_errors, 3),
            "mean_share_of_negative_hours_above_a_positive": round(
                errors[positive_rows].mean() / len(negative_scores), 4),
        })

    stays = table.groupby("patient_id", sort=False).agg(hours=("ICULOS", "size"))
    stays["septic"] = stays.index.map(septic)
    stay_lengths = {}
    for kind, is_septic in (("septic", True), ("never_septic", False)):
        length = stays.loc[stays["septic"] == is_septic, "hours"]
        stay_lengths[kind] = {
            "patients": int(len(length)),
            "median_hours": float(length.median()),
            "longer_than_60_h": int((length > 60).sum()),
        }

    probe = in_validation & ~np.array([septic[p] for p in patient]) & (icu_hours > 36) & (
        icu_hours <= 60)
    shifted = time_shift(matrix[probe], names)

    print(json.dumps({
        "fit_rows": int(fit.sum()),
        "auroc_sepsis_label": round(auroc(positive, scores), 4),
        "positive_hours": int(positive.sum()),
        "auroc_against_never_septic_hours": round(auroc(positive[positive | other_negative],
                                                        scores[positive | other_negative]), 4),
        "negative_hours_never_septic": int(other_negative.sum()),
        "auroc_against_septic_hours_before_label": round(
            auroc(positive[positive | septic_negative], scores[positive | septic_negative]), 4),
        "negative_hours_septic_before_label": int(septic_negative.sum()),
        "mean_auroc_within_one_septic_stay": round(float(np.mean(within)), 4),
        "septic_stays_with_both_kinds_of_hours": len(within),
        "auroc_hours_up_to_60": round(auroc(positive[hours <= 60], scores[hours <= 60]), 4),
        "bands": bands,
        "stays": stay_lengths,
        "longer_stay": {
            "hours_shifted": TIME_SHIFT_HOURS,
            "never_septic_hours_37_to_60": int(probe.sum()),
            "mean_probability": mean_probability(booster, matrix[probe]),
            "mean_probability_shifted": mean_probability(booster, shifted[0]),
            "mean_probability_shifted_with_counts": mean_probability(booster, shifted[1]),
        },
    }, indent=1))


if __name__ == "__main__":
    main()
