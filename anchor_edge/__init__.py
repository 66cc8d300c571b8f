"""anchor-edge: classify images from a few localized patches instead of the whole image.

    >>> from anchor_edge import Pipeline
    >>> pipe = Pipeline.from_bundle("bundles/default")
    >>> prediction = pipe("photo.jpg")

Run time only: numpy, OpenCV, ONNX Runtime (OpenVINO, TensorRT + pycuda
optional); never torch. OpenCV and ONNX Runtime come from the `cpu` extra on
a PC and from the platform on a Jetson, so that pip never replaces JetPack's
builds. Logging goes to the "anchor_edge" logger, quiet by default.

Layers, each importing only those before it: `errors`, `bundle/` (the
contract), `method/` (the paper's steps), `backends/`, then `pipeline`;
`video/`, `scale/` and `cli/` sit on top and are never imported from here.
"""

import logging

try:
    import cv2  # noqa: F401  (the runtime reads images and video with OpenCV)
except ImportError as error:  # the base install leaves OpenCV to the platform (docs/tensorrt-jetson.md)
    raise ImportError(
        "anchor-edge needs OpenCV's cv2 module: on a PC, pip install 'anchor-edge[cpu]' (OpenCV and ONNX Runtime "
        "from PyPI); on a Jetson keep JetPack's OpenCV (GStreamer, CUDA): sudo apt install python3-opencv and a "
        "virtualenv made with --system-site-packages"
    ) from error

from anchor_edge.backends.options import OnnxRuntimeOptions, OpenVinoOptions, TensorRtOptions
from anchor_edge.errors import (
    AnchorEdgeError,
    BackendError,
    BundleError,
    ClusterError,
    ExportError,
    InputError,
    SourceError,
)
from anchor_edge.method.lsp import PRESETS, LSPParams
from anchor_edge.pipeline import Pipeline
from anchor_edge.prediction import Prediction

__version__ = "0.1.0"
__all__ = [
    "AnchorEdgeError",
    "BackendError",
    "BundleError",
    "ClusterError",
    "ExportError",
    "InputError",
    "LSPParams",
    "OnnxRuntimeOptions",
    "OpenVinoOptions",
    "PRESETS",
    "Pipeline",
    "Prediction",
    "SourceError",
    "TensorRtOptions",
]

logging.getLogger("anchor_edge").addHandler(logging.NullHandler())
