"""The whole method on one bundle: localize with AnchorNet, classify only the patches.

Stages (each timed, docs/method.md §3-§5): preprocess -> AnchorNet on the whole
batch -> branch and class decision per image -> LSP on the chosen heatmap ->
patches cut at native size from the network input -> every patch of every
image grouped by size, one downstream call per size -> per image, the argmax
of the sum of its patches' softmax (with AnchorNet's vote, when the bundle
gives it a weight, their mean plus the vote: anchor_edge/method/anchor_vote.py).

A Pipeline holds no per-call state (each call times itself on its own
`StageClock`), so one instance may serve several threads at once; every
backend's runners are thread-safe.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from anchor_edge.backends import BackendOptions, open_runners
from anchor_edge.backends.base import Runner
from anchor_edge.backends.ort_providers import ProviderOptions
from anchor_edge.bundle.choices import BranchRule, Heatmap, Role
from anchor_edge.bundle.load import Bundle, load_bundle
from anchor_edge.bundle.schema import INPUT_NAME, LOGITS_OUTPUT, PROBS_OUTPUT
from anchor_edge.checks import positive_int
from anchor_edge.errors import InputError
from anchor_edge.method.anchor_vote import check_anchor_vote, class_scores
from anchor_edge.method.budget import bundle_costs, check_budget, within_budget
from anchor_edge.method.decision import check_branch_rule
from anchor_edge.method.early_exit import check_threshold, classified_sizes, classify_until_confident
from anchor_edge.method.lsp import LSPParams, check_lsp, preset_params
from anchor_edge.method.patches import branch_heatmap, check_heatmap, cut_by_size, decide_all, select_all
from anchor_edge.method.preprocess import CropTransform, ImageLike, crop_bgr, load_image, normalize
from anchor_edge.prediction import Prediction
from anchor_edge.timing import StageClock

if TYPE_CHECKING:  # the video layer sits on top of the pipeline; `stream` imports it when called
    from anchor_edge.video.sources import FrameSource
    from anchor_edge.video.stream import Smoothing, Stream

log = logging.getLogger("anchor_edge")


class Pipeline:
    """AnchorNet + downstream network, run as the paper's patch pipeline.

    Create one with `Pipeline.from_bundle(path)`; call it on an image or use
    `predict_batch` for many.

    Example:
        >>> pipe = Pipeline.from_bundle("bundles/default")
        >>> prediction = pipe("photo.jpg")
        >>> prediction.label, prediction.branch, len(prediction.boxes)
        ('tabby', 95, 3)
    """

    def __init__(
        self,
        bundle: Bundle,
        anchornet: Runner,
        downstream: Runner,
        *,
        lsp: Mapping[int, LSPParams],
        vote_min: int,
        branch_rule: str = BranchRule.CONFIDENT,
        heatmap: str = Heatmap.CLASS,
        anchor_vote: float = 0.0,
        max_batch: int = 64,
        early_exit: float | None = None,
        budget: float | None = None,
    ) -> None:
        self.lsp = check_lsp(lsp, [b.receptive_field for b in bundle.branches])
        if isinstance(vote_min, bool) or vote_min not in range(1, len(bundle.branches) + 1):
            raise InputError(f"vote_min must be 1, 2 or 3, got {vote_min!r}")
        self.bundle, self.anchornet, self.downstream = bundle, anchornet, downstream
        self.vote_min = int(vote_min)
        self.branch_rule = check_branch_rule(branch_rule)
        self.heatmap = check_heatmap(heatmap)
        self.anchor_vote = check_anchor_vote(anchor_vote)
        self.max_batch = positive_int("max_batch", max_batch)
        self.early_exit = check_threshold(early_exit)
        self._patch_costs: dict[int, int] = {}
        self._full_cost = 0
        if budget is not None:
            self._patch_costs, self._full_cost = bundle_costs(bundle)
        self.budget = check_budget(budget, self._patch_costs, self._full_cost)
        self._map_outputs = [b.map_output for b in bundle.branches]
        self._attention_outputs = [b.attention_output for b in bundle.branches if b.attention_output]

    @classmethod
    def from_bundle(
        cls,
        path: str | Path,
        *,
        backend: str | BackendOptions = "auto",
        preset: str | Mapping[int, LSPParams] | None = None,
        vote_min: int | None = None,
        branch_rule: str | None = None,
        heatmap: str | None = None,
        anchor_vote: float | None = None,
        threads: int | None = None,
        max_batch: int = 64,
        early_exit: float | None = None,
        budget: float | None = None,
        providers: str | Sequence[str] | None = None,
        provider_options: ProviderOptions | None = None,
        device: str | None = None,
        inference_precision: str | None = None,
    ) -> "Pipeline":
        """Load a bundle and open its two models on a backend.

        Args:
            path: the bundle directory written by `python export/to_trt.py`.
            backend: "auto" (TensorRT when the bundle has engines and TensorRT and a GPU are present, else ONNX
                Runtime; logged), "onnxruntime", "tensorrt" or "openvino"; or one backend's options value,
                `OnnxRuntimeOptions(...)`, `OpenVinoOptions(...)` or `TensorRtOptions()`
                (anchor_edge/backends/options.py), which then holds every backend option.
                The keyword options below apply to the backend they name; one given to
                another backend (device="GPU" on ONNX Runtime) is an InputError.
            preset: LSP preset "fast", "visual" or "accurate", or {patch size: LSPParams}; None: the bundle's.
            vote_min: branches that must agree on a class (docs/method.md §3); None takes the bundle's (2 by default).
            branch_rule: "confident" (the paper's eq. 8) or "widest" (always B111, for an AnchorNet
                trained without sizes: `BranchRule`); None takes the bundle's.
            heatmap: the map of that branch LSP reads, "class" (the paper's F[class]) or "max" (its maximum
                over classes, for an AnchorNet trained without boxes: `Heatmap`); None takes the bundle's.
            anchor_vote: the weight of AnchorNet's decided-branch probabilities added to the mean patch softmax
                (0: the paper's rule; anchor_edge/method/anchor_vote.py); None takes the bundle's.
            threads: threads per model on ONNX Runtime (intra-op; None: every core) or OpenVINO.
            providers: ONNX Runtime's execution providers: "cpu" (default), "cuda", "tensorrt", "openvino", a list
                in priority order, or "auto" (the first present of tensorrt, cuda, openvino, cpu; logged). One that
                does not start is a BackendError naming what to install. None: "cpu".
            provider_options: `ProviderOptions(tensorrt_cache=...)`: where ONNX Runtime's TensorRT
                provider caches its engines (None: inside the bundle); its profiles and precision are the bundle's.
            device, inference_precision: for backend="openvino", the OpenVINO device ("CPU", "GPU", "NPU"; None:
                "CPU") and precision ("f32", the default, or "bf16" where the CPU has it; check it with `verify`).
            max_batch: largest batch sent to a model at once; bigger batches are chunked.
            early_exit: None classifies every patch; a threshold T classifies each image's patches in LSP order and
                stops once the running mean of their softmaxes (AnchorNet's vote apart) has a class probability >= T
                (0: one patch per image; above 1: the same as None). See anchor_edge/method/early_exit.py.
            budget: None takes every LSP patch; a share b of the downstream's full-image multiply-adds caps each
                image's patches at b x that cost, taken in LSP order (with early_exit too: whichever stops first).
                See anchor_edge/method/budget.py.

        Raises:
            BundleError: the bundle is missing, malformed or fails its checksums.
            BackendError: the backend cannot be used or cannot load the models.
            InputError: an unknown preset, a bad parameter, or a backend option the chosen backend does not take.
        """
        bundle = load_bundle(path)
        lsp = preset_params(preset if preset is not None else bundle.preset)
        anchornet, downstream = open_runners(
            bundle,
            backend,
            threads=threads,
            providers=providers,
            provider_options=provider_options,
            device=device,
            inference_precision=inference_precision,
        )
        try:
            return cls(
                bundle,
                anchornet,
                downstream,
                lsp=lsp,
                vote_min=bundle.vote_min if vote_min is None else vote_min,
                branch_rule=bundle.branch_rule if branch_rule is None else branch_rule,
                heatmap=bundle.heatmap if heatmap is None else heatmap,
                anchor_vote=bundle.anchor_vote if anchor_vote is None else anchor_vote,
                max_batch=max_batch,
                early_exit=early_exit,
                budget=budget,
            )
        except BaseException:  # a bad argument: give back the runners just opened (TensorRT's device memory)
            anchornet.close()
            downstream.close()
            raise

    @property
    def backend(self) -> str:
        """Which backend runs the models ("onnxruntime", "tensorrt" or "openvino")."""
        return self.anchornet.backend

    def __call__(self, image: ImageLike) -> Prediction:
        """Classify one image (BGR uint8 array, file path or encoded bytes)."""
        return self.predict_batch([image])[0]

    def predict_batch(self, images: Iterable[ImageLike]) -> list[Prediction]:
        """Classify several images with one AnchorNet call and one downstream call per patch size.

        Raises:
            InputError: naming the position of the first image that cannot be read.
        """
        clock = StageClock()
        with clock.stage("preprocess"):
            crops, transforms = self._crops_bgr(images)
        if not transforms:
            return []
        with clock.stage("anchornet"):
            anchornet_inputs = self._normalized(crops, Role.ANCHORNET, bgr=True)
            anchor = self.run_anchornet(anchornet_inputs, clock)
        with clock.stage("decision"):
            decisions = decide_all(anchor, self.vote_min, self.branch_rule)
        with clock.stage("lsp"):
            boxes = select_all(anchor, decisions, self.bundle.branches, self.lsp, heatmap=self.heatmap)
            if self.budget is not None:
                boxes = within_budget(boxes, self._patch_costs, self.budget * self._full_cost)
        with clock.stage("crop"):  # the downstream's input is where its patches are cut from
            shared = self._shared_normalization
            downstream_inputs = anchornet_inputs if shared else self._normalized(crops, Role.DOWNSTREAM, bgr=True)
        patch_probs = self._classify(downstream_inputs, boxes, clock)
        with clock.stage("aggregate"):
            ran = [classified_sizes(image_boxes, len(probs)) for image_boxes, probs in zip(boxes, patch_probs)]
            boxes = [image_boxes[: len(probs)] for image_boxes, probs in zip(boxes, patch_probs)]
            boxes_original = [transform.to_original(b) for transform, b in zip(transforms, boxes)]
        timings = clock.timings()
        return [
            self._prediction(anchor, i, decisions[i], boxes[i], boxes_original[i], patch_probs[i], ran[i], timings)
            for i in range(len(transforms))
        ]

    def preprocess(self, images: Iterable[ImageLike]) -> tuple[np.ndarray, list[CropTransform]]:
        """Decode, resize and crop: (N, crop, crop, 3) uint8 RGB network inputs and their transforms."""
        crops, transforms = self._crops_bgr(images)
        rgb = np.array(crops, np.uint8).reshape(-1, self.bundle.crop, self.bundle.crop, 3)[..., ::-1]
        return np.ascontiguousarray(rgb), transforms

    def _crops_bgr(self, images: Iterable[ImageLike]) -> tuple[list[np.ndarray], list[CropTransform]]:
        """Each image's network input in BGR, a view of the caller's pixels where possible (`crop_bgr`)."""
        crops, transforms = [], []
        for position, image in enumerate(images):
            try:
                crop, transform = crop_bgr(load_image(image), self.bundle.resize_short, self.bundle.crop)
            except InputError as error:
                raise InputError(f"image {position}: {error}") from error
            crops.append(crop)
            transforms.append(transform)
        return crops, transforms

    def localize(self, crops: np.ndarray) -> dict[str, np.ndarray]:
        """AnchorNet on (N, crop, crop, 3) uint8 RGB network inputs: probabilities, logit maps (and attention maps)."""
        return self.run_anchornet(self._normalized(crops, Role.ANCHORNET))

    def run_anchornet(self, inputs: np.ndarray, clock: StageClock | None = None) -> dict[str, np.ndarray]:
        """AnchorNet on (N, 3, crop, crop) float32 inputs already normalized with its mean and std."""
        names = [PROBS_OUTPUT, *self._map_outputs, *self._attention_outputs]
        return self._run_chunked(Role.ANCHORNET, inputs, names, clock or StageClock())

    def classify_patches(
        self, crops: np.ndarray, boxes: list[np.ndarray], clock: StageClock | None = None
    ) -> list[np.ndarray]:
        """Softmax of the downstream network for every box of (N, H, W, 3) uint8 RGB crops.

        Returns one (n_i, C) array per image, rows in its boxes' order.
        """
        return self.classify_normalized(self._normalized(crops, Role.DOWNSTREAM), boxes, clock)

    def classify_normalized(
        self, inputs: np.ndarray, boxes: list[np.ndarray], clock: StageClock | None = None
    ) -> list[np.ndarray]:
        """Softmax of the downstream network for every box, batched by patch size across images.

        `inputs` is (N, 3, H, W) float32, already normalized for the downstream
        network. Returns one (n_i, C) array per image, rows in its boxes' order;
        `clock` gets the "crop" and "downstream_<size>" times.
        """
        clock = clock or StageClock()
        with clock.stage("crop"):
            batches = cut_by_size(inputs, boxes)
        results = [np.empty((len(b), self.bundle.num_classes), np.float32) for b in boxes]
        for size, (members, batch) in batches.items():
            with clock.stage(f"downstream_{size}"):
                logits = self._run_chunked(Role.DOWNSTREAM, batch, [LOGITS_OUTPUT], clock)[LOGITS_OUTPUT]
                for (i, j), row in zip(members, softmax(logits)):
                    results[i][j] = row
        return results

    def _classify(self, inputs: np.ndarray, boxes: list[np.ndarray], clock: StageClock) -> list[np.ndarray]:
        """Every box's softmax; with early exit, each image's first boxes up to the one that makes it confident."""
        if self.early_exit is None:
            return self.classify_normalized(inputs, boxes, clock)
        return classify_until_confident(
            partial(self.classify_normalized, clock=clock), inputs, boxes, self.early_exit, self.bundle.num_classes
        )

    def _run_chunked(self, role: Role, batch: np.ndarray, names: list[str], clock: StageClock) -> dict[str, np.ndarray]:
        """`role`'s model on `batch`, in chunks of at most `max_batch`, timed on `clock`."""
        runner = self.anchornet if role is Role.ANCHORNET else self.downstream
        chunks = [batch[s : s + self.max_batch] for s in range(0, len(batch), self.max_batch)] or [batch]
        parts = [clock.run(role.value, runner, {INPUT_NAME: chunk}, names) for chunk in chunks]
        return parts[0] if len(parts) == 1 else {name: np.concatenate([part[name] for part in parts]) for name in names}

    @property
    def _shared_normalization(self) -> bool:
        """Whether both models take the same mean and std (ImageNet pairs), so one normalized copy serves both."""
        anchornet, downstream = self.bundle.anchornet, self.bundle.downstream
        return (anchornet.mean, anchornet.std) == (downstream.mean, downstream.std)

    def _normalized(self, crops: np.ndarray | list[np.ndarray], role: Role, bgr: bool = False) -> np.ndarray:
        """uint8 RGB (or BGR) crops as `role`'s float32 NCHW input."""
        if isinstance(crops, np.ndarray) and crops.dtype != np.uint8:
            raise InputError(
                f"expected uint8 RGB crops (N, H, W, 3), got {crops.dtype}; "
                "normalized inputs go to run_anchornet / classify_normalized"
            )
        entry = self.bundle.manifest.models[role]
        return normalize(crops, entry.mean, entry.std, bgr=bgr)

    def _prediction(
        self,
        anchor: Mapping[str, np.ndarray],
        index: int,
        decision: tuple[int, int],
        boxes: np.ndarray,
        boxes_original: np.ndarray,
        patch_probs: np.ndarray,
        classified: tuple[int, ...],
        timings: dict[str, float],
    ) -> Prediction:
        anchor_class, branch = decision
        vote = self.anchor_vote * anchor[PROBS_OUTPUT][index][branch].astype(np.float64) if self.anchor_vote else None
        total = class_scores(patch_probs, vote)
        class_id = int(total.argmax())
        info = self.bundle.branches[branch]
        attention = tuple(anchor[name][index, 0] for name in self._attention_outputs) or None
        return Prediction(
            class_id=class_id,
            label=self.bundle.class_names[class_id],
            score=float(total[class_id] / total.sum()),
            anchor_scores=vote,
            branch=info.receptive_field,
            anchor_class=anchor_class,
            branch_probs=anchor[PROBS_OUTPUT][index],
            heatmap=branch_heatmap(anchor, index, anchor_class, info, self.heatmap),
            boxes=boxes,
            boxes_original=boxes_original,
            patch_probs=patch_probs,
            classified_sizes=classified,
            timings=dict(timings),
            attention=attention,
        )

    def stream(
        self,
        source: str | int | Path | FrameSource,
        *,
        every: int = 1,
        batch: int = 1,
        smoothing: Smoothing | None = None,
        reconnects: int | None = None,
    ) -> Stream:
        """Classify a video file, camera, RTSP/HTTP stream, GStreamer pipeline or image folder, frame by frame.

        Args:
            source: a camera index, a URL, a GStreamer pipeline ("... ! appsink"),
                an image folder or glob, a video file, or an open FrameSource
                (anchor_edge/video/sources.py).
            every: classify every n-th frame of a recorded source spec.
            batch: frames of a recorded source per `predict_batch` call (throughput); 1 for a live one.
            smoothing: a `Smoothing` to average class distributions over recent frames; None is off.
            reconnects: tries to reopen a lost live source spec (default 5) before a SourceError.

        Returns:
            A Stream of StreamResult objects; `.stats` holds frames/s, dropped frames and latency; use it in a
            `with` block (or call `close()`) to release the source.

        Raises:
            SourceError: the source cannot be opened (missing file, bad URL, unreadable codec).
            InputError: every, batch or reconnects where they do not apply (anchor_edge.video.stream).

        Example:
            >>> with pipe.stream("clip.mp4", batch=8) as frames:
            ...     labels = [result.prediction.label for result in frames]
        """
        from anchor_edge.video.stream import open_stream

        return open_stream(self, source, every=every, batch=batch, smoothing=smoothing, reconnects=reconnects)

    def close(self) -> None:
        """Release both models' backend resources."""
        self.anchornet.close()
        self.downstream.close()

    def __enter__(self) -> "Pipeline":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float32, shifted by the row maximum for stability."""
    exp = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return exp / exp.sum(axis=-1, keepdims=True)
