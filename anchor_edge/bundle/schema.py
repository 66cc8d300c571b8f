"""bundle.json as types: every block a frozen dataclass, read and written through the same types.

The bundle is the one contract between the export stage (which writes it) and
the runtime (which reads it), so both sides go through this module and no
other module indexes raw bundle JSON. `Manifest.from_json` checks types and
names the field at fault; `Manifest.to_json` writes exactly what
`from_json` reads back. Every field is documented in docs/bundle-format.md,
which a test keeps in step with the dataclasses here.

Paths a manifest names are checked before anything is opened: a model or
engine file must be a plain name inside the bundle directory (no `..`, no
absolute path, no folder), so a bundle.json cannot point the runtime at a
file elsewhere on the machine.

Schema version 1 is the only one; a bundle of another version is refused
with the command that re-exports it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

from anchor_edge.bundle.choices import BranchRule, Heatmap, Pooling, Precision, Preset, Role
from anchor_edge.bundle.codec import decode, encode
from anchor_edge.bundle.precision_records import (
    Fp16Record,
    Int8Record,
    PrecisionCheck,
    Verification,
)
from anchor_edge.errors import BundleError
from anchor_edge.method.lsp import LSPParams

SCHEMA_VERSION = 1
MANIFEST_NAME = "bundle.json"
#: The tensor names both models are exported with: one input, AnchorNet's
#: branch probabilities, the downstream network's logits. Map and attention
#: outputs are named per branch (`branch_layout`).
INPUT_NAME = "image"
PROBS_OUTPUT = "probs"
LOGITS_OUTPUT = "logits"


@dataclass(frozen=True)
class Tensor:
    """One model input or output: name, NCHW-style shape (ints, or names for dynamic axes), dtype."""

    name: str
    shape: tuple[int | str, ...]
    dtype: str = "float32"


@dataclass(frozen=True)
class Preprocess:
    """How an image becomes the network input (docs/method.md §8)."""

    resize_short: int
    crop: int
    channel_order: str = "RGB"
    method: str = "central square of the short side, resized (INTER_AREA down, INTER_LINEAR up), center crop"


@dataclass(frozen=True)
class Branch:
    """One localization branch: its receptive field is the patch size it maps to (docs/method.md §2)."""

    name: str
    receptive_field: int
    stride: int
    map_size: int
    map_output: str
    attention_output: str | None = None


def branch_layout(receptive_fields: tuple[int, ...], stride: int, crop: int, *, attention: bool) -> tuple[Branch, ...]:
    """The branches of an AnchorNet with these receptive fields on a `crop` input, and their output names.

    Example:
        >>> [b.map_size for b in branch_layout((63, 95, 111), 8, 224, attention=False)]
        [21, 17, 15]
    """
    return tuple(
        Branch(
            name=f"B{k}",
            receptive_field=k,
            stride=stride,
            map_size=(crop - k) // stride + 1,
            map_output=f"map_{k}",
            attention_output=f"att_{k}" if attention else None,
        )
        for k in receptive_fields
    )


def anchornet_output_names(branches: tuple[Branch, ...]) -> tuple[str, ...]:
    """AnchorNet's outputs in graph order: probs, one map per branch, then the attention maps if any."""
    attention = tuple(b.attention_output for b in branches if b.attention_output)
    return (PROBS_OUTPUT, *(b.map_output for b in branches), *attention)


@dataclass(frozen=True)
class Decision:
    """The branch and class decision (docs/method.md §3): votes a class needs, how the branch is chosen, which of
    its maps LSP reads, and how much AnchorNet's own class distribution weighs in the image's class (§5)."""

    vote_min: int
    branch_rule: BranchRule = BranchRule.CONFIDENT
    heatmap: Heatmap = Heatmap.CLASS
    anchor_vote: float = 0.0


@dataclass(frozen=True)
class Lsp:
    """The bundle's default LSP preset, and every preset's parameters as exported (docs/method.md §4)."""

    preset: Preset
    presets: dict[str, dict[int, LSPParams]]


