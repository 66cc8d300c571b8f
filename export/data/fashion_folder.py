"""Write the Fashion-MNIST benchmark as a folder of class subfolders, for `python -m export.train --data`.

    apt-get install dataset-fashion-mnist      # Debian's package: the data, no download at run time
    python -m export.data.fashion_folder /tmp/fashion-folder --train 12000 --test 600

A second folder of real objects beside the digits (export/data/fashion.py):
train/<class>/ from Fashion-MNIST's training split on the training photos,
val/<class>/ from its test split on the held-out photos. Exit codes: 0
success, 1 the package is missing, 2 usage error.
"""

from __future__ import annotations

import sys

from anchor_edge.errors import InputError
from export.data import digits_folder, fashion


def main(argv: list[str] | None = None) -> int:
    try:
        return digits_folder.main(
            argv,
            module="export.data.fashion_folder",
            doc=__doc__,
            make=fashion.make_sample,
            class_names=fashion.CLASS_NAMES,
        )
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
