"""Time LightGBM's own batch predict on a stored feature table.

Usage: lightgbm_predict.py MODEL_TXT FEATURES_PARQUET REPEATS

Loads the feature table that `sepsis transform` wrote (float32 columns in the
model's input order) into one float32 matrix, then times `Booster.predict`
on all rows with one thread per core. Loading is not timed: the times cover
prediction alone. Prints one JSON object.
"""

import json
import os
import sys
import time

import lightgbm as lgb
import numpy as np
import pyarrow.parquet as pq


def main():
    model_path, features_path, repeats = sys.argv[1], sys.argv[2], int(sys.argv[3])
    booster = lgb.Booster(model_file=model_path)
    names = booster.feature_name()
    table = pq.read_table(features_path, columns=names)
    matrix = np.empty((table.num_rows, len(names)), dtype=np.float32)
    for index, name in enumerate(names):
        matrix[:, index] = table.column(name).to_numpy(zero_copy_only=False)
    threads = os.cpu_count()
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        booster.predict(matrix, num_threads=threads)
        seconds.append(time.perf_counter() - started)
    print(json.dumps({
        "rows": table.num_rows,
        "features": len(names),
        "threads": threads,
        "seconds": seconds,
        "median_seconds": float(np.median(seconds)),
        "rows_per_second": table.num_rows / float(np.median(seconds)),
    }))


if __name__ == "__main__":
    main()
