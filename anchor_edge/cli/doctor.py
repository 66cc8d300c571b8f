"""`anchor-edge doctor`: what this machine offers, and whether a bundle can run on it.

Deployment problems are mostly environment problems (a missing provider, an
engine built for another GPU or TensorRT, a truncated copy of a model), so
the doctor asks each question the runtime will ask, in the same way, and
reports the answer with the reason when it is "no". Each check is a
`Check(name, ok, detail)`; the command prints them and fails when the
bundle cannot run on any backend.
"""

from __future__ import annotations

import argparse
import platform
import re
import sys
from importlib import metadata
from pathlib import Path
from typing import NamedTuple

import numpy as np

from anchor_edge.backends import auto_choice
from anchor_edge.backends.trt.environment import machine_identity, tensorrt_available
from anchor_edge.bundle.choices import Role
from anchor_edge.bundle.load import Bundle, load_bundle
from anchor_edge.bundle.schema import INPUT_NAME
from anchor_edge.cli.failure import one_line
from anchor_edge.cli.options import add_bundle_option, add_common_flags
from anchor_edge.errors import AnchorEdgeError
from anchor_edge.method.budget import savings_note


def add_parser(commands: argparse._SubParsersAction) -> None:
    doctor = commands.add_parser("doctor", help="check this machine and whether a bundle can run on it")
    add_bundle_option(doctor)
    add_common_flags(doctor)
    doctor.set_defaults(handler=run, subparser=doctor)


def run(args: argparse.Namespace) -> int:
    checks = environment() + bundle_checks(args.bundle)
    marks = {True: "ok  ", False: "FAIL", None: "    "}
    for check in checks:
        print(f"{marks[check.ok]} {check.name:<18} {one_line(check.detail)}")
    if runnable(checks):
        print(f"{args.bundle} can run here")
        return 0
    failed = next(check for check in checks if check.ok is False)
    print(f"anchor-edge: {args.bundle} cannot run here: {failed.name}: {one_line(failed.detail)}", file=sys.stderr)
    return 1


class Check(NamedTuple):
    """One line of the report: ok is None for plain information."""

    name: str
    ok: bool | None
    detail: str


def environment() -> list[Check]:
    """Python, numpy, OpenCV (GStreamer), ONNX Runtime (its providers), OpenVINO, TensorRT, pycuda and the GPU."""
    import cv2

    checks = [
        Check("python", None, f"{platform.python_version()} ({platform.machine()}, {platform.system()})"),
        Check("numpy", None, np.__version__),
        Check(
            "opencv",
            None,
            f"{cv2.__version__}, GStreamer {'yes' if has_gstreamer(cv2.getBuildInformation()) else 'no'}",
        ),
    ]
    try:
        import onnxruntime as ort
    except ImportError:
        checks.append(Check("onnxruntime", False, "not installed: pip install onnxruntime"))
    else:
        providers = ", ".join(ort.get_available_providers())
        checks.append(Check("onnxruntime", True, f"{ort.__version__}, providers {providers}"))
    from anchor_edge.backends.openvino import cpu_supports, openvino_devices

    devices = openvino_devices()
    if devices:
        bf16 = "bf16 on this CPU" if "CPU" in devices and cpu_supports("bf16") else "no CPU bf16"
        checks.append(Check("openvino", None, f"{_version('openvino')}, devices {', '.join(devices)} ({bf16})"))
    else:
        checks.append(Check("openvino", None, "not installed (optional: pip install openvino)"))
    checks.append(Check("pycuda", None, _version("pycuda") or "not installed"))
    checks.append(Check("cuda", None, _cuda_driver_version()))
    available, reason = tensorrt_available()
    if available:
        identity = machine_identity()
        checks.append(Check("tensorrt", True, identity["tensorrt"]))
        checks.append(Check("gpu", True, f"{identity['gpu']}, compute capability {identity['compute_capability']}"))
    else:  # optional: ONNX Runtime runs every bundle
        checks.append(Check("tensorrt", None, f"not available ({reason}); bundles run on ONNX Runtime"))
    return checks


