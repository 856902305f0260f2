"""FastAPI reference of `POST /predict` for bench/serve/run.

It serves one registry version the way a competent Python team would. Pydantic checks each
row, and `features_reference.compute_features`, the Python reference of the causal-1 feature
set in bench/, computes the 457 features. LightGBM's own predictor runs the trees, `np.interp`
applies the model card's isotonic calibration map, and the card's threshold decides the alert.
Each row is scored as a stay of one hour, as `sepsis serve` scores `rows`.

Environment: SEPSIS_BENCH_MODEL_DIR, a registry version folder with model.txt and
model_card.json.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Optional

import lightgbm as lgb
import numpy as np
import pandas as pd
from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict, Field, create_model

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import features_reference as reference  # noqa: E402

MODEL_DIR = Path(os.environ["SEPSIS_BENCH_MODEL_DIR"])
BOOSTER = lgb.Booster(model_file=str(MODEL_DIR / "model.txt"))
FEATURE_NAMES = BOOSTER.feature_name()
CARD = json.loads((MODEL_DIR / "model_card.json").read_text())
KNOTS = np.array(CARD["calibration"]["knots"], dtype=np.float64)
THRESHOLD = CARD["policy"]["threshold"]
INPUT_COLUMNS = [c for c in reference.CHALLENGE_COLUMNS if c != "SepsisLabel"]
REQUIRED = {"Age", "Gender", "ICULOS"}

Row = create_model(
    "Row",
    __config__=ConfigDict(extra="forbid"),
    **{
        column: ((float, ...) if column in REQUIRED else (Optional[float], None))
        for column in INPUT_COLUMNS
    },
)


class PredictRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rows: list[Row] = Field(min_length=1, max_length=1000)  # type: ignore[valid-type]


app = FastAPI()


def calibrate(raw: np.ndarray) -> np.ndarray:
    if len(KNOTS) == 0:
        return raw
    return np.interp(raw, KNOTS[:, 0], KNOTS[:, 1])


@app.post("/predict")
def predict(request: PredictRequest) -> dict:
    frame = pd.DataFrame([row.model_dump() for row in request.rows], columns=INPUT_COLUMNS,
                         dtype=np.float64)
    frame.insert(0, "patient_id", [str(i) for i in range(len(frame))])
    features = reference.compute_features(frame, method="flat-axis")
    # The Rust feature store and scorer hold features as float32.
    matrix = features[FEATURE_NAMES].to_numpy(dtype=np.float32)
    probability = calibrate(BOOSTER.predict(matrix, num_threads=1))
    alert = probability >= THRESHOLD if THRESHOLD is not None else np.zeros(len(frame), bool)
    return {
        "results": [
            {"row": i, "hour": float(h), "probability": float(p), "alert": bool(a)}
            for i, (h, p, a) in enumerate(zip(frame["ICULOS"], probability, alert))
        ]
    }
