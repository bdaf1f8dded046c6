"""Latency and energy predictors trained on the farm's dataset (layer 2).

``import predictors`` is cheap; the names below load on first use.

    import predictors
    p = predictors.load("host-cpu")            # the device's newest bundle beside hwfarm.db
    p.predict("model.onnx").latency_ms         # a file, a farm Workload or a Graph
    p.predict_many(graphs)                     # batched feature extraction and inference
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "load": "predictors.api", "train": "predictors.api", "evaluate": "predictors.api",
    "DevicePredictor": "predictors.api", "training_set": "predictors.api",
    "KernelLevelPredictor": "predictors.kernel_model", "KernelRegressor": "predictors.kernel_model",
    "Prediction": "predictors.kernel_model", "KernelPrediction": "predictors.kernel_model",
    "FusionRules": "predictors.kernels", "detect_kernels": "predictors.kernels",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'predictors' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
