"""Model files in and out: ONNX and TFLite to the graph IR (:mod:`farm.formats.onnx`,
:mod:`farm.formats.tflite`) and back (:mod:`farm.formats.onnx_export`,
:mod:`farm.formats.tflite_export`). onnx and LiteRT are imported where used."""
