"""The `--precision` flag's value: one precision for both models, or one per model.

Apart from the converters (export.precision.convert) so that `export/to_trt.py`
parses its flags on a device that has neither onnxconverter-common nor
onnxruntime.quantization (engines from a bundle need neither).
"""

from __future__ import annotations

from anchor_edge.bundle.choices import Precision, Role
from anchor_edge.errors import InputError

PRECISIONS = tuple(precision.value for precision in Precision)
MODEL_ROLES = tuple(role.value for role in Role)


def parse_precision(text: str) -> dict[Role, Precision]:
    """`--precision` value -> {role: precision}.

    "int8" sets both models; "anchornet=fp32,downstream=int8" sets each (an
    unnamed model stays fp32).

    Example:
        >>> parse_precision("downstream=int8")
        {'anchornet': 'fp32', 'downstream': 'int8'}
    """
    if text in PRECISIONS:
        return dict.fromkeys(Role, Precision(text))
    chosen = dict.fromkeys(Role, Precision.FP32)
    for item in text.split(","):
        role, _, precision = item.partition("=")
        if role not in MODEL_ROLES or precision not in PRECISIONS:
            raise InputError(
                f"--precision {text!r}: expected one of {', '.join(PRECISIONS)}, or ROLE=PRECISION pairs "
                f"separated by commas with ROLE in {', '.join(MODEL_ROLES)} (e.g. anchornet=fp32,downstream=int8)"
            )
        chosen[Role(role)] = Precision(precision)
    return chosen
