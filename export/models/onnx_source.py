"""An already-exported ONNX classifier as the downstream network (`--downstream model.onnx`), no torch needed.

It is the most common thing an edge user hands over, usually exported for
one 224 px input. The runtime feeds the downstream patches of 63, 95 and
111 px and the 224 px image, in batches, as input "image" with output
"logits", so the graph is edited: its input and output are renamed, and
batch, height and width become dynamic. That is only sound for a network
whose spatial size never reaches a fixed-size op, a global-pooling CNN;
every size is checked with ONNX's strict shape inference and run on ONNX
Runtime before anything is written, and a graph that cannot take a size
(a Flatten into a fixed Linear, a fixed AveragePool, position embeddings,
a batch frozen into a Reshape) is refused with the node that fails named.
The edited graph is then verified against the original file at the sizes
the original accepts (export/bundle/downstream_file.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np
import onnx
import onnxruntime as ort

from anchor_edge.bundle.schema import INPUT_NAME, LOGITS_OUTPUT
from anchor_edge.errors import InputError
from export.models.downstream import IMAGENET_MEAN, IMAGENET_STD, Downstream

#: Every input size the runtime gives the downstream network: the three patch sizes and the full image.
RUNTIME_SIZES = (63, 95, 111, 224)
_CHECK_BATCH = 2
_FIX = (
    "the downstream must accept any input size from 63 px and pool globally before its classifier "
    "(GlobalAveragePool, not a fixed AveragePool, Flatten into a fixed Gemm, or position embeddings); "
    "export it again from the source network with dynamic height and width, or give that network itself "
    "(NAME, timm:NAME or MODULE:CALLABLE)"
)


class OnnxSource(NamedTuple):
    """The user's ONNX file and the edited graph that the bundle will hold.

    `input_name` and `output_name` are the original file's; `fixed_size` is
    its fixed input height and width (None where dynamic), `fixed_batch` its
    fixed batch (None where dynamic), which the comparison with it obeys.
    """

    path: Path
    model: onnx.ModelProto
    input_name: str
    output_name: str
    fixed_size: tuple[int | None, int | None]
    fixed_batch: int | None

    def accepts(self, size: int) -> bool:
        """Whether the original file takes a `size` x `size` input."""
        return all(fixed in (None, size) for fixed in self.fixed_size)

    def run_original(self, batch: np.ndarray) -> list[np.ndarray]:
        """The original file's logits on ONNX Runtime, one image at a time where its batch is fixed at 1."""
        session = ort.InferenceSession(str(self.path), providers=["CPUExecutionProvider"])
        chunks = [batch[i : i + 1] for i in range(len(batch))] if self.fixed_batch == 1 else [batch]
        return [np.concatenate([session.run([self.output_name], {self.input_name: c})[0] for c in chunks])]


def load_onnx(path: Path, num_classes: int | None) -> Downstream:
    """An ONNX classifier file, checked, made dynamic and tried at every runtime size.

    Raises:
        InputError: the file is missing or invalid (onnx.checker, full check),
            does not map one (N, 3, H, W) float input to (N, C) logits, has a
            fixed batch other than 1, cannot take a runtime size (the node is
            named), or has another class count than `num_classes`.
    """
    if not path.is_file():
        raise InputError(f"ONNX file not found: {path}")
    try:
        onnx.checker.check_model(str(path), full_check=True)
        model = onnx.load(str(path))
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as err:
        raise InputError(f"{path} is not a valid ONNX model (onnx.checker, full check): {err}") from err
    image, logits = _single_input_and_output(model, path)
    dims = [d.dim_value if d.HasField("dim_value") else None for d in image.type.tensor_type.shape.dim]
    if dims[1] not in (None, 3):
        raise InputError(f"{path}: input {image.name!r} has {dims[1]} channels; the downstream takes 3 (RGB or BGR)")
    if dims[0] not in (None, 1):
        raise InputError(
            f"{path}: input {image.name!r} has a fixed batch of {dims[0]}; export it with batch 1 or a dynamic batch"
        )
    source = OnnxSource(
        path, _dynamic(model, image.name, logits.name), image.name, logits.name, (dims[2], dims[3]), dims[0]
    )
    classes = _classes_at_every_size(source)
    if num_classes is not None and classes != num_classes:
        raise InputError(f"{path} outputs {classes} classes, not the {num_classes} asked for")
    return Downstream(
        module=None,
        name=path.name,
        num_classes=classes,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        class_names=None,
        pretrained=f"onnx:{path}",
        onnx_source=source,
    )


