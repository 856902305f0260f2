#!/usr/bin/env python3
"""Compare the feature files that the Rust and the Python side of bench/features write.

Usage: compare_features.py RUST.parquet PYTHON.parquet

Both files have the key columns patient_id and hour followed by the feature columns. The
script checks that both have the same columns in the same order and the same
(patient_id, hour) rows, and matches the rows by that key, so the row order does not matter.
A feature value is equal when both are NaN, or when neither is and
|rust - python| <= 1e-4 * max(1, |python|), which allows for the Rust side writing float32.

It prints each feature column with mismatches, with their count and the first few, then a
summary line. It exits with status 0 when everything is equal, 1 on any mismatch and 2 on
invalid arguments.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

KEY_COLUMNS = ["patient_id", "hour"]
RELATIVE_TOLERANCE = 1e-4
EXAMPLES_PER_COLUMN = 5


def describe_key(key: tuple[str, float]) -> str:
    patient_id, hour = key
    return f"patient {patient_id} hour {hour:g}"


def read_features(path: Path) -> pd.DataFrame:
    """Read a feature file, with patient_id as str and hour as float64."""
    features = pd.read_parquet(path)
    missing = [column for column in KEY_COLUMNS if column not in features.columns]
    if missing:
        raise ValueError(f"{path}: missing key columns {', '.join(missing)}")
    features["patient_id"] = features["patient_id"].astype(str)
    features["hour"] = features["hour"].astype(np.float64)
    return features


def compare_columns(rust_columns: list[str], python_columns: list[str]) -> list[str]:
    """Return one line per difference between the two column lists, empty when they are equal."""
    if rust_columns == python_columns:
        return []
    problems = []
    only_rust = [column for column in rust_columns if column not in python_columns]
    only_python = [column for column in python_columns if column not in rust_columns]
    if only_rust:
        problems.append(f"only in the Rust file: {', '.join(only_rust)}")
    if only_python:
        problems.append(f"only in the Python file: {', '.join(only_python)}")
    if not only_rust and not only_python:
        position = next(index for index, (rust, python) in enumerate(zip(rust_columns, python_columns))
                        if rust != python)
        problems.append(f"same columns in another order: column {position + 1} is "
                        f"{rust_columns[position]} in the Rust file and {python_columns[position]} "
                        "in the Python file")
    if len(rust_columns) != len(python_columns):
        problems.append(f"the Rust file has {len(rust_columns)} columns, the Python file "
                        f"{len(python_columns)}")
    return problems


def compare_keys(rust_index: pd.MultiIndex, python_index: pd.MultiIndex) -> list[str]:
    """Return one line per problem with the (patient_id, hour) rows, empty when they match."""
    problems = []
    for name, index in (("Rust", rust_index), ("Python", python_index)):
        duplicated = index[index.duplicated()]
        if len(duplicated):
            examples = "; ".join(describe_key(key) for key in duplicated[:EXAMPLES_PER_COLUMN])
            problems.append(f"the {name} file has {len(duplicated)} duplicate (patient_id, hour) "
                            f"rows, for example {examples}")
    for name, index, other in (("Rust", rust_index, python_index),
                               ("Python", python_index, rust_index)):
        only_here = index[~index.isin(other)]
        if len(only_here):
            examples = "; ".join(describe_key(key) for key in only_here[:EXAMPLES_PER_COLUMN])
            problems.append(f"{len(only_here)} rows only in the {name} file, for example {examples}")
    return problems


def compare_feature(rust: np.ndarray, python: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return boolean masks of the rows whose NaN position differs and whose value differs."""
    rust_nan = np.isnan(rust)
    python_nan = np.isnan(python)
    nan_mismatch = rust_nan != python_nan
    both = ~rust_nan & ~python_nan
    with np.errstate(invalid="ignore"):
        # rust == python accepts equal infinities, whose difference is NaN.
        close = (rust == python) | (np.abs(rust - python)
                                     <= RELATIVE_TOLERANCE * np.maximum(1.0, np.abs(python)))
    return nan_mismatch, both & ~close


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("rust", type=Path, help="Parquet file written by the Rust side")
    parser.add_argument("python", type=Path, help="Parquet file written by features_reference.py")
    args = parser.parse_args()
    for path in (args.rust, args.python):
        if not path.is_file():
            parser.error(f"file not found: {path}")

    try:
        rust = read_features(args.rust)
        python = read_features(args.python)
    except ValueError as error:
        print(f"mismatch: {error}")
        return 1

    column_problems = compare_columns(list(rust.columns), list(python.columns))
    rust_index = pd.MultiIndex.from_frame(rust[KEY_COLUMNS])
    python_index = pd.MultiIndex.from_frame(python[KEY_COLUMNS])
    key_problems = compare_keys(rust_index, python_index)
    for problem in column_problems + key_problems:
        print(f"mismatch: {problem}")
    if key_problems:
        print("mismatch: the feature values were not compared because the rows differ")
        return 1

    # Position of each Python row in the Rust file, so the examples follow the Python row order.
    rust_row = rust_index.get_indexer(python_index)
    features = [column for column in python.columns if column in rust.columns and column not in KEY_COLUMNS]
    mismatched_columns = 0
    mismatched_values = 0
    for column in features:
        try:
            rust_values = rust[column].to_numpy(dtype=np.float64)[rust_row]
            python_values = python[column].to_numpy(dtype=np.float64)
        except (TypeError, ValueError) as error:
            print(f"{column}: not numeric ({error})")
            mismatched_columns += 1
            continue

        nan_mismatch, value_mismatch = compare_feature(rust_values, python_values)
        mismatch = nan_mismatch | value_mismatch
        count = int(mismatch.sum())
        if not count:
            continue
        mismatched_columns += 1
        mismatched_values += count
        print(f"{column}: {count} rows differ ({int(nan_mismatch.sum())} in NaN position, "
              f"{int(value_mismatch.sum())} in value)")
        for row in np.flatnonzero(mismatch)[:EXAMPLES_PER_COLUMN]:
            rust_value = rust_values[row]
            python_value = python_values[row]
            example = f"  {describe_key(python_index[row])}: rust {rust_value:.9g}, python {python_value:.9g}"
            if value_mismatch[row]:
                example += f", difference {abs(rust_value - python_value):.3g}"
            print(example)

    if column_problems or mismatched_columns:
        print(f"mismatch: {mismatched_values} values differ in {mismatched_columns} of "
              f"{len(features)} compared features over {len(python)} rows")
        return 1
    print(f"equal: {len(python)} rows x {len(features)} features")
    return 0


if __name__ == "__main__":
    sys.exit(main())
