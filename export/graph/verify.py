"""Check an exported ONNX model against its PyTorch original on ONNX Runtime.

An export can go wrong silently (an op exported with other semantics, a
dynamic axis frozen to the example's size), so every model is run on real
photos, preprocessed exactly as the runtime will, and on random input, at
every size the runtime will feed it. The numbers go into bundle.json and the
export stops if any output differs by more than the tolerance.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from anchor_edge.bundle.precision_records import Verification
from anchor_edge.bundle.schema import INPUT_NAME
from anchor_edge.errors import ExportError
from anchor_edge.method.preprocess import normalize, resize_and_crop
from export.data.photos import real_photos

#: What an exported model is compared with: normalized (N, 3, H, W) float32 in, its outputs in graph order out.
Reference = Callable[[np.ndarray], Sequence[np.ndarray]]


class VerificationError(ExportError):
    """An exported model disagrees with PyTorch beyond the tolerance."""


def torch_reference(module: torch.nn.Module, *, reverse_channels: bool = False) -> Reference:
    """`module` as a Reference; `reverse_channels` feeds it BGR when the exported graph takes RGB."""

    def run(batch: np.ndarray) -> list[np.ndarray]:
        tensor = torch.from_numpy(np.ascontiguousarray(batch[:, ::-1] if reverse_channels else batch))
        with torch.no_grad():
            outputs = module(tensor)
        return [o.numpy() for o in ([outputs] if isinstance(outputs, torch.Tensor) else outputs)]

    return run


def photo_crops(size: int = 224) -> np.ndarray:
    """The bundled real photos as the runtime's (N, size, size, 3) uint8 RGB network inputs."""
    return np.stack([resize_and_crop(image, crop=size)[0] for _, image in real_photos()])


def verify(
    reference: torch.nn.Module | Reference,
    onnx_path: Path,
    crops: np.ndarray,
    *,
    mean: Sequence[float],
    std: Sequence[float],
    sizes: Sequence[int],
    top1_output: str,
    tolerance: float,
    against: str = "PyTorch",
) -> Verification:
    """Compare `reference` (a PyTorch module, or the original of an edited graph) with `onnx_path`.

    The comparison runs on real crops and random input at each size. Real
    crops are center-cut to each size (as patches are); random input is
    standard normal. Returns the bundle's record of the comparison and
    raises VerificationError past `tolerance`, naming the reference as
    `against` says.
    """
    run_reference = torch_reference(reference) if isinstance(reference, torch.nn.Module) else reference
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    output_names = [node.name for node in session.get_outputs()]
    rng = np.random.default_rng(0)
    worst = dict.fromkeys(output_names, 0.0)
    agree = total = 0
    for size in sizes:
        start = (crops.shape[1] - size) // 2
        real = normalize(crops[:, start : start + size, start : start + size], mean, std)
        noise = rng.standard_normal((2, 3, size, size)).astype(np.float32)
        for batch, is_real in ((real, True), (noise, False)):
            expected = run_reference(batch)
            got = session.run(output_names, {INPUT_NAME: batch})
            for name, ref, out in zip(output_names, expected, got):
                worst[name] = max(worst[name], float(np.abs(ref - out).max()))
            if is_real:
                ref_top = expected[output_names.index(top1_output)].argmax(-1)
                agree += int((ref_top == got[output_names.index(top1_output)].argmax(-1)).sum())
                total += ref_top.size
    report = Verification(
        images=int(crops.shape[0]),
        sizes=tuple(sizes),
        max_abs_diff=worst,
        top1_agreement=agree / total,
        tolerance=tolerance,
    )
    failed = {name: diff for name, diff in worst.items() if diff > tolerance}
    if failed:
        raise VerificationError(
            f"{onnx_path.name} differs from {against} on ONNX Runtime by {failed} (tolerance {tolerance}); "
            "the export is not faithful: check for unsupported ops, or raise --tolerance if this is expected"
        )
    return report
