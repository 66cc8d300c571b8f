"""Train every model the default bundle and the accuracy benchmark need, within one time budget.

    python -m export.train                          # 110 minutes in all, weights into weights/
    python -m export.train --budget-minutes 30 --out /tmp/weights

In order: AnchorNet (10 classes), the downstream network on full images, the
downstream network on resized images (the rescaling baseline), and the
full-image downstream fine-tuned on the patches the trained AnchorNet
localizes (the paper's protocol; it goes into the bundle). Each step gets a
fixed share of the budget, checkpoints into --work-dir and resumes from
there, so rerunning after a stop continues where it stopped. Seeds are
fixed; a run the budget does not cut short is reproducible.

Exit codes: 0 success, 2 usage error.
"""
from __future__ import annotations

import argparse
import sys

from export.training.anchornet import train_anchornet
from export.training.downstream import train_downstream
from export.training.common import add_recipe_arguments, apply_recipe_arguments

#: (step, share of the budget, images planned for its schedule). On 2 CPU cores
#: AnchorNet's plan fits its share (45k images in 50 of its 55 minutes) and the
#: downstream plans run into theirs (8-10k images each); on a GPU all finish early.
PLAN = (
    ("anchornet", 0.5, 45_000),
    ("full", 0.25, 16_000),
    ("resized", 0.1, 20_000),
    ("patches", 0.15, 8_000),
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m export.train", description=__doc__.split("\n\n")[0])
    add_recipe_arguments(parser)
    parser.add_argument("--budget-minutes", type=float, default=110.0, help="wall clock for everything (default: %(default)s)")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every step's planned images (e.g. 4 on a GPU)")
    args = parser.parse_args(argv)
    apply_recipe_arguments(args)
    for step, share, images in PLAN:
        minutes = args.budget_minutes * share
        planned = max(1, int(images * args.scale))
        if step == "anchornet":
            train_anchornet(args.out, images=planned, budget_minutes=minutes, seed=args.seed, work_dir=args.work_dir)
        else:
            train_downstream(step, args.out, images=planned, budget_minutes=minutes, seed=args.seed, work_dir=args.work_dir)
    print(f"weights in {args.out}; export them with: python export/to_trt.py")
    return 0


if __name__ == "__main__":
    sys.exit(main())
