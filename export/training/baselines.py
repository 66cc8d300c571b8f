"""Export the accuracy benchmark's baseline classifiers beside the default bundle.

    python -m export.training.baselines      # weights/ -> bundles/default-baselines

The runtime bundle holds one downstream network, the one fine-tuned on
patches, and its contract stays that simple. The paper's comparisons need
two more: the same architecture trained on full images (Table 3's
full-image column, Table 4 without fine-tuning) and one trained on resized
images (the rescaling baseline). They go into a small directory of their
own: one ONNX file each (dynamic batch, height and width, output "logits"),
verified against PyTorch like the bundle's, and baselines.json with their
normalisation and multiply-adds per size, written through the typed schema
in anchor_edge/bundle/baselines.py that benchmarks/pays.py and
benchmarks/accuracy.py read it with.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from anchor_edge.bundle.baselines import BaselineEntry, BaselineModels, Baselines, write_baselines
from anchor_edge.errors import AnchorEdgeError, InputError
from export.bundle.build import CROP, PATCH_SIZES
from export.graph.onnx_export import export_downstream
from export.graph.verify import photo_crops, verify
from export.models.checkpoint import load_weights, read_state_dict
from export.models.downstream import DEFAULT_ARCHITECTURE
from export.models.flops import count_multiply_adds
from export.models.trained_weights import downstream_weights
from export.training.downstream import RECIPES, build_downstream, normalization

DEFAULT_OUT = Path("bundles/default-baselines")
#: The baselines a recipe may train; each architecture's recipe says which it has (ResNet-50: no resized one).
BASELINES = ("full", "resized")


def export_baselines(
    weights: Path, out: Path, architecture: str = DEFAULT_ARCHITECTURE, tolerance: float = 1e-3
) -> Path:
    """Export weights/<architecture>/downstream_{full,resized}.pt to out/; returns out/baselines.json."""
    out.mkdir(parents=True, exist_ok=True)
    crops = photo_crops(CROP)
    sizes = [*PATCH_SIZES, CROP]
    mean, std = normalization(architecture)
    models: dict[str, BaselineEntry] = {}
    for kind in (kind for kind in BASELINES if kind in RECIPES[architecture].kinds):
        checkpoint = downstream_weights(weights, architecture, kind)
        if not checkpoint.is_file():
            raise InputError(f"{checkpoint} is missing; train it with: python -m export.train")
        module = build_downstream(architecture)
        load_weights(module, read_state_dict(str(checkpoint)), str(checkpoint))
        module.eval()
        onnx_file = f"downstream_{kind}.onnx"
        export_downstream(module, out / onnx_file, size=CROP)
        report = verify(
            module, out / onnx_file, crops, mean=mean, std=std, sizes=sizes, top1_output="logits", tolerance=tolerance
        )
        models[kind] = BaselineEntry(
            file=onnx_file,
            name=architecture,
            weights=f"checkpoint:{checkpoint}",
            mean=mean,
            std=std,
            multiply_adds={size: count_multiply_adds(module, size) for size in sizes},
            verification=report,
        )
    return write_baselines(out, Baselines(BaselineModels(**models)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m export.training.baselines", description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", type=Path, default=Path("weights"), help="trained weights (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output directory (default: %(default)s)")
    parser.add_argument(
        "--architecture",
        choices=sorted(RECIPES),
        default=DEFAULT_ARCHITECTURE,
        help="whose baselines, weights/<architecture>/ (default: %(default)s, the default bundle's)",
    )
    parser.add_argument(
        "--tolerance",
        type=float,
        default=1e-3,
        help="largest |ONNX - PyTorch| difference the verification accepts (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        print(f"wrote {export_baselines(args.weights, args.out, args.architecture, args.tolerance)}")
    except (AnchorEdgeError, OSError) as error:
        print(f"baseline export failed: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
