"""Build-time stage of anchor-edge: PyTorch models -> verified ONNX -> TensorRT, written as a bundle.

Runs from a source checkout (`python export/to_trt.py`); needs the `export`
extra (torch, torchvision, onnx). Nothing here is imported by the runtime.
"""

__all__ = ["export_bundle"]


def __getattr__(name: str):
    """`from export import export_bundle`, imported on first use: export.cli's engine-only path must not pull torch."""
    if name == "export_bundle":
        from export.bundle.build import export_bundle

        return export_bundle
    raise AttributeError(f"module 'export' has no attribute {name!r}")
