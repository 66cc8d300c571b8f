"""Build a bundle's TensorRT engines: strongly typed, one profile set per model, timed and cached.

Precision is decided in the ONNX graph (fp16 converted, int8 as Q/DQ nodes),
never by builder flags: TensorRT 11 removed BuilderFlag.FP16/INT8 and the
INT8 calibrator, and a strongly typed network builds the same engine on 10
and 11. TensorRT 10 makes a network strongly typed through the
NetworkDefinitionCreationFlag.STRONGLY_TYPED flag; 11 always is and keeps the
flag only as a deprecated no-op, so the flag is passed when the enum has it
(no version checks). TF32 is switched off, so float32 tensors compute in
float32 and an "fp32" engine matches ONNX Runtime to 1e-3.

Builds take minutes on a Jetson. The tactic timings are kept in a timing
cache file that every build loads (when present and valid for this GPU and
TensorRT) and saves back, so the second engine and later rebuilds are
faster. tensorrt is imported lazily: importing this module never fails.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Mapping, Sequence

from anchor_edge.backends.trt.environment import (
    INSTALL_HINT,
    machine_identity,
    take_tensorrt_errors,
    tensorrt_available,
    tensorrt_logger,
)
from anchor_edge.backends.trt.profiles import DEFAULT_MAX_BATCH, DEFAULT_MAX_PATCHES, plan_profiles
from anchor_edge.backends.trt.runner import TrtRunner
from anchor_edge.bundle import load_bundle, sha256_of
from anchor_edge.bundle.atomic_write import write_atomically
from anchor_edge.bundle.choices import Role
from anchor_edge.bundle.schema import MANIFEST_NAME, EngineRecord, Profile, manifest_text, read_manifest
from anchor_edge.errors import ExportError, InputError
from export.engines.plan import engine_record

if TYPE_CHECKING:
    import tensorrt as trt

log = logging.getLogger("anchor_edge")

DEFAULT_WORKSPACE_BYTES = 2 << 30  # 2 GiB: ample for AnchorNet and ResNet-50-sized networks
DEFAULT_TIMING_CACHE = Path.home() / ".cache" / "anchor-edge" / "tensorrt.timing-cache"
ENGINE_FILES = {role: f"{role}.engine" for role in Role}


class EngineBuildError(ExportError):
    """TensorRT is missing, or refused to parse or build a model; the message names the engine and tensor."""


def build_engines(
    bundle_dir: str | Path,
    *,
    max_batch: int = DEFAULT_MAX_BATCH,
    max_patches: int = DEFAULT_MAX_PATCHES,
    preset: str | None = None,
    workspace_bytes: int = DEFAULT_WORKSPACE_BYTES,
    timing_cache: str | Path = DEFAULT_TIMING_CACHE,
) -> dict[Role, EngineRecord]:
    """Build the AnchorNet and downstream engines of a bundle, beside its ONNX models.

    Args:
        bundle_dir: an exported bundle (its ONNX checksums are verified first).
        max_batch: most images per call (AnchorNet, full-image downstream).
        max_patches: most patches of one size per downstream call.
        preset: LSP preset whose K tunes the patch profiles; None: the bundle's.
        workspace_bytes: TensorRT's tactic workspace limit.
        timing_cache: timing cache file, loaded if present and saved after each build.

    Returns:
        The engine records by role; write them into bundle.json with `record_engines`. The engine files
        replace the bundle's only once both are built.

    Raises:
        EngineBuildError: TensorRT or a GPU is missing, or a build failed.

    Example:
        >>> records = build_engines("bundles/default", max_batch=8, max_patches=32)
        >>> record_engines("bundles/default", records)
    """
    _require_tensorrt()
    bundle = load_bundle(bundle_dir)
    plan = plan_profiles(bundle.manifest, max_batch=max_batch, max_patches=max_patches, preset=preset or bundle.preset)
    records, built = {}, {}
    try:  # every engine is built aside first: a failed build leaves the engines bundle.json records in place
        for role in Role:
            model = bundle.manifest.models[role]
            built[role] = bundle.root / f".{ENGINE_FILES[role]}.building"
            build_engine(
                bundle.path(role), built[role], plan[role], workspace_bytes=workspace_bytes, timing_cache=timing_cache
            )
            records[role] = engine_record(
                file=ENGINE_FILES[role],
                sha256=sha256_of(built[role]),
                onnx_sha256=model.sha256,
                precision=model.precision,
                profiles=plan[role],
                **machine_identity(),
            )
    except BaseException:
        for path in built.values():
            path.unlink(missing_ok=True)
        raise
    for role, path in built.items():
        os.replace(path, bundle.root / ENGINE_FILES[role])
    return records


def build_engine(
    onnx_path: str | Path,
    engine_path: str | Path,
    profiles: Sequence[Profile],
    *,
    workspace_bytes: int = DEFAULT_WORKSPACE_BYTES,
    timing_cache: str | Path = DEFAULT_TIMING_CACHE,
) -> None:
    """Parse `onnx_path` into a strongly typed network and write its engine (one profile per entry) to `engine_path`.

    Raises:
        EngineBuildError: naming the engine and, where TensorRT says, the node or tensor.
    """
    if workspace_bytes < 1:
        raise InputError(f"workspace_bytes must be positive, got {workspace_bytes}")
    _require_tensorrt()
    import tensorrt as trt_module

    onnx_path, engine_path, timing_cache = Path(onnx_path), Path(engine_path), Path(timing_cache)
    name = engine_path.name
    log.info("building engine for %s, this can take minutes", onnx_path.name)
    started = time.perf_counter()
    take_tensorrt_errors()
    logger = tensorrt_logger()
    builder = trt_module.Builder(logger)
    network = builder.create_network(_strongly_typed_flags())
    parser = trt_module.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        # Each ParserError's text names the ONNX node, its operator and the problem.
        problems = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EngineBuildError(f"TensorRT cannot parse {onnx_path} for {name}: {problems or take_tensorrt_errors()}")
    config = builder.create_builder_config()
    _disable_tf32(config)
    config.set_memory_pool_limit(trt_module.MemoryPoolType.WORKSPACE, workspace_bytes)
    if config.get_memory_pool_limit(trt_module.MemoryPoolType.WORKSPACE) != workspace_bytes:
        raise EngineBuildError(
            f"TensorRT refused a workspace of {workspace_bytes} bytes for {name}: {take_tensorrt_errors()}"
        )
    _add_profiles(builder, network, config, profiles, name)
    cache = _attach_timing_cache(config, timing_cache, name)  # must outlive the build
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EngineBuildError(
            f"TensorRT failed to build {name} from {onnx_path}: "
            f"{take_tensorrt_errors() or 'see the TensorRT log above'}"
        )
    write_atomically(engine_path, serialized)
    write_atomically(timing_cache, cache.serialize())
    log.info("built %s in %.1f s (timing cache %s)", name, time.perf_counter() - started, timing_cache)


def record_engines(bundle_dir: str | Path, engines: Mapping[Role, EngineRecord]) -> None:
    """Write engine records into the bundle's bundle.json "engines", keeping every other field but the TensorRT
    verify result of the engines replaced.

    The file is replaced atomically (a temporary file, then os.replace), so a
    crash mid-write leaves the previous bundle.json intact.

    Raises:
        InputError: a record built from an ONNX model other than the bundle's.
    """
    path = Path(bundle_dir) / MANIFEST_NAME
    manifest = read_manifest(Path(bundle_dir))
    for role, record in engines.items():
        bundle_sha = manifest.models[Role(role)].sha256
        if record.onnx_sha256 != bundle_sha:
            raise InputError(
                f"the {role} engine was built from ONNX sha256 {record.onnx_sha256}, "
                f"but {path} holds {bundle_sha}: rebuild the engines for this bundle"
            )
    recorded = dataclasses.replace(manifest.engines, **{Role(role).value: record for role, record in engines.items()})
    # A verify result of the engines these replace says nothing of the new ones: `anchor-edge verify` again.
    verified = tuple(r for r in manifest.verified or () if r.backend != TrtRunner.backend) or None
    updated = dataclasses.replace(manifest, engines=recorded, verified=verified)
    write_atomically(path, manifest_text(updated).encode("utf-8"))


def _require_tensorrt() -> None:
    available, reason = tensorrt_available()
    if not available:
        raise EngineBuildError(
            f"cannot build TensorRT engines here: {reason}. Build them on the target device ({INSTALL_HINT})"
        )


def _strongly_typed_flags() -> int:
    """create_network flags for a strongly typed network: the flag on TensorRT 10; 11 always is one."""
    import tensorrt as trt_module

    flag = getattr(trt_module.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    return 0 if flag is None else 1 << int(flag)


def _disable_tf32(config: trt.IBuilderConfig) -> None:
    """Keep float32 tensors in float32 arithmetic.

    TF32 (on by default on Ampere and later, Orin included) rounds conv and
    matmul inputs to 10-bit mantissas, about 1e-3 relative error: that would
    break the fp32 parity with ONNX Runtime the bundle's "precision" promises.
    Faster engines come from an fp16 graph, chosen at export.
    """
    import tensorrt as trt_module

    tf32 = getattr(trt_module.BuilderFlag, "TF32", None)
    if tf32 is not None:
        config.clear_flag(tf32)


def _add_profiles(
    builder: trt.Builder,
    network: trt.INetworkDefinition,
    config: trt.IBuilderConfig,
    profiles: Sequence[Profile],
    name: str,
) -> None:
    import tensorrt as trt_module

    network_inputs = {network.get_input(i).name for i in range(network.num_inputs)}
    for index, planned in enumerate(profiles):
        if planned.input not in network_inputs:
            raise EngineBuildError(
                f"{name}: profile {index} is for input {planned.input!r}, the network has {sorted(network_inputs)}"
            )
        profile = builder.create_optimization_profile()
        try:
            low, opt, high = (trt_module.Dims(list(shape)) for shape in (planned.min, planned.opt, planned.max))
            profile.set_shape(planned.input, low, opt, high)
        except ValueError as exc:  # TensorRT's Python binding raises on an inconsistent min/opt/max
            raise EngineBuildError(
                f"{name}: TensorRT rejects profile {index} for input {planned.input!r} "
                f"(min {planned.min}, opt {planned.opt}, max {planned.max}): {exc}"
            ) from exc
        if config.add_optimization_profile(profile) < 0:
            raise EngineBuildError(
                f"{name}: TensorRT rejects profile {index} for input {planned.input!r}: {take_tensorrt_errors()}"
            )


def _attach_timing_cache(config: trt.IBuilderConfig, path: Path, name: str) -> trt.ITimingCache:
    """Load the timing cache file into `config`; a cache from another GPU or TensorRT is replaced, not fatal.

    Returns the attached cache: the build adds its timings to it, and it must stay alive until the build ends.
    """
    saved = path.read_bytes() if path.is_file() else b""
    cache = config.create_timing_cache(saved)
    if config.set_timing_cache(cache, False):
        return cache
    if saved:
        log.warning("timing cache %s does not fit this GPU or TensorRT; starting a new one", path)
        take_tensorrt_errors()
        cache = config.create_timing_cache(b"")
        if config.set_timing_cache(cache, False):
            return cache
    raise EngineBuildError(f"{name}: TensorRT cannot attach a timing cache: {take_tensorrt_errors()}")
