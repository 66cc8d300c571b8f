"""Float32 ONNX model -> float16, with float32 inputs and outputs.

TensorRT 11 has no FP16 builder flag: a strongly typed engine runs in FP16
only when the ONNX graph itself is FP16. The conversion is onnxconverter-
common's `convert_float_to_float16` with `keep_io_types=True`, so callers keep
feeding and reading float32 and the runtime needs no change.

One repair comes first. AnchorNet's logit maps (`map_63`, ...) are graph
outputs *and* feed the pooling inside the graph. keep_io_types puts a Cast
to float32 on each output, and the converter then wires the internal
consumers inconsistently: the converted model fails to load. Giving every
such output its own Identity node (the internal tensor keeps flowing inside,
the Identity alone produces the output) makes the conversion clean.

FP16 is for GPUs: ONNX Runtime's CPU provider runs it slower than FP32, as
it casts back to float32 around the ops it has no FP16 kernel for
(docs/precision.md). Ops the converter blocks (Resize, for AnchorNet's squeeze-excite gates) stay float32 behind
Cast nodes.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import onnx
from onnxconverter_common import float16

from anchor_edge.bundle.precision_records import Fp16Record

log = logging.getLogger("anchor_edge")

INNER_SUFFIX = "/inner"


def convert_to_fp16(source: Path, target: Path) -> Fp16Record:
    """Write the float16 version of `source` to `target`; return the record for bundle.json.

    Example:
        >>> convert_to_fp16(Path("anchornet.onnx"), Path("anchornet.fp16.onnx")).io_types
        'float32'
    """
    model = onnx.load(str(source))
    repaired = dedicate_output_identities(model)
    with warnings.catch_warnings(record=True) as truncated:  # one warning per tiny weight: count them instead
        warnings.simplefilter("always", UserWarning)
        converted = float16.convert_float_to_float16(model, keep_io_types=True)
    if truncated:
        log.info("fp16: %d weights below float16's range were truncated to +-1e-7 by the converter", len(truncated))
    onnx.checker.check_model(converted)
    onnx.save(converted, str(target))
    log.info("converted %s to fp16 (%.1f MB)", source.name, target.stat().st_size / 1e6)
    return Fp16Record(
        method="onnxconverter_common.float16.convert_float_to_float16, keep_io_types=True",
        io_types="float32",
        output_identities=tuple(repaired),
    )


def dedicate_output_identities(model: onnx.ModelProto) -> list[str]:
    """Give each graph output that is also consumed inside the graph its own Identity producer.

    The producer's tensor is renamed `<output>/inner` and its consumers follow;
    an Identity copies it to the output name. Returns the outputs repaired.
    """
    graph = model.graph
    consumed = {name for node in graph.node for name in node.input}
    repaired = [name for name in (o.name for o in graph.output) if name in consumed]
    for name in repaired:
        inner = name + INNER_SUFFIX
        for node in graph.node:
            node.output[:] = [inner if out == name else out for out in node.output]
            node.input[:] = [inner if inp == name else inp for inp in node.input]
        for info in graph.value_info:
            if info.name == name:
                info.name = inner
        graph.node.append(onnx.helper.make_node("Identity", [inner], [name], name=f"{name}/output_identity"))
    return repaired