#: What a model's `multiply_adds` holds: AnchorNet runs once, on the crop, so one number (`ModelEntry[int]`); the
#: downstream network runs on patches of several sizes and on the crop, so one per input size
#: (`ModelEntry[dict[int, int]]`). `Models` says which role has which.
Cost = TypeVar("Cost", int, dict[int, int])


@dataclass(frozen=True)
class ModelEntry(Generic[Cost]):
    """One model of the bundle: its file, how to feed it, what it costs and how it was made.

    `pooling` is AnchorNet's; `name` and `patch_sizes` are the downstream network's.
    """

    file: str
    sha256: str
    precision: Precision
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    inputs: tuple[Tensor, ...]
    outputs: tuple[Tensor, ...]
    weights: str
    parameters: int
    multiply_adds: Cost
    verification: Verification | None = None
    pooling: Pooling | None = None
    name: str | None = None
    patch_sizes: tuple[int, ...] | None = None
    int8: Int8Record | None = None
    fp16: Fp16Record | None = None


@dataclass(frozen=True)
class Models:
    """Both models, by role: AnchorNet's cost is one pass at the crop size, the downstream's one per input size."""

    anchornet: ModelEntry[int]
    downstream: ModelEntry[dict[int, int]]

    def __getitem__(self, role: Role) -> ModelEntry[Any]:
        return getattr(self, Role(role).value)


@dataclass(frozen=True)
class Profile:
    """One TensorRT optimization profile of one input: NCHW shapes min <= opt <= max."""

    input: str
    min: tuple[int, ...]
    opt: tuple[int, ...]
    max: tuple[int, ...]


@dataclass(frozen=True)
class EngineRecord:
    """A TensorRT engine and everything that, when it changes, means "rebuild" (backends/trt/identity.py)."""

    file: str
    sha256: str
    profiles: tuple[Profile, ...]
    tensorrt: str
    gpu: str
    compute_capability: str
    onnx_sha256: str
    precision: Precision


@dataclass(frozen=True)
class Engines:
    """The engines built so far, by role; both None until `python export/to_trt.py` builds them on a GPU."""

    anchornet: EngineRecord | None = None
    downstream: EngineRecord | None = None

    def __getitem__(self, role: Role) -> EngineRecord | None:
        return getattr(self, Role(role).value)

    def __bool__(self) -> bool:
        return self.anchornet is not None or self.downstream is not None


@dataclass(frozen=True)
class Provenance:
    """What exported the bundle: when, and with which versions."""

    created: str
    python: str
    torch: str
    torchvision: str
    onnx: str
    onnxruntime: str
    opset: int


@dataclass(frozen=True)
class CheckSet:
    """Held-out images stored in the bundle with the FP32 pipeline's answers on them, for `anchor-edge verify`.

    `file` is an .npz of `squares` (N, S, S, 3) uint8 BGR, each image's central
    square already resized to resize_short (so preprocessing only crops it),
    and the FP32 pipeline's `class_ids` (N,), AnchorNet `probs` (N, 3, C) and
    class distribution `scores` (N, C) (`Prediction.class_distribution`, AnchorNet's vote included).
    """

    file: str
    sha256: str
    images: int
    source: str


@dataclass(frozen=True)
class VerifyResult:
    """One `anchor-edge verify` run: a backend's whole Pipeline against the FP32 answers of the check set."""

    backend: str
    images: int
    top1_agreement: float
    max_abs_diff: dict[str, float]
    min_agreement: float
    passed: bool


