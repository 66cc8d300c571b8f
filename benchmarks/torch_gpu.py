"""The method itself in PyTorch on a CUDA GPU: AnchorNet + patches against the full image.

    python -m benchmarks.torch_gpu --json out/torch_gpu.json        # CUDA, FP16, batch 1 and 8
    python -m benchmarks.torch_gpu --anchornet weights/anchornet.pt --num-classes 10
    python -m benchmarks.torch_gpu --device cpu --quick             # smoke test, FP32

For machines with a CUDA GPU and PyTorch but no TensorRT, so that
docs/performance.md can show GPU ratios beside the CPU ones. The numbers are labelled "PyTorch CUDA,
not TensorRT": eager PyTorch in FP16 with channels_last and cudnn autotuning.
CUDA graphs and torch.compile are not used: the patch batches change shape
with every image (the patch count comes from the heatmap), so a graph or a
compiled kernel per shape would time recompilation or padding, not the method.
GPU stages are timed with CUDA events; the host part (decision and LSP,
docs/method.md §3-§4, on the chosen heatmaps copied to the host) with a clock.
Items run interleaved, as in latency.py.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torchvision

from anchor_edge.bundle.schema import anchornet_output_names
from anchor_edge.method.lsp import PRESETS
from anchor_edge.method.patches import cut_by_size, locate
from anchor_edge.method.preprocess import normalize, resize_and_crop
from benchmarks.measure import interleaved, paired_ratio, summarize
from benchmarks.report import environment
from export.data.photos import real_photos
from export.models.anchornet import branch_specs
from export.models.downstream import IMAGENET_MEAN, IMAGENET_STD
from export.models.loading import LoadedAnchorNet, load_anchornet

LABEL = "PyTorch CUDA, not TensorRT"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.torch_gpu", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--device", default="cuda", help="cuda (FP16) or cpu (FP32, for smoke tests) (default: %(default)s)"
    )
    parser.add_argument(
        "--anchornet", type=Path, metavar="CKPT", help="AnchorNet checkpoint (default: untrained, seeded)"
    )
    parser.add_argument("--num-classes", type=int, help="classes (default: the checkpoint's, else 1000)")
    parser.add_argument(
        "--preset", choices=sorted(PRESETS), default="accurate", help="LSP preset (default: %(default)s)"
    )
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8], metavar="N")
    parser.add_argument(
        "--seconds", type=float, default=20.0, help="measuring time per batch size (default: %(default)s)"
    )
    parser.add_argument(
        "--warmup", type=float, default=5.0, help="warm-up seconds per batch size (default: %(default)s)"
    )
    parser.add_argument("--json", type=Path, metavar="PATH", help="write the results")
    parser.add_argument("--quick", action="store_true", help="two rounds, no warm-up, for smoke tests")
    return parser


class Timer:
    """Milliseconds of GPU work between start() and stop() (CUDA events), or of the host clock on CPU."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"

    def start(self) -> None:
        if self.cuda:
            self.begin = torch.cuda.Event(enable_timing=True)
            self.begin.record()
        else:
            self.begin_s = time.perf_counter()

    def stop(self) -> float:
        if not self.cuda:
            return (time.perf_counter() - self.begin_s) * 1e3
        end = torch.cuda.Event(enable_timing=True)
        end.record()
        end.synchronize()
        return self.begin.elapsed_time(end)


