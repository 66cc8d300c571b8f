"""Build-time stage of anchor-edge: PyTorch models -> verified ONNX -> TensorRT, written as a bundle.

Runs from a source checkout (`python export/to_trt.py`); needs the `export`
extra (torch, torchvision, onnx). Nothing here is imported by the runtime.
"""
