"""What this machine offers the TensorRT backend: TensorRT, pycuda, a GPU, and who they are.

Kept apart from the runner so that the backend auto-selection, the `doctor`
command and the engine builder can ask cheap questions ("can TensorRT run
here?", "which TensorRT and GPU is this?") without loading an engine. The
answers are cached for the process: the world is detected once. TensorRT's
own log goes through the "anchor_edge" logger. tensorrt and pycuda are
imported lazily: importing this module never fails.
"""

from __future__ import annotations

import functools
import logging
from collections import deque
from typing import TYPE_CHECKING, Any

from anchor_edge.errors import BackendError

if TYPE_CHECKING:
    import tensorrt as trt

log = logging.getLogger("anchor_edge")

INSTALL_HINT = (
    "pip install anchor-edge[trt]; on Jetson, create the venv with --system-site-packages "
    "so it sees JetPack's tensorrt and pycuda"
)

# TensorRT severities -> logging levels; VERBOSE is dropped (thousands of lines per build).
_LOG_LEVELS = {
    "INTERNAL_ERROR": logging.CRITICAL,
    "ERROR": logging.ERROR,
    "WARNING": logging.WARNING,
    "INFO": logging.DEBUG,
}
_recent_errors: deque[str] = deque(maxlen=5)


@functools.cache
def tensorrt_available() -> tuple[bool, str]:
    """Whether the TensorRT backend can run here: (True, "") or (False, the reason).

    Cheap after the first call (the answer is cached for the process); for the
    backend auto-selection and the `doctor` command.
    """
    try:
        import tensorrt
    except ImportError:
        return False, "tensorrt not installed"
    if not hasattr(tensorrt, "Runtime"):  # a bare namespace package, e.g. only tensorrt-stubs installed
        return False, "tensorrt not installed (only its type stubs were found)"
    try:
        import pycuda.driver as cuda
    except ImportError as exc:  # pycuda missing, or no libcuda (no NVIDIA driver)
        if getattr(exc, "name", "") in ("pycuda", "pycuda.driver"):
            return False, "pycuda not installed"
        return False, f"no CUDA driver ({exc})"
    try:
        cuda.init()
        count = cuda.Device.count()
    except Exception as exc:  # pycuda raises its own cuda.Error family without a driver or device
        return False, f"no CUDA GPU ({exc})"
    return (True, "") if count > 0 else (False, "no CUDA GPU")


@functools.cache
def machine_identity() -> dict[str, str]:
    """This machine's TensorRT version, GPU name and compute capability (device 0), as engine records hold them."""
    cuda = import_cuda()
    import tensorrt as trt_module

    device = cuda.Device(0)
    major, minor = device.compute_capability()
    return {"tensorrt": trt_module.__version__, "gpu": str(device.name()), "compute_capability": f"{major}.{minor}"}


def tensorrt_logger() -> trt.ILogger:
    """The process's one TensorRT logger: TensorRT messages go to the "anchor_edge" logger.

    Errors are also kept (the last few) so that a failed build or load can
    quote them in its exception (`take_tensorrt_errors`).
    """
    return _logger_bridge()


def take_tensorrt_errors() -> str:
    """TensorRT's error messages since the last call, joined; "" when there were none."""
    text = " | ".join(_recent_errors)
    _recent_errors.clear()
    return text


def import_cuda() -> Any:
    """pycuda.driver once TensorRT and a GPU are known to be there, else a BackendError saying how to get them."""
    available, reason = tensorrt_available()
    if not available:
        raise BackendError(
            f"the TensorRT backend cannot run here: {reason}. {INSTALL_HINT}; or use the onnxruntime backend"
        )
    import pycuda.driver as cuda

    return cuda


@functools.cache
def _logger_bridge() -> trt.ILogger:
    import tensorrt as trt_module

    class LoggingBridge(trt_module.ILogger):
        def __init__(self) -> None:
            trt_module.ILogger.__init__(self)

        def log(self, severity: trt.ILogger.Severity, msg: str) -> None:
            level = _LOG_LEVELS.get(severity.name)
            if level is None:
                return
            if level >= logging.ERROR:
                _recent_errors.append(msg)
            log.log(level, "TensorRT: %s", msg)

    return LoggingBridge()
