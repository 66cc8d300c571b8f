"""What each backend can be told, as one frozen value per backend, so an option never reaches one that ignores it.

ONNX Runtime takes execution providers, threads and provider options;
OpenVINO a device, a precision and threads; TensorRT runs the bundle's
engines as built and takes nothing. `Pipeline.from_bundle(path, backend=...)`
takes "auto", a backend's name, or one of these values; the keyword forms
(`threads=`, `providers=`, `device=`, ...) are turned into the value of the
chosen backend by `backend_options`, and a keyword that backend does not
take is an InputError (the project's rule: no silent fallback, no option
silently dropped).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Union

from anchor_edge.backends.ort_providers import ProviderOptions
from anchor_edge.bundle.choices import Role
from anchor_edge.checks import positive_int_or_none
from anchor_edge.errors import InputError

if TYPE_CHECKING:
    from anchor_edge.backends.base import Runner
    from anchor_edge.bundle.load import Bundle

#: OpenVINO's inference precisions; f32 is the default (bf16 changes the numbers, docs/backends.md).
OPENVINO_PRECISIONS = ("f32", "bf16", "f16")
#: The keyword forms of Pipeline.from_bundle that are not an option's own field name.
KEYWORD_FIELDS = {"inference_precision": "precision"}


@dataclass(frozen=True)
class OnnxRuntimeOptions:
    """ONNX Runtime: execution providers in priority order ("cpu", "cuda", "tensorrt", "openvino" or "auto"),
    intra-op threads per model (None: every physical core) and where the TensorRT provider caches its engines
    (None: inside the bundle). Its profiles and precision are the bundle's (anchor_edge/backends/ort_tensorrt.py)."""

    backend: ClassVar[str] = "onnxruntime"
    providers: str | tuple[str, ...] = "cpu"
    threads: int | None = None
    provider_options: ProviderOptions = ProviderOptions()

    def __post_init__(self) -> None:
        if not isinstance(self.providers, str):
            object.__setattr__(self, "providers", tuple(self.providers))
        positive_int_or_none("threads", self.threads)
        named = (self.providers,) if isinstance(self.providers, str) else self.providers
        if self.provider_options.tensorrt_cache is not None and "tensorrt" not in named:
            raise InputError(
                "provider_options.tensorrt_cache applies only to ONNX Runtime's TensorRT provider, and providers "
                f"{self.providers!r} does not name it: add 'tensorrt' to providers, or leave tensorrt_cache unset"
            )

    def open(self, bundle: "Bundle") -> tuple["Runner", "Runner"]:
        from anchor_edge.backends.ort import OrtRunner
        from anchor_edge.backends.ort_tensorrt import tensorrt_provider

        return open_both(
            lambda role: OrtRunner(
                bundle.path(role),
                threads=self.threads,
                providers=self.providers,
                tensorrt=functools.partial(tensorrt_provider, bundle, role, self.provider_options),
            )
        )


@dataclass(frozen=True)
class OpenVinoOptions:
    """OpenVINO: the device ("CPU", "GPU", "NPU", "AUTO"), the inference precision, CPU threads (None: its own)."""

    backend: ClassVar[str] = "openvino"
    device: str = "CPU"
    precision: str = "f32"
    threads: int | None = None

    def __post_init__(self) -> None:
        if self.precision not in OPENVINO_PRECISIONS:
            raise InputError(f"OpenVINO precision must be one of {OPENVINO_PRECISIONS}, got {self.precision!r}")
        positive_int_or_none("threads", self.threads)

    def open(self, bundle: "Bundle") -> tuple["Runner", "Runner"]:
        from anchor_edge.backends.openvino import OpenVinoRunner

        return open_both(
            lambda role: OpenVinoRunner(
                bundle.path(role), device=self.device, precision=self.precision, threads=self.threads
            )
        )


@dataclass(frozen=True)
class TensorRtOptions:
    """TensorRT: the bundle's engines run as they were built (precision, profiles); nothing to set here."""

    backend: ClassVar[str] = "tensorrt"

    def open(self, bundle: "Bundle") -> tuple["Runner", "Runner"]:
        from anchor_edge.backends.trt.runner import TrtRunner

        return open_both(lambda role: TrtRunner.from_bundle(bundle, role))


BackendOptions = Union[OnnxRuntimeOptions, OpenVinoOptions, TensorRtOptions]
OPTIONS_BY_BACKEND: dict[str, type[BackendOptions]] = {
    options.backend: options for options in (OnnxRuntimeOptions, OpenVinoOptions, TensorRtOptions)
}


def open_both(open_one: Callable[[Role], "Runner"]) -> tuple["Runner", "Runner"]:
    """AnchorNet's runner, then the downstream's; when the second fails to open, the first is closed.

    A runner can hold what the process does not give back by itself (TensorRT's
    device buffers and CUDA context), so a failed open must not leave one behind.
    """
    anchornet = open_one(Role.ANCHORNET)
    try:
        return anchornet, open_one(Role.DOWNSTREAM)
    except BaseException:
        anchornet.close()
        raise


def backend_options(backend: str, **keywords: Any) -> BackendOptions:
    """The options value of `backend` from keyword forms; keywords that are None count as not given.

    Raises:
        InputError: a keyword no backend knows, or one that `backend` does not take (naming those that do).
    """
    options = OPTIONS_BY_BACKEND[backend]
    given = {KEYWORD_FIELDS.get(name, name): value for name, value in keywords.items() if value is not None}
    refused = [name for name in given if name not in option_names(options)]
    if refused:
        raise InputError(
            f"{', '.join(refused)} {'does' if len(refused) == 1 else 'do'} not apply to {backend}: "
            + "; ".join(_takes(other) for other in OPTIONS_BY_BACKEND.values())
        )
    return options(**given)


def option_names(options: type[BackendOptions]) -> tuple[str, ...]:
    """The options a backend takes, by field name."""
    return tuple(field.name for field in dataclasses.fields(options))


def takes(backend: str, option: str) -> bool:
    """Whether `backend` takes `option` (for callers that set a default only where it applies, e.g. pool threads)."""
    return option in option_names(OPTIONS_BY_BACKEND[backend])


def _takes(options: type[BackendOptions]) -> str:
    names = [next((k for k, v in KEYWORD_FIELDS.items() if v == n), n) for n in option_names(options)]
    return f"{options.backend} takes {', '.join(names) if names else 'none'}"
