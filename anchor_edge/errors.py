"""The one exception family of anchor-edge, for the run time and the export stage alike.

Callers catch `AnchorEdgeError` for anything this library raises on purpose;
the subclasses say whose fault it was: the input (`InputError`, also a
`ValueError`: an image, an argument, a flag, a checkpoint the caller named;
`SourceError` for a video source that cannot be opened or is lost),
the bundle on disk (`BundleError`), the inference backend (`BackendError`),
the Ray cluster that batch jobs and the server run on (`ClusterError`), or a
step of the export that failed on a valid input (`ExportError`: a model
ONNX cannot reproduce, a conversion or precision check that fails, an engine
TensorRT cannot build). Every message names the file, tensor or field at
fault and says what to do about it.
"""


class AnchorEdgeError(Exception):
    """Base class of every error anchor-edge raises on purpose."""


class InputError(AnchorEdgeError, ValueError):
    """An image, argument or file the caller gave that cannot be used (corrupt, empty, wrong type, missing)."""


class SourceError(InputError):
    """A video file, camera, stream URL, pipeline or image folder that cannot be opened, or was lost for good."""


class BundleError(AnchorEdgeError):
    """A bundle directory that is missing a file, has a bad schema or a checksum mismatch."""


class BackendError(AnchorEdgeError):
    """An inference backend that is missing, cannot load a model, or failed to run it."""


class ExportError(AnchorEdgeError):
    """An export step that failed on valid input: verification, conversion, the precision check, an engine build."""


class ClusterError(AnchorEdgeError):
    """Ray is missing, cannot start or join a cluster, or a local cluster would not stay on loopback."""
