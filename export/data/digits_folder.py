"""Write the digits benchmark as a folder of class subfolders, the layout `python -m export.train --data` reads.

    python -m export.data.digits_folder /tmp/digits-folder --train 250 --test 100

It gives `--data` a real run to try without data of your own: train/<digit>/
from the training split, val/<digit>/ from the test split (held-out digits
on held-out photos), PNG files named by sample index. `write_folder` and
`main` serve any generated benchmark (export/data/fashion_folder.py).
Exit codes: 0 success, 2 usage error.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import cv2

from export.data import digits


def write_folder(
    root: Path,
    train: int,
    test: int,
    seed: int = 0,
    *,
    make: Callable[[str, int, int], Any] = digits.make_sample,
    class_names: Sequence[str] = digits.CLASS_NAMES,
) -> dict[str, int]:
    """Write `train` training and `test` held-out samples under root/train and root/val; returns the counts.

    `make(split, index, seed)` returns a sample with `.image` (BGR) and `.label`.
    """
    for split, folder, count in (("train", "train", train), ("test", "val", test)):
        for name in class_names:
            (root / folder / name).mkdir(parents=True, exist_ok=True)
        for index in range(count):
            sample = make(split, index, seed)
            cv2.imwrite(str(root / folder / class_names[sample.label] / f"{index:05d}.png"), sample.image)
    return {"train": train, "val": test}


def main(
    argv: list[str] | None = None,
    *,
    module: str = "export.data.digits_folder",
    doc: str = __doc__,
    make: Callable[[str, int, int], Any] = digits.make_sample,
    class_names: Sequence[str] = digits.CLASS_NAMES,
) -> int:
    parser = argparse.ArgumentParser(prog=f"python -m {module}", description=doc.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--train", type=int, default=250, help="training images (default: %(default)s)")
    parser.add_argument("--test", type=int, default=100, help="held-out images (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.train < len(class_names) or args.test < len(class_names):
        parser.error(f"--train and --test need at least {len(class_names)} images (one per class)")
    print(write_folder(args.out, args.train, args.test, args.seed, make=make, class_names=class_names))
    return 0


if __name__ == "__main__":
    sys.exit(main())
