"""Architecture families as graph builders: pure functions from an architecture spec to a
model, used by the demo, the tests, the simulator's calibration, the predictors'
benchmarks and the searches. Nothing here needs torch.

- :mod:`farm.zoo.onnx_models`: small ONNX models built with ``onnx.helper`` (the demo's
  MLP, MLPerf Tiny's ResNet-8, MobileNetV1-0.25) and a tiny builder for more.
"""
