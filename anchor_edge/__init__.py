"""anchor-edge: classify images from a few localized patches instead of the whole image.

    >>> from anchor_edge import Pipeline
    >>> pipe = Pipeline.from_bundle("bundles/default")
    >>> prediction = pipe("photo.jpg")

Run time only: numpy, OpenCV, ONNX Runtime (TensorRT + pycuda optional);
never torch. Logging goes to the "anchor_edge" logger, quiet by default.
"""
import logging

from .errors import AnchorEdgeError, BackendError, BundleError, InputError
from .lsp import PRESETS, LSPParams
from .pipeline import Pipeline
from .prediction import Prediction

__version__ = "0.1.0"
__all__ = [
    "AnchorEdgeError",
    "BackendError",
    "BundleError",
    "InputError",
    "LSPParams",
    "PRESETS",
    "Pipeline",
    "Prediction",
]

logging.getLogger("anchor_edge").addHandler(logging.NullHandler())
