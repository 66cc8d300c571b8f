"""Train AnchorNet (10 classes) on the generated digits (paper section 3.2, docs/method.md §1).

Loss, per branch B63, B95, B111, all on the image's label: cross-entropy of
the paper's training output softmax(sum F*S) (attention pooling), of plain
GAP(F) (the inference output; docs/method.md §1 measured that a short run which
only supervises the S-weighted output leaves GAP at 75-87 %), and of the
attention branch's auxiliary FC. With `box_supervision` (the default recipe
for the digits benchmark; a documented deviation from the paper,
`export.training.box_supervision`) the generator's boxes also supervise S and
F, and the attention output of branches other than the object's natural one
is trained on smoothed labels. On a folder taught by the downstream network
(`export.training.taught_folder`) the same terms run centre-only: the
teacher's class activation peak in place of the box, every branch on hard
labels.

The data follows a contrast curriculum (`export.training.common.easy_share`):
easy samples only at first, none after 15 % of training. At the end both
poolings are measured through the runtime's decision rule on held-out test
photos and on fresh draws of the training data, and the checkpoint records
the better pooling on the training draws (GAP on a tie: the paper's
inference), so no choice is made on the images a run reports
(docs/decisions/028-pooling-chosen-on-training-draws.md).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from anchor_edge.bundle import sha256_of
from anchor_edge.bundle.choices import BranchRule, Heatmap
from anchor_edge.method.decision import decide
from export.data.source import DIGITS, HELD_OUT, DataSource
from export.models.anchornet import AnchorNet
from export.models.loading import load_anchornet
from export.models.trained_weights import ANCHORNET_FILE
from export.training.box_supervision import box_loss, branch_targets, soft_cross_entropy
from export.training.common import (
    Budget,
    add_recipe_arguments,
    apply_recipe_arguments,
    easy_share,
    exit_code_of,
    learning_rate,
    no_step_taken,
    pick_device,
    resume_from,
    resume_state,
    run_identity,
    sample_batch,
    save_checkpoint,
    seed_everything,
    storage_copy,
    take_step,
    training_state,
)

LOG = logging.getLogger("anchor_edge.train")
#: Weight of the auxiliary FC loss beside the two pooled losses.
AUX_WEIGHT = 0.5
PEAK_LR = 2e-3
WARMUP_STEPS = 50
#: The first part of training sees `window_size` crops holding the digit (a third of
#: the cost of 224 at 128); the rest sees the full 224 input, as at inference, so
#: the poolings learn to ignore a 224 input's larger share of background. The digits
#: recipe's share; a folder's run gives the 224 input more (folder_steps).
SMALL_WINDOW_SHARE = 0.9


def anchornet_loss(
    model: AnchorNet,
    images: torch.Tensor,
    labels: torch.Tensor,
    boxes: torch.Tensor | None = None,
    natural_branch: torch.Tensor | None = None,
) -> torch.Tensor:
    """Sum over the three branches of CE(attention) + CE(GAP) + AUX_WEIGHT * CE(aux), plus the box terms
    when boxes are given.

    With boxes (and each sample's natural branch), the attention term's
    targets are `branch_targets` (hard on the natural branch, smoothed on the
    others) and `box_loss` is added. Boxes without natural branches are the
    centre-only path (a teacher's centres as boxes (x, y, x, y)): the box
    terms, and hard labels on every branch.
    """
    outputs = model.training_outputs(images)
    attention_targets = None
    if boxes is not None:
        attention_targets = branch_targets(labels, natural_branch, outputs.gap_logits.shape[-1])
    loss = images.new_zeros(())
    for branch in range(outputs.gap_logits.shape[1]):
        if attention_targets is None:
            loss = loss + nn.functional.cross_entropy(outputs.attention_logits[:, branch], labels)
        else:
            loss = loss + soft_cross_entropy(outputs.attention_logits[:, branch], attention_targets[:, branch])
        loss = loss + nn.functional.cross_entropy(outputs.gap_logits[:, branch], labels)
        loss = loss + AUX_WEIGHT * nn.functional.cross_entropy(outputs.aux_logits[:, branch], labels)
    if boxes is not None:
        loss = loss + box_loss(outputs, labels, boxes, natural_branch)
    return loss


def train_anchornet(
    out: Path,
    *,
    images: int = 40_000,
    batch_size: int = 32,
    budget_minutes: float | None = None,
    seed: int = 0,
    work_dir: Path,
    eval_images: int = 300,
    window_size: int = 128,
    box_supervision: bool = True,
    source: DataSource = DIGITS,
    init: Path | None = None,
    peak_lr: float = PEAK_LR,
    small_window_share: float = SMALL_WINDOW_SHARE,
) -> dict:
    """Train, checkpointing to work_dir (resumes from it), and write out/anchornet.pt; returns the pooling report.

    small_window_share: the part of training (of its steps or its budget, whichever is further) on `window_size`
        windows, when the source locates its objects; the rest trains on full 224 inputs.
    """
    seed_everything(seed)
    device = pick_device()
    centre_supervision = box_supervision and source.has_centres
    box_supervision = box_supervision and source.has_boxes
    model = AnchorNet(num_classes=len(source.class_names))
    if init is not None:  # fine-tune: start from trained weights (a new schedule, a fresh optimizer)
        model.load_state_dict(load_anchornet(init, len(source.class_names), None).module.state_dict())
    model = model.to(device).to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), lr=peak_lr, weight_decay=1e-4)
    checkpoint_path = work_dir / "anchornet_state.pt"
    run = run_identity(
        "anchornet",
        source,
        seed=seed,
        batch_size=batch_size,
        window_size=window_size,
        box_supervision=box_supervision,
        init=None if init is None else sha256_of(init),
        peak_lr=peak_lr,
        small_window_share=small_window_share,
    )
    state = resume_state(checkpoint_path, run)
    step, budget = 0, Budget(budget_minutes)
    if state is not None:
        step, budget = resume_from(state, model, optimizer, budget_minutes)
        LOG.info("resuming AnchorNet at step %d (%.0f s spent)", step, budget.spent_before)

    total_steps = max(1, -(-images // batch_size))  # batches for `images`, rounded up
    model.train()
    progress = tqdm(total=total_steps, initial=step, desc="AnchorNet", unit="batch", mininterval=10)
    while step < total_steps and not budget.exhausted():
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, max(step / total_steps, budget.fraction()), peak_lr, WARMUP_STEPS)
        progress_fraction = max(step / total_steps, budget.fraction())
        located = source.has_boxes or source.has_centres
        window = window_size if progress_fraction < small_window_share and located else 224
        easy = easy_share(progress_fraction) if source.has_easy and init is None else 0.0
        batch = sample_batch(
            "train", range(step * batch_size, (step + 1) * batch_size), seed, window, easy_share=easy, source=source
        )
        inputs = batch.images.to(device).contiguous(memory_format=torch.channels_last)
        if box_supervision:
            loss = anchornet_loss(
                model, inputs, batch.labels.to(device), batch.boxes().to(device), batch.scales().to(device)
            )
        elif centre_supervision:
            loss = anchornet_loss(model, inputs, batch.labels.to(device), batch.boxes().to(device))
        else:
            loss = anchornet_loss(model, inputs, batch.labels.to(device))
        take_step(optimizer, loss, progress)
        step += 1
        if step % 50 == 0 or step == total_steps:
            save_checkpoint(checkpoint_path, training_state(model, optimizer, step, budget, run))
            LOG.info("step %d/%d loss %.4f (%.0f s)", step, total_steps, loss.item(), budget.spent)
    progress.close()
    if step == 0:
        raise no_step_taken("AnchorNet", budget_minutes)
    save_checkpoint(checkpoint_path, training_state(model, optimizer, step, budget, run))

    # The pooling is chosen on fresh draws of the training data, never on the held-out images the run reports.
    on_training_photos = measure_poolings(model, eval_images, seed, split="train", source=source)
    pooling = "attention" if on_training_photos["attention"] > on_training_photos["gap"] else "gap"
    report = measure_poolings(model, eval_images, seed, source=source)
    report.update(
        pooling=pooling,
        train_photos=on_training_photos,
        steps=step,
        images_seen=step * batch_size,
        seconds=round(budget.spent),
        box_supervision=box_supervision,
        centre_supervision=centre_supervision,
    )
    LOG.info("AnchorNet: %s", report)
    model = model.to("cpu").to(memory_format=torch.contiguous_format)
    state_dict = {key: value.contiguous() for key, value in storage_copy(model.state_dict()).items()}
    out.mkdir(parents=True, exist_ok=True)
    save_checkpoint(
        out / ANCHORNET_FILE,
        {
            "state_dict": state_dict,
            "num_classes": len(source.class_names),
            "pooling": pooling,
            "class_names": list(source.class_names),
            "trained": True,
            # Without boxes the branches learn no sizes: its bundles take B111's heatmap (decision 022), and its
            # decisions are often wrong: LSP reads the hottest class at each location (decision 026).
            "branch_rule": (BranchRule.CONFIDENT if box_supervision else BranchRule.WIDEST).value,
            "heatmap": (Heatmap.CLASS if box_supervision else Heatmap.MAX).value,
        },
    )
    return report


#: Data seed of the training-photo evaluation, apart from the samples trained on.
TRAIN_EVAL_SEED_OFFSET = 5000


@torch.no_grad()
def measure_poolings(
    model: AnchorNet, count: int, seed: int, batch_size: int = 50, split: str = HELD_OUT, source: DataSource = DIGITS
) -> dict:
    """Top-1 of the decided class (docs/method.md §3, vote_min 2) on `count` samples of `split`, per pooling.

    Also "branch_by_scale" (attention pooling): row s counts the images of
    scale s whose decided branch was B63, B95, B111, where the source knows
    scales. On "train" the samples come from another seed than training's: for
    the digits, new placements on the training photos.
    """
    count = min(count, source.count(split) or count)
    model.eval()
    device = next(model.parameters()).device
    hits = {"gap": 0, "attention": 0}
    branch_by_scale = np.zeros((3, 3), int)
    data_seed = seed if split == HELD_OUT else seed + TRAIN_EVAL_SEED_OFFSET
    for start in range(0, count, batch_size):
        batch = sample_batch(split, range(start, min(count, start + batch_size)), data_seed, source=source)
        outputs = model.training_outputs(batch.images.to(device).contiguous(memory_format=torch.channels_last))
        for name, logits in (("gap", outputs.gap_logits), ("attention", outputs.attention_logits)):
            probs = logits.softmax(-1).cpu().numpy().astype(np.float64)
            decisions = [decide(p) for p in probs]
            hits[name] += sum(
                label == label_decided for (label_decided, _), label in zip(decisions, batch.labels.tolist())
            )
            if name == "attention":
                for (_, branch), sample in zip(decisions, batch.samples):
                    if sample.scale is not None:
                        branch_by_scale[sample.scale, branch] += 1
    model.train()
    report: dict = {name: round(100.0 * value / count, 2) for name, value in hits.items()}
    report["branch_by_scale"] = branch_by_scale.tolist()
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_recipe_arguments(parser)
    parser.add_argument("--images", type=int, default=40_000, help="training images to plan the schedule for")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--budget-minutes", type=float, default=None)
    parser.add_argument(
        "--window", type=int, default=128, help="input side in the first 90 %% of training (224: always full)"
    )
    parser.add_argument(
        "--no-box-supervision",
        dest="box_supervision",
        action="store_false",
        help="image-level labels only, as in the paper",
    )
    parser.add_argument("--init", type=Path, help="fine-tune: start from this AnchorNet checkpoint (no curriculum)")
    parser.add_argument("--peak-lr", type=float, default=PEAK_LR, help="peak learning rate (default: %(default)s)")
    args = parser.parse_args(argv)
    apply_recipe_arguments(args)
    return exit_code_of(
        lambda: train_anchornet(
            args.out,
            images=args.images,
            batch_size=args.batch_size,
            budget_minutes=args.budget_minutes,
            seed=args.seed,
            work_dir=args.work_dir,
            window_size=args.window,
            box_supervision=args.box_supervision,
            init=args.init,
            peak_lr=args.peak_lr,
        )
    )


if __name__ == "__main__":
    sys.exit(main())
