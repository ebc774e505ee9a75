"""Model -> robot: ONNX export, INT8 quantization, confidence calibration and the engine-building alias."""
