"""Architecture families as graph builders: pure functions from an architecture spec to a
model, used by the demo, the tests, the simulator's calibration, the predictors'
benchmarks and the searches. Nothing here needs torch, and importing this package loads
nothing: import the submodule you need.

- :mod:`farm.zoo.onnx_models`: small ONNX models built with ``onnx.helper`` (the demo's
  MLP, MLPerf Tiny's ResNet-8, MobileNetV1-0.25), a tiny builder for more, and the quirky
  files of the importer's tests (legacy IR 3, constant-subgraph weights, dynamic batch, int8).
- :mod:`farm.ir.builder`: graph IR built directly in Python (``IRBuilder``), for search spaces.
- :mod:`farm.zoo.nb201`: the NAS-Bench-201 space as graph IR.
- :mod:`farm.zoo.fbnet`: the FBNet space (HW-NAS-Bench's CIFAR-100 setting) as graph IR.
- :mod:`farm.zoo.nets`: reference networks by name (``NETS``, ``build_net``) from
  :mod:`~farm.zoo.mobilenet` (MobileNetV1/V2), :mod:`~farm.zoo.resnet` (ResNet-18/50),
  :mod:`~farm.zoo.mcu` (MLPerf Tiny's DS-CNN, ResNet-8, VWW MobileNetV1-0.25, FC-AE) and
  :mod:`~farm.zoo.classic` (SqueezeNet 1.1, GoogLeNet, VGG-16); sizes equal the published ones.
- :mod:`farm.formats.tflite_builder`: small ``.tflite`` files built without TensorFlow.
"""
