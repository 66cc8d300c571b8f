"""FP16 and INT8, decided in the ONNX graph and checked against the FP32 bundle on held-out images."""
