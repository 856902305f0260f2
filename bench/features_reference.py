#!/usr/bin/env python3
"""Python reference for the causal-1 feature set, used by bench/features for the benchmark.

Usage: features_reference.py DATA [--method {groupby,flat-axis}] [--out OUT.parquet]

DATA is a PhysioNet 2019 CSV (optionally gzip-compressed) with `patient_id` followed by the
41 challenge columns, with the rows of each patient together and in increasing ICULOS order.
The script reads DATA, computes the 457 causal-1 features of every row, and optionally
writes them to OUT.parquet with the columns patient_id, hour (= ICULOS) and the features in
FEATURE_NAMES order, as float64. Only the feature computation is timed: reading and writing
are not. The last line on stdout is one JSON object with the method, the row, patient and
feature counts and the compute time in seconds. The script exits with status 1 when the input lacks a
column or its rows are not grouped by patient and ordered by ICULOS.

--method picks how the rolling window statistics and the 6 h change are computed. Both
methods give the same features, and the other features use the same code in both.

- groupby (default): `df.groupby("patient_id").rolling("6h", on="time", ...)` and the same
  for 24 h, where `time` is ICULOS as a Timedelta column. The change since t - 6 h comes from
  `pd.merge_asof(..., by="patient_id")` on the ICULOS hours.
- flat-axis: one time-based rolling over all rows, on a single time axis where each patient's
  hours are shifted past the previous patient's last hour by more than the window, so no
  window reaches into another patient. The change since t - 6 h comes from `np.searchsorted`
  on a sorted (patient, hour) key.

The feature set, for each patient at hour t = ICULOS, uses no row after t:

- 13 columns for each of the 34 vitals and labs v. These are the last value measured at or
  before t (`v`), whether v is missing at t, the hours since its last measurement and the
  number of measurements so far. Then come the mean, min, max and sample standard deviation
  of the measurements in the time windows (t - 6 h, t] and (t - 24 h, t]. The last column is
  the change since t - 6 h: `v` minus the last value measured at or before t - 6 h;
- Age, Gender, HospAdmTime and ICULOS as they are, and ICULOS - HospAdmTime;
- SIRS, qSOFA, NEWS2, shock index, pulse pressure, BUN/creatinine and a partial SOFA score,
  computed from the last measured values, where a score component with a missing input
  scores 0;
- the ICU unit as one-hot unit_MICU, unit_SICU and unit_unknown.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

SERIES_VARIABLES = [
    "HR", "O2Sat", "Temp", "SBP", "MAP", "DBP", "Resp", "EtCO2",
    "BaseExcess", "HCO3", "FiO2", "pH", "PaCO2", "SaO2", "AST", "BUN", "Alkalinephos",
    "Calcium", "Chloride", "Creatinine", "Bilirubin_direct", "Glucose", "Lactate",
    "Magnesium", "Phosphate", "Potassium", "Bilirubin_total", "TroponinI", "Hct", "Hgb",
    "PTT", "WBC", "Fibrinogen", "Platelets",
]
CHALLENGE_COLUMNS = SERIES_VARIABLES + [
    "Age", "Gender", "Unit1", "Unit2", "HospAdmTime", "ICULOS", "SepsisLabel",
]
WINDOW_HOURS = (6, 24)
WINDOW_STATISTICS = ("mean", "min", "max", "std")
DELTA_HOURS = 6
STATIC_COLUMNS = ["Age", "Gender", "HospAdmTime", "ICULOS"]
SCORE_COLUMNS = [
    "sirs", "qsofa", "news2", "shock_index", "pulse_pressure", "bun_creatinine", "sofa_partial",
]
UNIT_COLUMNS = ["unit_MICU", "unit_SICU", "unit_unknown"]
METHODS = ("groupby", "flat-axis")


def series_feature_names(variable: str) -> list[str]:
    """Return the 13 feature names of one series variable, in output order."""
    names = [variable, f"{variable}_missing", f"{variable}_hours_since", f"{variable}_count"]
    for hours in WINDOW_HOURS:
        names += [f"{variable}_{statistic}_{hours}h" for statistic in WINDOW_STATISTICS]
    names.append(f"{variable}_delta_{DELTA_HOURS}h")
    return names


FEATURE_NAMES = (
    [name for variable in SERIES_VARIABLES for name in series_feature_names(variable)]
    + STATIC_COLUMNS
    + ["hours_since_hospital_admission"]
    + SCORE_COLUMNS
    + UNIT_COLUMNS
)
assert len(FEATURE_NAMES) == 457, len(FEATURE_NAMES)


class InputError(Exception):
    """An input file that the script cannot use, which ends the run with exit status 1."""


def load_data(path: Path) -> pd.DataFrame:
    """Read DATA and check that each patient's rows are together and ordered by ICULOS."""
    dtypes = {"patient_id": "string"}
    dtypes.update({column: "float64" for column in CHALLENGE_COLUMNS})
    df = pd.read_csv(path, dtype=dtypes)

    missing = [column for column in ["patient_id", *CHALLENGE_COLUMNS] if column not in df.columns]
    if missing:
        raise InputError(f"{path}: missing columns {', '.join(missing)}. The file must have "
                         "patient_id followed by the 41 PhysioNet 2019 challenge columns.")
    for column in ("patient_id", "ICULOS"):
        empty = int(df[column].isna().sum())
        if empty:
            raise InputError(f"{path}: {empty} rows have no {column}, which every row needs.")

    # pd.factorize numbers the patients in order of first appearance, so the codes decrease
    # somewhere if and only if the rows of some patient are split.
    patient = df["patient_id"]
    code_step = np.diff(pd.factorize(patient)[0], prepend=-1)
    new_patient = code_step != 0
    if (code_step < 0).any():
        raise InputError(f"{path}: the rows of a patient are not contiguous. "
                         "Sort the file by patient_id, then ICULOS.")
    not_increasing = (df["ICULOS"].diff().to_numpy() <= 0) & ~new_patient
    if not_increasing.any():
        row = int(np.flatnonzero(not_increasing)[0])
        raise InputError(f"{path}: ICULOS does not increase within patient {patient.iloc[row]} "
                         f"at data row {row + 1}. Sort the file by patient_id, then ICULOS, "
                         "and remove duplicate hours.")
    return df


