"""TensorRT engines built from a bundle's ONNX models: their profiles and the build."""
