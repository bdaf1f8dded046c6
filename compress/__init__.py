"""Hardware-aware compression (layer 4: above ``nas``, whose torch modules it prunes).

- ``compress.prune``: structured channel pruning with torch-pruning's dependency graph,
  latency-driven (NetAdapt-style progressive loop, Optuna search over per-layer ratios) against
  the device's predictor; ``compress.prune_cli``: ``hwfarm compress prune``.
- ``compress.quantize``: onnxruntime static int8 (QDQ, per-channel weights, calibration on
  real images); ``compress.mixed``: per-layer bits (HAQ's goal with TPE, Rusci et al.'s
  memory-driven rule) for bit-width-aware devices.
- ``compress.evaluate``: held-out accuracy of ONNX models, measured speedups through the farm;
  ``compress.report``: the run directory every command writes.
"""