def compute_features(df: pd.DataFrame, method: str = "groupby") -> pd.DataFrame:
    """Return patient_id, hour and the FEATURE_NAMES columns for every row of df.

    df must pass load_data's checks: rows grouped by patient, ICULOS increasing within each.
    method is one of METHODS and picks the code for the window statistics and the change
    since t - DELTA_HOURS, as the module docstring describes.
    """
    patient = df["patient_id"]
    hour = df["ICULOS"].to_numpy(dtype=np.float64)
    patient_code = pd.factorize(patient)[0]
    values = df[SERIES_VARIABLES]
    measured = values.notna()

    last = values.groupby(patient, sort=False).ffill().to_numpy()
    missing = (~measured).to_numpy(dtype=np.float64)
    measured_hour = pd.DataFrame(np.where(measured, hour[:, None], np.nan),
                                 index=values.index, columns=SERIES_VARIABLES)
    last_measured_hour = measured_hour.groupby(patient, sort=False).ffill().to_numpy()
    hours_since = hour[:, None] - last_measured_hour
    count = measured.groupby(patient, sort=False).cumsum().to_numpy(dtype=np.float64)
    if method == "groupby":
        window = {hours: window_statistics_groupby(df, hours) for hours in WINDOW_HOURS}
        delta = last - value_as_of_merge_asof(last, patient, hour, hour - DELTA_HOURS)
    elif method == "flat-axis":
        window = {hours: window_statistics_flat_axis(values, patient_code, hour, hours)
                  for hours in WINDOW_HOURS}
        delta = last - value_as_of_searchsorted(last, patient_code, hour, hour - DELTA_HOURS)
    else:
        raise ValueError(f"unknown method {method!r}, expected one of {', '.join(METHODS)}")

    columns: dict[str, np.ndarray | pd.Series] = {"patient_id": patient, "hour": hour}
    for index, variable in enumerate(SERIES_VARIABLES):
        columns[variable] = last[:, index]
        columns[f"{variable}_missing"] = missing[:, index]
        columns[f"{variable}_hours_since"] = hours_since[:, index]
        columns[f"{variable}_count"] = count[:, index]
        for hours in WINDOW_HOURS:
            for statistic in WINDOW_STATISTICS:
                columns[f"{variable}_{statistic}_{hours}h"] = window[hours][statistic][:, index]
        columns[f"{variable}_delta_{DELTA_HOURS}h"] = delta[:, index]

    for column in STATIC_COLUMNS:
        columns[column] = df[column].to_numpy(dtype=np.float64)
    columns["hours_since_hospital_admission"] = hour - df["HospAdmTime"].to_numpy(dtype=np.float64)
    latest = {variable: last[:, index] for index, variable in enumerate(SERIES_VARIABLES)}
    columns.update(bedside_scores(latest))
    columns.update(unit_one_hot(df["Unit1"].to_numpy(), df["Unit2"].to_numpy()))
    assert list(columns)[2:] == FEATURE_NAMES

    # copy=False keeps each column as its own block. Consolidating the 457 float64 columns into
    # one block would copy about 2.9 GB on set A, which took about 7 s on a 2-core AMD EPYC.
    return pd.DataFrame(columns, copy=False)


