"""A newcomer's first run: export the default bundle and its full-image baseline, then show whether it pays.

    python -m benchmarks.first_run            # about 5 minutes on 2 CPU cores

Three steps, each also a command of its own: `python export/to_trt.py`
(bundles/default, from the trained weights in weights/),
`python -m export.training.baselines` (the same architecture trained on
full images, bundles/default-baselines), and `python -m benchmarks.pays`,
whose table (top-1, downstream multiply-adds and measured time of every
method, on the same images) ends the run.

Exit codes: 0 done, 1 a step failed (its own message says why).
"""

from __future__ import annotations

import sys

from benchmarks import pays
from export import cli as export_cli
from export.training import baselines


def main(argv: list[str] | None = None) -> int:
    if argv:
        print(
            "python -m benchmarks.first_run takes no options; run its three steps yourself to choose "
            "(see python -m benchmarks.pays --help)",
            file=sys.stderr,
        )
        return 2
    for step in (lambda: export_cli.main([]), lambda: baselines.main([]), lambda: pays.main([])):
        code = step()
        if code:
            return code
    return 0


if __name__ == "__main__":
    sys.exit(main())
