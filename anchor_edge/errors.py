"""The one exception family of anchor-edge.

Callers catch `AnchorEdgeError` for anything this library raises on purpose;
the subclasses say whose fault it was: the input (`InputError`, also a
`ValueError`), the bundle on disk (`BundleError`) or the inference backend
(`BackendError`). Every message names the file, tensor or field at fault and
says what to do about it.
"""


class AnchorEdgeError(Exception):
    """Base class of every error anchor-edge raises on purpose."""


class InputError(AnchorEdgeError, ValueError):
    """An image or argument the pipeline cannot use (corrupt, empty, wrong type)."""


class BundleError(AnchorEdgeError):
    """A bundle directory that is missing a file, has a bad schema or a checksum mismatch."""


class BackendError(AnchorEdgeError):
    """An inference backend that is missing, cannot load a model, or failed to run it."""