def window_statistics_groupby(df: pd.DataFrame, window_hours: int) -> dict[str, np.ndarray]:
    """Compute the rolling mean, min, max and std over the measurements in (t - window_hours, t].

    Each array has one row per row of df and one column per series variable. A window
    without measurements gives NaN, and std (ddof=1) needs two measurements.

    This is `groupby("patient_id").rolling(...)` on a time-based window, with ICULOS as a
    Timedelta column. pandas 3.1.1 computes the window bounds of each patient in turn, in a
    Python loop, for every column and statistic.
    """
    frame = df[["patient_id", *SERIES_VARIABLES]].assign(time=pd.to_timedelta(df["ICULOS"], unit="h"))
    rolling = frame.groupby("patient_id", sort=False).rolling(
        f"{window_hours}h", on="time", closed="right", min_periods=1)

    statistics = {}
    for statistic in WINDOW_STATISTICS:
        # The result has the index (patient_id, row label) in group order, so dropping the
        # patient level and reindexing restores the row order of df.
        result = getattr(rolling, statistic)().droplevel("patient_id").reindex(df.index)
        statistics[statistic] = result[SERIES_VARIABLES].to_numpy()
    return set_constant_window_std_to_zero(statistics)


def window_statistics_flat_axis(values: pd.DataFrame, patient_code: np.ndarray, hour: np.ndarray,
                                window_hours: int) -> dict[str, np.ndarray]:
    """Compute the rolling mean, min, max and std over the measurements in (t - window_hours, t].

    Each array has one row per row of values and one column per series variable. A window
    without measurements gives NaN, and std (ddof=1) needs two measurements.

    The rolling runs once over all patients on a single time axis, on which each patient's
    hours are shifted past the previous patient's last hour by more than the window. No window
    can then reach into another patient, so the result equals
    `values.groupby(patient).rolling(...)`, which window_statistics_groupby computes. pandas
    then computes the window bounds once per column and statistic for all patients together.
    """
    patient_span = hour.max() - hour.min() + window_hours + 1
    axis_hours = patient_code * patient_span + (hour - hour.min())
    axis = pd.TimedeltaIndex(pd.to_timedelta(axis_hours, unit="h"))
    rolling = values.set_axis(axis).rolling(f"{window_hours}h", closed="right", min_periods=1)
    statistics = {statistic: getattr(rolling, statistic)().to_numpy() for statistic in WINDOW_STATISTICS}
    return set_constant_window_std_to_zero(statistics)


