"""Export AnchorNet and a downstream network to a bundle (ONNX, then TensorRT engines where possible).

    python export/to_trt.py                              # the default bundle, bundles/default
    python export/to_trt.py --downstream resnet50 --out bundles/resnet50
    python export/to_trt.py --precision anchornet=fp32,downstream=int8

A thin entry point for a checkout: the flags and the work live in
export/cli.py (`python export/to_trt.py --help` lists them; docs/exporting.md
explains them).
"""

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script from a checkout: make `export` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from export.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
