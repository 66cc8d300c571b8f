"""PyTorch -> ONNX: the export itself, the graph rewrites ONNX Runtime needs, and the check against PyTorch."""