def set_constant_window_std_to_zero(statistics: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Set the std to exactly 0 where min equals max, keeping NaN for single measurements.

    pandas updates the rolling variance as values enter and leave the window, which leaves
    rounding residue after large values leave it. On set A, HR values 83 and 83 after 153
    gave a std of 6.4e-06 instead of 0.
    """
    std = statistics["std"]
    statistics["std"] = np.where((statistics["min"] == statistics["max"]) & ~np.isnan(std), 0.0, std)
    return statistics


def value_as_of_merge_asof(last_value: np.ndarray, patient: pd.Series, hour: np.ndarray,
                           as_of_hour: np.ndarray) -> np.ndarray:
    """Return, for each row, last_value at the patient's last row with hour <= as_of_hour.

    Rows whose patient has no row that early get NaN. The lookup is
    `pd.merge_asof(..., by="patient_id", direction="backward")`.
    """
    row = np.arange(len(hour))
    requests = pd.DataFrame({"patient_id": patient.to_numpy(), "as_of_hour": as_of_hour, "row": row})
    known = pd.DataFrame(last_value, columns=SERIES_VARIABLES)
    known.insert(0, "patient_id", patient.to_numpy())
    known.insert(1, "hour", hour)

    # merge_asof needs both sides sorted by their time key, and keeps the order of the left side.
    merged = pd.merge_asof(requests.sort_values("as_of_hour", kind="stable"),
                           known.sort_values("hour", kind="stable"),
                           left_on="as_of_hour", right_on="hour", by="patient_id",
                           direction="backward", allow_exact_matches=True)
    return merged.sort_values("row")[SERIES_VARIABLES].to_numpy()


def value_as_of_searchsorted(last_value: np.ndarray, patient_code: np.ndarray, hour: np.ndarray,
                             as_of_hour: np.ndarray) -> np.ndarray:
    """Return, for each row, last_value at the patient's last row with hour <= as_of_hour.

    Rows whose patient has no row that early get NaN.
    """
    # Rows are grouped by patient in increasing patient_code order, with hours increasing
    # within a patient, so (patient_code, hour) is sorted and searchsorted finds the last row
    # at or before (patient_code, as_of_hour).
    patient_span = hour.max() - as_of_hour.min() + 1
    row_key = patient_code * patient_span + hour
    as_of_key = patient_code * patient_span + as_of_hour
    source_row = np.searchsorted(row_key, as_of_key, side="right") - 1
    found = (source_row >= 0) & (patient_code[np.maximum(source_row, 0)] == patient_code)
    result = last_value[np.maximum(source_row, 0)]
    result[~found] = np.nan
    return result


def points(value: np.ndarray, bands: list[tuple[np.ndarray, int]], otherwise: int) -> np.ndarray:
    """Return the score of the first band whose condition is true, or otherwise, and 0 for NaN."""
    conditions = [condition for condition, _ in bands]
    choices = [score for _, score in bands]
    scored = np.select(conditions, choices, default=otherwise).astype(np.float64)
    return np.where(np.isnan(value), 0.0, scored)


def bedside_scores(latest: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Compute the bedside scores from the last measured value of each series variable.

    A component whose input is missing scores 0, because a comparison with NaN is False.
    """
    hr, temp, resp, sbp = latest["HR"], latest["Temp"], latest["Resp"], latest["SBP"]
    with np.errstate(invalid="ignore"):
        sirs = (
            ((temp > 38) | (temp < 36)).astype(np.float64)
            + (hr > 90)
            + ((resp > 20) | (latest["PaCO2"] < 32))
            + ((latest["WBC"] > 12) | (latest["WBC"] < 4))
        )
        qsofa = (resp >= 22).astype(np.float64) + (sbp <= 100)

        # FiO2 above 1 is recorded as a percentage rather than a fraction.
        fio2 = latest["FiO2"]
        fio2_fraction = np.where(fio2 > 1, fio2 / 100, fio2)
        news2 = (
            points(resp, [(resp <= 8, 3), (resp <= 11, 1), (resp <= 20, 0), (resp <= 24, 2)], 3)
            + points(latest["O2Sat"], [(latest["O2Sat"] <= 91, 3), (latest["O2Sat"] <= 93, 2),
                                       (latest["O2Sat"] <= 95, 1)], 0)
            + np.where(fio2_fraction > 0.21, 2.0, 0.0)
            + points(temp, [(temp <= 35, 3), (temp <= 36, 1), (temp <= 38, 0), (temp <= 39, 1)], 2)
            + points(sbp, [(sbp <= 90, 3), (sbp <= 100, 2), (sbp <= 110, 1), (sbp <= 219, 0)], 3)
            + points(hr, [(hr <= 40, 3), (hr <= 50, 1), (hr <= 90, 0), (hr <= 110, 1),
                          (hr <= 130, 2)], 3)
        )

        platelets = latest["Platelets"]
        bilirubin = latest["Bilirubin_total"]
        creatinine = latest["Creatinine"]
        sofa_partial = (
            points(platelets, [(platelets < 20, 4), (platelets < 50, 3), (platelets < 100, 2),
                               (platelets < 150, 1)], 0)
            + points(bilirubin, [(bilirubin >= 12, 4), (bilirubin >= 6, 3), (bilirubin >= 2, 2),
                                 (bilirubin >= 1.2, 1)], 0)
            + points(creatinine, [(creatinine >= 5, 4), (creatinine >= 3.5, 3),
                                  (creatinine >= 2, 2), (creatinine >= 1.2, 1)], 0)
            + (latest["MAP"] < 70)
        )

    return {
        "sirs": sirs,
        "qsofa": qsofa,
        "news2": news2,
        "shock_index": ratio(hr, sbp),
        "pulse_pressure": sbp - latest["DBP"],
        "bun_creatinine": ratio(latest["BUN"], creatinine),
        "sofa_partial": sofa_partial,
    }


def ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """Return numerator / denominator, with NaN where either is NaN or the denominator is 0."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(denominator == 0, np.nan, numerator / denominator)


def unit_one_hot(unit1: np.ndarray, unit2: np.ndarray) -> dict[str, np.ndarray]:
    """One-hot encode the ICU unit: MICU when Unit1 is 1, else SICU when Unit2 is 1, else unknown."""
    micu = unit1 == 1
    sicu = ~micu & (unit2 == 1)
    return {
        "unit_MICU": micu.astype(np.float64),
        "unit_SICU": sicu.astype(np.float64),
        "unit_unknown": (~micu & ~sicu).astype(np.float64),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", type=Path, help="PhysioNet 2019 CSV or CSV.gz with patient_id first")
    parser.add_argument("--method", choices=METHODS, default="groupby",
                        help="how the window statistics and the 6 h change are computed "
                             "(default: groupby); both give the same features")
    parser.add_argument("--out", type=Path, help="Parquet file for the features, not written if omitted")
    args = parser.parse_args()
    if not args.data.is_file():
        parser.error(f"data file not found: {args.data}")

    try:
        df = load_data(args.data)
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1

    started = time.perf_counter()
    features = compute_features(df, args.method)
    compute_seconds = time.perf_counter() - started

    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        features.to_parquet(args.out, index=False)

    result = {
        "method": args.method,
        "rows": len(features),
        "patients": int(df["patient_id"].nunique()),
        "features": len(FEATURE_NAMES),
        "compute_seconds": round(compute_seconds, 3),
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