@dataclass(frozen=True)
class Manifest:
    """The whole bundle.json."""

    trained: bool
    num_classes: int
    class_names: tuple[str, ...]
    preprocess: Preprocess
    branches: tuple[Branch, ...]
    decision: Decision
    lsp: Lsp
    models: Models
    export: Provenance
    engines: Engines = field(default_factory=Engines)
    precision: PrecisionCheck | None = None
    check_set: CheckSet | None = None
    verified: tuple[VerifyResult, ...] | None = None
    schema_version: int = SCHEMA_VERSION

    @classmethod
    def from_json(cls, data: Any, *, source: str = MANIFEST_NAME) -> "Manifest":
        """Validate parsed bundle.json; BundleError names `source` and the field at fault."""
        if not isinstance(data, Mapping):
            raise BundleError(f"{source} must hold a JSON object")
        version = data.get("schema_version")
        if version != SCHEMA_VERSION:
            raise BundleError(
                f"{source} has schema_version {version}; this anchor-edge reads {SCHEMA_VERSION}: re-export the "
                "bundle with python export/to_trt.py"
            )
        manifest = decode(cls, data, "", source)
        manifest.check(source)
        return manifest

    def to_json(self) -> dict[str, Any]:
        """The JSON object `from_json` reads back (None fields are left out), schema_version first."""
        data = encode(self)
        return {"schema_version": data.pop("schema_version"), **data}

    def check(self, source: str = MANIFEST_NAME) -> None:
        """The rules no single field's type says: counts that must agree, and file names that stay in the bundle."""
        if len(self.branches) != 3:
            raise BundleError(f"{source}: expected 3 branches (B63, B95, B111), found {len(self.branches)}")
        crop, short = self.preprocess.crop, self.preprocess.resize_short
        if not 0 < crop <= short:  # else every image would be refused, as if it were the image's fault
            raise BundleError(f"{source}: preprocess.crop ({crop}) must be above 0 and at most resize_short ({short})")
        for index, branch in enumerate(self.branches):
            if not (0 < branch.receptive_field <= crop and branch.stride > 0 and branch.map_size > 0):
                raise BundleError(
                    f"{source}: branches[{index}] needs 0 < receptive_field <= crop ({crop}) and stride and map_size "
                    f"above 0, got {branch.receptive_field}, {branch.stride} and {branch.map_size}"
                )
        if len(self.class_names) != self.num_classes:
            raise BundleError(
                f"{source}: class_names has {len(self.class_names)} entries, num_classes is {self.num_classes}"
            )
        for role in Role:
            entry = self.models[role]
            if any(s <= 0 for s in entry.std):
                raise BundleError(f"{source}: models.{role}.mean/std must be 3 numbers each, std > 0")
            _check_file_name(entry.file, f"models.{role}.file", source)
            engine = self.engines[role]
            if engine is not None:
                _check_file_name(engine.file, f"engines.{role}.file", source)
        if self.check_set is not None:
            _check_file_name(self.check_set.file, "check_set.file", source)
        if not 1 <= self.decision.vote_min <= len(self.branches):
            raise BundleError(f"{source}: decision.vote_min must be 1, 2 or 3, got {self.decision.vote_min}")
        if not 0 <= self.decision.anchor_vote < float("inf"):
            raise BundleError(f"{source}: decision.anchor_vote must be a number >= 0, got {self.decision.anchor_vote}")


def read_manifest(bundle_dir: Path) -> Manifest:
    """Parse and validate `bundle_dir/bundle.json` (no file it names is opened)."""
    path = Path(bundle_dir) / MANIFEST_NAME
    if not path.is_file():
        raise BundleError(f"{path} not found: export a bundle first (python export/to_trt.py --out {bundle_dir})")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"{path} is not valid JSON ({exc}); re-export the bundle") from exc
    return Manifest.from_json(data, source=str(path))


def manifest_text(manifest: Manifest) -> str:
    """bundle.json's text: indented, one trailing newline."""
    return json.dumps(manifest.to_json(), indent=2) + "\n"


def is_plain_file_name(name: str) -> bool:
    """Whether `name` names a file directly inside a directory: no folder, no `..`, not absolute."""
    return (
        bool(name) and name not in (".", "..") and "/" not in name and "\\" not in name and not Path(name).is_absolute()
    )


def _check_file_name(name: str, where: str, source: str) -> None:
    """A bundle file must be a plain name in the bundle directory, so a bundle.json cannot point elsewhere."""
    if not is_plain_file_name(name):
        raise BundleError(
            f"{source}: {where} is {name!r}, which is not a file name inside the bundle directory; "
            "a bundle names only its own files: re-export it"
        )
