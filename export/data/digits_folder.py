"""Write the digits benchmark as a folder of class subfolders, the layout `python -m export.train --data` reads.

    python -m export.data.digits_folder /tmp/digits-folder --train 250 --test 100

It gives `--data` a real run to try without data of your own: train/<digit>/
from the training split, val/<digit>/ from the test split (held-out digits
on held-out photos), PNG files named by sample index. Exit codes: 0 success,
2 usage error.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2

from export.data.digits import CLASS_NAMES, make_sample


def write_folder(root: Path, train: int, test: int, seed: int = 0) -> dict[str, int]:
    """Write `train` training and `test` held-out samples under root/train and root/val; returns the counts."""
    for split, folder, count in (("train", "train", train), ("test", "val", test)):
        for name in CLASS_NAMES:
            (root / folder / name).mkdir(parents=True, exist_ok=True)
        for index in range(count):
            sample = make_sample(split, index, seed)
            cv2.imwrite(str(root / folder / CLASS_NAMES[sample.label] / f"{index:05d}.png"), sample.image)
    return {"train": train, "val": test}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m export.data.digits_folder", description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--train", type=int, default=250, help="training images (default: %(default)s)")
    parser.add_argument("--test", type=int, default=100, help="held-out images (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.train < 10 or args.test < 10:
        parser.error("--train and --test need at least 10 images (one per class)")
    print(write_folder(args.out, args.train, args.test, args.seed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