def bundle_checks(path: str | Path) -> list[Check]:
    """Load the bundle with checksums, run each ONNX model once on ONNX Runtime, check any engines fit here."""
    try:
        bundle = load_bundle(path)
    except AnchorEdgeError as error:
        return [Check("bundle", False, str(error))]
    trained = "trained" if bundle.trained else "UNTRAINED (predictions are meaningless)"
    checks = [Check("bundle", True, f"{bundle.root}: {bundle.num_classes} classes, {trained}, checksums match")]
    checks += [_onnx_check(bundle, role) for role in Role]
    checks += _engine_checks(bundle)
    choice, why = auto_choice(bundle)
    checks.append(Check("auto backend", None, f"{choice} ({why})"))
    checks.append(_cost_check(bundle))
    return checks


def has_gstreamer(build_information: str) -> bool:
    """Whether OpenCV was built with GStreamer (JetPack's is, the PyPI wheels are not), from its build information."""
    match = re.search(r"^\s*GStreamer:\s*(\S+)", build_information, re.MULTILINE)
    return bool(match) and match.group(1).upper().startswith("YES")


def _cost_check(bundle: Bundle) -> Check:
    """Whether AnchorNet leaves the downstream anything to save (information: the bundle runs either way)."""
    full = bundle.downstream.multiply_adds
    if bundle.crop not in full:
        return Check("cost", None, "bundle.json records no downstream multiply-adds per size")
    pays, note = savings_note(bundle.anchornet.multiply_adds, full[bundle.crop])
    return Check("cost", None, note if pays else "WARNING " + note)


def runnable(checks: list[Check]) -> bool:
    """Whether the bundle loads and both ONNX models run, or both engines fit."""
    by_name = {check.name: check.ok for check in checks}
    onnx = all(by_name.get(f"{role}.onnx") for role in Role)
    engines = all(by_name.get(f"{role}.engine") for role in Role)
    return bool(by_name.get("bundle")) and (onnx or engines)


def _onnx_check(bundle: Bundle, role: Role) -> Check:
    """Open the model on ONNX Runtime and run it once on zeros of every input size the pipeline sends."""
    from anchor_edge.backends.ort import OrtRunner

    entry = bundle.manifest.models[role]
    sizes = [bundle.crop] if role is Role.ANCHORNET else [b.receptive_field for b in bundle.branches]
    try:
        with OrtRunner(bundle.path(role), threads=1) as runner:
            for size in sizes:
                runner.run({INPUT_NAME: np.zeros((1, 3, size, size), np.float32)})
    except AnchorEdgeError as error:
        return Check(f"{role}.onnx", False, str(error))
    return Check(f"{role}.onnx", True, f"{entry.file} runs on ONNX Runtime ({entry.precision}, inputs {sizes})")


def _engine_checks(bundle: Bundle) -> list[Check]:
    if not bundle.manifest.engines:
        return [
            Check(
                "engines",
                None,
                f"none in the bundle; build them on the target: python export/to_trt.py --bundle {bundle.root}",
            )
        ]
    available, reason = tensorrt_available()
    if not available:
        return [Check(f"{role}.engine", False, f"TensorRT cannot run here: {reason}") for role in Role]
    from anchor_edge.backends.trt.runner import engine_mismatches

    checks = []
    for role in Role:
        try:
            mismatches = engine_mismatches(bundle, role)
        except AnchorEdgeError as error:
            checks.append(Check(f"{role}.engine", False, str(error)))
            continue
        detail = "fits this machine" if not mismatches else "; ".join(mismatches) + ": rebuild it here"
        checks.append(Check(f"{role}.engine", not mismatches, detail))
    return checks


def _cuda_driver_version() -> str:
    """The CUDA driver version pycuda reports, or why it cannot be read."""
    try:
        import pycuda.driver as cuda
    except ImportError:
        return "unknown (pycuda not installed)"
    try:
        cuda.init()
        version = cuda.get_driver_version()
    except Exception as exc:  # pycuda's own cuda.Error family without a driver or device
        return f"unknown ({exc})"
    return f"driver {version // 1000}.{version % 1000 // 10}"


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None