def _single_input_and_output(model: onnx.ModelProto, path: Path) -> tuple[onnx.ValueInfoProto, onnx.ValueInfoProto]:
    initializers = {init.name for init in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    outputs = list(model.graph.output)
    if len(inputs) != 1 or len(outputs) != 1:
        raise InputError(
            f"{path} has inputs {[i.name for i in inputs]} and outputs {[o.name for o in outputs]}; a downstream "
            "classifier takes one image tensor and gives one logits tensor"
        )
    image, logits = inputs[0], outputs[0]
    if image.type.tensor_type.elem_type != onnx.TensorProto.FLOAT or len(image.type.tensor_type.shape.dim) != 4:
        raise InputError(f"{path}: input {image.name!r} must be a float32 (N, 3, H, W) tensor")
    if len(logits.type.tensor_type.shape.dim) not in (0, 2):
        raise InputError(f"{path}: output {logits.name!r} must be (N, classes) logits")
    return image, logits


def _dynamic(model: onnx.ModelProto, input_name: str, output_name: str) -> onnx.ModelProto:
    """A copy whose input is "image" (batch, 3, height, width) and output "logits" (batch, C), stale shapes dropped."""
    edited = onnx.ModelProto()
    edited.CopyFrom(model)
    graph = edited.graph
    renames = {input_name: INPUT_NAME, output_name: LOGITS_OUTPUT}
    for node in graph.node:
        node.input[:] = [renames.get(name, name) for name in node.input]
        node.output[:] = [renames.get(name, name) for name in node.output]
    image = next(i for i in graph.input if i.name == input_name)
    image.name = INPUT_NAME
    for dim, name in zip(image.type.tensor_type.shape.dim, ("batch", None, "height", "width")):
        if name is not None:
            dim.Clear()
            dim.dim_param = name
    logits = graph.output[0]
    logits.name = LOGITS_OUTPUT
    classes = [d.dim_value if d.HasField("dim_value") else None for d in logits.type.tensor_type.shape.dim][1:]
    del logits.type.tensor_type.shape.dim[:]
    logits.type.tensor_type.shape.dim.add().dim_param = "batch"
    if classes and classes[0]:
        logits.type.tensor_type.shape.dim.add().dim_value = classes[0]
    else:
        logits.type.tensor_type.shape.dim.add().dim_param = "classes"
    del graph.value_info[:]  # shapes inferred for the original's fixed size would contradict the new ones
    return edited


def _classes_at_every_size(source: OnnxSource) -> int:
    """Run strict shape inference and ONNX Runtime at every runtime size; the class count, or the failing node."""
    for size in RUNTIME_SIZES:
        fixed = onnx.ModelProto()
        fixed.CopyFrom(source.model)
        for dim, value in zip(
            fixed.graph.input[_input_index(fixed)].type.tensor_type.shape.dim, (_CHECK_BATCH, 3, size, size)
        ):
            dim.Clear()
            dim.dim_value = value
        try:
            inferred = onnx.shape_inference.infer_shapes(fixed, check_type=True, strict_mode=True, data_prop=True)
        except onnx.shape_inference.InferenceError as err:
            raise InputError(f"{source.path} cannot take a {size} px input: {str(err).strip()}; {_FIX}") from err
        _check_pool_windows(inferred, source.path, size)
    session = ort.InferenceSession(source.model.SerializeToString(), providers=["CPUExecutionProvider"])
    counts = set()
    for size in RUNTIME_SIZES:
        try:
            (logits,) = session.run([LOGITS_OUTPUT], {INPUT_NAME: np.zeros((_CHECK_BATCH, 3, size, size), np.float32)})
        except Exception as err:  # ONNX Runtime raises its own types; its message names the node
            raise InputError(
                f"{source.path} cannot take a batch of {size} px inputs on ONNX Runtime: {str(err).strip()}; {_FIX}"
            ) from err
        if logits.ndim != 2 or logits.shape[0] != _CHECK_BATCH:
            raise InputError(
                f"{source.path} gives shape {logits.shape} for {_CHECK_BATCH} inputs of {size} px, not "
                f"({_CHECK_BATCH}, classes); {_FIX}"
            )
        counts.add(logits.shape[1])
    if len(counts) != 1:
        raise InputError(f"{source.path} gives {sorted(counts)} classes at different sizes; {_FIX}")
    return counts.pop()


def _check_pool_windows(inferred: onnx.ModelProto, path: Path, size: int) -> None:
    """A pooling window larger than its (padded) input: ONNX Runtime pools the part that is there, PyTorch refuses.

    Either way the network no longer computes what it was trained to (a
    fixed 7x7 AveragePool over a 2x2 map), so it counts as failing the size.
    """
    shapes = {
        i.name: [d.dim_value for d in i.type.tensor_type.shape.dim]
        for i in (*inferred.graph.input, *inferred.graph.value_info)
    }
    for node in inferred.graph.node:
        if node.op_type not in ("AveragePool", "MaxPool", "LpPool") or node.input[0] not in shapes:
            continue
        attributes = {a.name: list(a.ints) for a in node.attribute}
        spatial = shapes[node.input[0]][2:]
        pads = attributes.get("pads") or [0] * 2 * len(spatial)
        padded = [dim + pads[i] + pads[i + len(spatial)] for i, dim in enumerate(spatial)]
        if any(k > p for k, p in zip(attributes.get("kernel_shape", []), padded)):
            raise InputError(
                f"{path} cannot take a {size} px input: node name: {node.name} ({node.op_type}) has a "
                f"{'x'.join(map(str, attributes['kernel_shape']))} window over a "
                f"{'x'.join(map(str, spatial))} map; {_FIX}"
            )


def _input_index(model: onnx.ModelProto) -> int:
    return [i.name for i in model.graph.input].index(INPUT_NAME)
