"""Train AnchorNet (10 classes) on the generated digits (paper section 3.2, docs/method.md §1).

Loss, per branch B63, B95, B111, all on the image's label: cross-entropy of
the paper's training output softmax(sum F*S) (attention pooling), of plain
GAP(F) (the inference output; docs/method.md §1 measured that a short run which
only supervises the S-weighted output leaves GAP at 75-87 %), and of the
attention branch's auxiliary FC. At the end both poolings are measured on
held-out samples through the runtime's decision rule, and the checkpoint
records the better one (GAP on a tie: the paper's inference).
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from anchor_edge.decision import decide
from export.models.anchornet import AnchorNet
from export.data.digits import CLASS_NAMES, NUM_CLASSES
from export.training.common import (
    Budget, add_recipe_arguments, apply_recipe_arguments, learning_rate, load_checkpoint, pick_device, sample_batch,
    save_checkpoint, seed_everything, storage_copy, take_step, training_state
)

LOG = logging.getLogger("anchor_edge.train")
#: Weight of the auxiliary FC loss beside the two pooled losses.
AUX_WEIGHT = 0.5
PEAK_LR = 2e-3
WARMUP_STEPS = 50
#: The first part of training sees `window_size` crops holding the digit (half the
#: cost of 224 at 160); the rest sees the full 224 input, as at inference, so GAP
#: learns to ignore a 224 input's larger share of background.
SMALL_WINDOW_SHARE = 0.8


def anchornet_loss(model: AnchorNet, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Sum over the three branches of CE(attention) + CE(GAP) + AUX_WEIGHT * CE(aux)."""
    outputs = model.training_outputs(images)
    loss = images.new_zeros(())
    for branch in range(outputs.gap_logits.shape[1]):
        loss = loss + nn.functional.cross_entropy(outputs.attention_logits[:, branch], labels)
        loss = loss + nn.functional.cross_entropy(outputs.gap_logits[:, branch], labels)
        loss = loss + AUX_WEIGHT * nn.functional.cross_entropy(outputs.aux_logits[:, branch], labels)
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
    window_size: int = 160,
) -> dict:
    """Train, checkpointing to work_dir (resumes from it), and write out/anchornet.pt; returns the pooling report."""
    seed_everything(seed)
    device = pick_device()
    model = AnchorNet(num_classes=NUM_CLASSES).to(device).to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), lr=PEAK_LR, weight_decay=1e-4)
    checkpoint_path = work_dir / "anchornet_state.pt"
    state = load_checkpoint(checkpoint_path)
    step = 0
    budget = Budget(budget_minutes)
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        step, budget = state["step"], Budget(budget_minutes, state["spent"])
        LOG.info("resuming AnchorNet at step %d (%.0f s spent)", step, state["spent"])

    total_steps = images // batch_size
    model.train()
    progress = tqdm(total=total_steps, initial=step, desc="AnchorNet", unit="batch", mininterval=10)
    while step < total_steps and not budget.exhausted():
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, max(step / total_steps, budget.fraction()), PEAK_LR, WARMUP_STEPS)
        progress_fraction = max(step / total_steps, budget.fraction())
        window = window_size if progress_fraction < SMALL_WINDOW_SHARE else 224
        x, y, _ = sample_batch("train", range(step * batch_size, (step + 1) * batch_size), seed, window)
        loss = anchornet_loss(model, x.to(device).contiguous(memory_format=torch.channels_last), y.to(device))
        take_step(optimizer, loss, progress)
        step += 1
        if step % 50 == 0 or step == total_steps:
            save_checkpoint(checkpoint_path, training_state(model, optimizer, step, budget))
            LOG.info("step %d/%d loss %.4f (%.0f s)", step, total_steps, loss.item(), budget.spent)
    progress.close()
    save_checkpoint(checkpoint_path, training_state(model, optimizer, step, budget))

    report = measure_poolings(model, eval_images, seed)
    pooling = "attention" if report["attention"] > report["gap"] else "gap"
    report.update(pooling=pooling, steps=step, images_seen=step * batch_size, seconds=round(budget.spent))
    LOG.info("AnchorNet: %s", report)
    model = model.to("cpu").to(memory_format=torch.contiguous_format)
    state_dict = {key: value.contiguous() for key, value in storage_copy(model.state_dict()).items()}
    out.mkdir(parents=True, exist_ok=True)
    save_checkpoint(
        out / "anchornet.pt",
        {"state_dict": state_dict, "num_classes": NUM_CLASSES, "pooling": pooling, "class_names": list(CLASS_NAMES), "trained": True},
    )
    return report


@torch.no_grad()
def measure_poolings(model: AnchorNet, count: int, seed: int, batch_size: int = 50) -> dict:
    """Top-1 of the decided class (docs/method.md §3, vote_min 2) on `count` test samples, per pooling."""
    model.eval()
    device = next(model.parameters()).device
    hits = {"gap": 0, "attention": 0}
    for start in range(0, count, batch_size):
        x, y, _ = sample_batch("test", range(start, min(count, start + batch_size)), seed)
        outputs = model.training_outputs(x.to(device).contiguous(memory_format=torch.channels_last))
        for name, logits in (("gap", outputs.gap_logits), ("attention", outputs.attention_logits)):
            probs = logits.softmax(-1).cpu().numpy().astype(np.float64)
            hits[name] += sum(decide(p)[0] == label for p, label in zip(probs, y.tolist()))
    model.train()
    return {name: round(100.0 * value / count, 2) for name, value in hits.items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_recipe_arguments(parser)
    parser.add_argument("--images", type=int, default=40_000, help="training images to plan the schedule for")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--budget-minutes", type=float, default=None)
    parser.add_argument("--window", type=int, default=160, help="input side in the first 80 %% of training (224: always full)")
    args = parser.parse_args(argv)
    apply_recipe_arguments(args)
    train_anchornet(
        args.out, images=args.images, batch_size=args.batch_size, budget_minutes=args.budget_minutes,
        seed=args.seed, work_dir=args.work_dir, window_size=args.window,
    )


if __name__ == "__main__":
    main()