def method_item(loaded: LoadedAnchorNet, downstream, params, timer: Timer):
    """AnchorNet on the batch, decision + LSP on the host (`anchor_edge.method.patches`, by the checkpoint's branch
    rule and heatmap, as its bundle would run), then every patch, grouped by size."""
    anchornet = loaded.module
    branches = branch_specs(pooling=anchornet.pooling)
    names = anchornet_output_names(branches)

    def call(batch: torch.Tensor) -> dict[str, float]:
        timer.start()
        outputs = anchornet(batch)
        anchornet_ms = timer.stop()
        begin = time.perf_counter()
        host = {name: output.float().cpu().numpy() for name, output in zip(names, outputs)}
        located = locate(host, branches, params, 2, branch_rule=loaded.branch_rule, heatmap=loaded.heatmap)
        boxes = [image.boxes for image in located]
        groups = cut_by_size(batch, boxes, stack=list)  # stacked on the GPU below, inside the timed region
        host_ms = (time.perf_counter() - begin) * 1e3
        timer.start()
        for _, patches in groups.values():
            downstream(torch.stack(patches).contiguous(memory_format=torch.channels_last)).softmax(1)
        return {
            "anchornet": anchornet_ms,
            "decision+lsp": host_ms,
            "patches": timer.stop(),
            "patches_per_image": sum(len(members) for members, _ in groups.values()) / len(batch),
        }

    return call


def full_image_item(downstream, timer: Timer):
    def call(batch: torch.Tensor) -> dict[str, float]:
        timer.start()
        downstream(batch).softmax(1)
        return {"downstream": timer.stop()}

    return call


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("no CUDA device: run with --device cpu for a smoke test", file=sys.stderr)
        return 1
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    torch.backends.cudnn.benchmark = True
    loaded = load_anchornet(args.anchornet, args.num_classes, None)  # the checkpoint's pooling, as its bundle's
    downstream = torchvision.models.resnet50(num_classes=loaded.module.num_classes)
    for module in (loaded.module, downstream):
        module.eval().to(device, dtype, memory_format=torch.channels_last)
    crops = np.stack([resize_and_crop(image)[0] for _, image in real_photos()])
    inputs = torch.from_numpy(normalize(crops, IMAGENET_MEAN, IMAGENET_STD)).to(device, dtype)
    warmup, seconds, iterations = (0.0, None, 2) if args.quick else (args.warmup, args.seconds, None)
    timer = Timer(device)
    items = {
        "method": method_item(loaded, downstream, PRESETS[args.preset], timer),
        "full_image": full_image_item(downstream, timer),
    }
    results = []
    with torch.inference_mode():
        for batch_size in args.batch_sizes:
            order = [i % len(inputs) for i in range(len(inputs) * batch_size)]
            batches = [
                inputs[order[s : s + batch_size]].contiguous(memory_format=torch.channels_last)
                for s in range(0, len(order), batch_size)
            ]
            samples = interleaved(items, batches, warmup_s=warmup, seconds=seconds, iterations=iterations)
            method, full = samples["method"], samples["full_image"]
            results.append(
                {
                    "batch_size": batch_size,
                    "method": {key: summarize(values) for key, values in method.items()},
                    "full_image": {key: summarize(values) for key, values in full.items()},
                    "method_over_full_paired": paired_ratio(method["wall"], full["wall"]),
                    "anchornet_over_full_paired": paired_ratio(method["anchornet"], full["downstream"]),
                    "throughput_images_per_s": {
                        name: batch_size * 1e3 / summarize(s["wall"])["mean"] for name, s in samples.items()
                    },
                }
            )
            r = results[-1]
            print(
                f"[{LABEL}] batch {batch_size}: method p50 {r['method']['wall']['p50']:.2f} ms "
                f"(AnchorNet {r['method']['anchornet']['p50']:.2f}, host {r['method']['decision+lsp']['p50']:.2f}, "
                f"patches {r['method']['patches']['p50']:.2f}), "
                f"full image p50 {r['full_image']['wall']['p50']:.2f} ms, "
                f"ratio {r['method_over_full_paired']:.3f}, "
                f"{r['method']['patches_per_image']['mean']:.1f} patches/image"
            )
    report = {
        "label": LABEL,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "dtype": str(dtype),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "anchornet": str(args.anchornet or "untrained (seeded)"),
        "downstream": "torchvision resnet50 (random weights)",
        "preset": args.preset,
        "environment": environment(None),
        "results": results,
    }
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
