"""Load a model saved by `sepsis train` in Python LightGBM and compare its
predictions with the ones the Rust side made.

Usage: check_model.py MODEL_TXT MATRIX_CSV

MATRIX_CSV has a header of feature names followed by `rust_probability`; an
empty field is a missing value. Features are read as float32, exactly as the
Rust side passed them to LightGBM. Exits non-zero on any difference above
1e-12, printing the worst row.
"""

import csv
import json
import sys

import lightgbm
import numpy as np


def main() -> int:
    model_path, matrix_path = sys.argv[1], sys.argv[2]
    booster = lightgbm.Booster(model_file=model_path)

    with open(matrix_path, newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader)
        rows = [[float(v) if v else np.nan for v in row] for row in reader]
    table = np.asarray(rows, dtype=np.float64)
    features = table[:, :-1].astype(np.float32)
    expected = table[:, -1]

    if booster.feature_name() != header[:-1]:
        print("feature names differ:", booster.feature_name(), header[:-1])
        return 1
    predicted = booster.predict(features)
    difference = np.abs(predicted - expected)
    worst = int(np.argmax(difference))
    print(json.dumps({
        "lightgbm_version": lightgbm.__version__,
        "rows": int(len(expected)),
        "max_abs_difference": float(difference[worst]),
        "worst_row": worst,
    }))
    return 0 if difference[worst] <= 1e-12 else 1


if __name__ == "__main__":
    sys.exit(main())
