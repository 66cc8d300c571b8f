"""The `anchor-edge` command: predict (images or streams), verify, doctor, batch and serve (Ray), export, bench.

    anchor-edge predict photo.jpg [--bundle bundles/default] [--json] [--save-vis DIR] [--early-exit 0.9] [--budget 0.5]
    anchor-edge predict clip.mp4 | 0 | rtsp://... [--save-vis out.mp4] [--json] [--every N] [--batch N] [--smooth ema]
    anchor-edge export [the options of python export/to_trt.py]
    anchor-edge bench [the options of python benchmarks/latency.py]
    anchor-edge doctor [--bundle bundles/default]
    anchor-edge verify bundles/default [--backend openvino --inference-precision bf16]
    anchor-edge batch --input 'photos/**/*.jpg' --output results/ [--actors 2] [--address auto]
    anchor-edge serve [--port 8000] [--replicas 2] [--max-batch 8] [--batch-wait-ms 5]

`export` and `bench` are second doors to the checkout's scripts: they reuse
the scripts' own `build_parser(parser)` and `run(args)`, so the options can
never drift apart. Those scripts need the build-time dependencies (torch),
which a deployment does not install, so they are imported only when asked
for, from the source checkout.

Exit codes: 0 success, 2 usage error (argparse), 1 failure, with a one-line
reason on stderr (`--debug` shows the traceback and debug logs; `-v` info
logs). The library logs through the "anchor_edge" logger, quiet by default.
"""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

from .backends import BACKENDS
from .early_exit import check_threshold
from .errors import AnchorEdgeError, InputError
from .lsp import PRESETS

if TYPE_CHECKING:
    from .pipeline import Pipeline

log = logging.getLogger("anchor_edge")

DEFAULT_BUNDLE = Path("bundles/default")
#: subcommand -> (checkout module, the script it stands for, what to install when it is missing)
CHECKOUT_COMMANDS = {
    "export": ("export.cli", "export/to_trt.py", "pip install -e .[cpu,export]"),
    "bench": ("benchmarks.latency", "benchmarks/latency.py", "pip install -e .[cpu,export,bench]"),
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line `argv` (default: sys.argv[1:]); returns the exit code."""
    parser = build_parser()
    args, rest = parser.parse_known_args(sys.argv[1:] if argv is None else list(argv))
    if args.command in CHECKOUT_COMMANDS:
        return _run_checkout_command(args.command, rest)
    if rest:
        args.subparser.error(f"unrecognized arguments: {' '.join(rest)}")
    _configure_logging(args)
    try:
        return args.handler(args)
    except (AnchorEdgeError, OSError) as error:
        return _fail(error, args.debug)


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser; `export` and `bench` take the checkout scripts' options (parsed later)."""
    parser = argparse.ArgumentParser(
        prog="anchor-edge", description="Classify images from a few localized patches (AnchorNet)."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    predict = commands.add_parser("predict", help="classify images, a video, a camera or a stream with a bundle")
    predict.add_argument(
        "images", nargs="+", metavar="SOURCE",
        help="image files; or one video file, image folder or glob, camera index, rtsp/http URL or GStreamer pipeline",
    )
    _add_bundle_option(predict)
    predict.add_argument("--backend", choices=BACKENDS, default="auto", help="inference backend (default: %(default)s)")
    predict.add_argument("--preset", choices=sorted(PRESETS), help="LSP preset (default: the bundle's)")
    predict.add_argument("--providers", type=_providers, default="cpu", metavar="P[,P]",
                         help="ONNX Runtime providers: cpu, cuda, tensorrt, openvino (priority order) or auto (default: cpu)")
    predict.add_argument("--json", action="store_true", help="one JSON object per line instead of text")
    predict.add_argument("--save-vis", type=Path, metavar="PATH",
                         help="a folder: one PNG of boxes and heatmap per image; for a stream, a .mp4/.avi annotated video")
    predict.add_argument(
        "--early-exit", type=_threshold, metavar="T",
        help="stop classifying an image's patches once their mean softmax has a class >= T (0: one patch)",
    )
    predict.add_argument(
        "--budget", type=float, metavar="B",
        help="cap each image's downstream multiply-adds at B x the full image's, patches in LSP order",
    )
    stream = predict.add_argument_group("streams (a video, camera, URL, pipeline or image folder)")
    stream.add_argument("--every", type=_positive, default=1, metavar="N", help="classify every N-th frame of a file")
    stream.add_argument("--batch", type=_positive, default=1, metavar="N", help="frames of a file per batch (throughput)")
    stream.add_argument("--smooth", choices=("ema", "window"), help="average class probabilities over recent frames")
    _add_common_flags(predict)
    predict.set_defaults(handler=_predict, subparser=predict)

    verify = commands.add_parser("verify", help="rerun the bundle's check set on a backend and compare with FP32")
    verify.add_argument("bundle", type=Path, metavar="BUNDLE")
    verify.add_argument("--backend", choices=BACKENDS, default="auto", help="inference backend (default: %(default)s)")
    verify.add_argument("--providers", type=_providers, default="cpu", metavar="P[,P]", help="ONNX Runtime providers")
    verify.add_argument("--device", default="CPU", help="OpenVINO device (default: %(default)s)")
    verify.add_argument("--inference-precision", default="f32", choices=("f32", "bf16", "f16"), help="OpenVINO precision")
    verify.add_argument("--min-agreement", type=float, default=0.95, help="least top-1 agreement (default: %(default)s)")
    _add_common_flags(verify)
    verify.set_defaults(handler=_verify, subparser=verify)

    doctor = commands.add_parser("doctor", help="check this machine and whether a bundle can run on it")
    _add_bundle_option(doctor)
    _add_common_flags(doctor)
    doctor.set_defaults(handler=_doctor, subparser=doctor)

    batch = commands.add_parser("batch", help="classify a large set of image files on Ray, results to Parquet")
    _add_bundle_option(batch)
    batch.add_argument("--input", required=True, metavar="PATH_OR_GLOB", help="an image file, a folder (recursive) or a glob")
    batch.add_argument("--output", required=True, type=Path, metavar="DIR",
                       help="results folder (Parquet parts); images already in it are skipped")
    batch.add_argument("--batch-size", type=_positive, default=16, metavar="B", help="images per predict_batch (default: %(default)s)")
    _add_ray_options(batch, member="actor")
    _add_common_flags(batch)
    batch.set_defaults(handler=_batch, subparser=batch)

    serve = commands.add_parser("serve", help="serve a bundle over HTTP on Ray Serve, batching requests")
    _add_bundle_option(serve)
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    serve.add_argument("--port", type=_positive, default=8000, help="port (default: %(default)s)")
    serve.add_argument("--max-batch", type=_positive, default=8, metavar="B", help="largest request batch (default: %(default)s)")
    serve.add_argument("--batch-wait-ms", type=_non_negative, default=5.0, metavar="W",
                       help="longest wait for a batch to fill after its first request (default: %(default)s)")
    serve.add_argument("--max-body-mb", type=_non_negative, default=20.0, metavar="MB", help="largest request body (default: %(default)s)")
    _add_ray_options(serve, member="replica")
    _add_common_flags(serve)
    serve.set_defaults(handler=_serve, subparser=serve)

    for command, (_, script, _) in CHECKOUT_COMMANDS.items():
        commands.add_parser(command, add_help=False, help=f"{script}'s options (anchor-edge {command} --help)")
    return parser


def _predict(args: argparse.Namespace) -> int:
    from .pipeline import Pipeline
    from .sources import is_stream_source

    options = dict(backend=args.backend, preset=args.preset, early_exit=args.early_exit, budget=args.budget, providers=args.providers)
    with Pipeline.from_bundle(args.bundle, **options) as pipe:
        log.info("bundle %s on %s", args.bundle, pipe.backend)
        if len(args.images) == 1 and is_stream_source(args.images[0]):
            from .stream_cli import run_stream

            return run_stream(pipe, args)
        return _predict_images(pipe, [Path(image) for image in args.images], args)


def _predict_images(pipe: "Pipeline", paths: list[Path], args: argparse.Namespace) -> int:
    """Classify image files one by one; a file that fails is reported and the rest go on."""
    from tqdm import tqdm

    from . import visualize
    from .preprocess import load_image

    failures = 0
    names: set[str] = set()
    for path in tqdm(paths, unit="image", disable=None if len(paths) > 1 else True, leave=False):
        try:
            image = load_image(path)
            prediction = pipe(image)
        except AnchorEdgeError as error:
            failures += 1
            _fail(error, args.debug)
            continue
        if args.json:
            tqdm.write(json.dumps({"image": str(path), **prediction.to_dict()}))
        else:
            tqdm.write(
                f"{path}: {prediction.label} (class {prediction.class_id}) score {prediction.score:.3f} "
                f"branch B{prediction.branch} patches {len(prediction.boxes)}"
            )
        if args.save_vis:
            name = _unique_name(path.stem, names)
            written = visualize.save(args.save_vis / f"{name}.png", image, prediction, pipe.bundle.class_names)
            log.info("wrote %s", written)
    return 1 if failures else 0


def _verify(args: argparse.Namespace) -> int:
    from .verify import describe, verify_bundle

    result = verify_bundle(
        args.bundle, min_agreement=args.min_agreement, backend=args.backend, providers=args.providers,
        device=args.device, inference_precision=args.inference_precision,
    )
    print(describe(result))
    print(f"recorded in {args.bundle / 'bundle.json'} (verified)")
    return 0 if result.passed else 1


def _batch(args: argparse.Namespace) -> int:
    from .scale.commands import run_batch_command

    return run_batch_command(args)


def _serve(args: argparse.Namespace) -> int:
    from .scale.commands import run_serve_command

    return run_serve_command(args)


def _doctor(args: argparse.Namespace) -> int:
    from . import doctor

    checks = doctor.environment() + doctor.bundle_checks(args.bundle)
    marks = {True: "ok  ", False: "FAIL", None: "    "}
    for check in checks:
        print(f"{marks[check.ok]} {check.name:<18} {_one_line(check.detail)}")
    if doctor.runnable(checks):
        print(f"{args.bundle} can run here")
        return 0
    failed = next(check for check in checks if check.ok is False)
    print(f"anchor-edge: {args.bundle} cannot run here: {failed.name}: {_one_line(failed.detail)}", file=sys.stderr)
    return 1


def _run_checkout_command(command: str, argv: list[str]) -> int:
    """Parse `argv` with the checkout script's own parser and run it."""
    module_name, _, install = CHECKOUT_COMMANDS[command]
    try:
        module = _import_from_checkout(module_name)
    except ImportError as error:
        print(
            f"anchor-edge {command} needs a source checkout with {install} "
            f"(run it from the checkout; {_one_line(str(error))})",
            file=sys.stderr,
        )
        return 1
    description = (module.__doc__ or "").split("\n\n")[0]
    parser = module.build_parser(argparse.ArgumentParser(prog=f"anchor-edge {command}", description=description))
    _add_common_flags(parser)
    args = parser.parse_args(argv)
    _configure_logging(args)
    try:
        return int(module.run(args))
    except (AnchorEdgeError, OSError) as error:
        return _fail(error, args.debug)


def _import_from_checkout(module_name: str) -> ModuleType:
    """Import a checkout module: from the folder above this package (editable install) or the current one.

    The build-time packages (`export`, `benchmarks`) are not installed with the
    runtime, so the top-level package is registered from the checkout folder
    through importlib (no sys.path edit); its submodules then import normally.
    """
    package, _, _ = module_name.partition(".")
    if package not in sys.modules:
        roots = [Path(__file__).resolve().parent.parent, Path.cwd()]
        root = next((r for r in roots if (r / package / "__init__.py").is_file()), None)
        if root is None:
            raise ImportError(f"{package}/ not found in {' or '.join(str(r) for r in roots)}")
        spec = importlib.util.spec_from_file_location(
            package, root / package / "__init__.py", submodule_search_locations=[str(root / package)]
        )
        assert spec is not None and spec.loader is not None, "a package __init__.py always has a spec"
        module = importlib.util.module_from_spec(spec)
        sys.modules[package] = module
        spec.loader.exec_module(module)
    return importlib.import_module(module_name)


def _providers(text: str) -> str | list[str]:
    """--providers: "auto", or names separated by commas."""
    return "auto" if text == "auto" else [name.strip() for name in text.split(",") if name.strip()]


def _positive(text: str) -> int:
    """--every and --batch: a usage error (exit 2) unless an integer >= 1."""
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"needs an integer >= 1, got {text!r}")
    return int(text)


def _non_negative(text: str) -> float:
    """--gpus-per-*, --batch-wait-ms, --max-body-mb: a usage error (exit 2) unless a finite number >= 0."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"needs a number >= 0, got {text!r}")
    return value


def _threshold(text: str) -> float | None:
    """--early-exit's type: a usage error (exit 2) unless a number >= 0."""
    try:
        return check_threshold(float(text))
    except (ValueError, InputError) as error:
        raise argparse.ArgumentTypeError(f"needs a number >= 0, got {text!r}") from error


def _add_bundle_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bundle", type=Path, default=DEFAULT_BUNDLE, help="bundle directory (default: %(default)s)")


def _add_ray_options(parser: argparse.ArgumentParser, *, member: str) -> None:
    """The Ray pool of pipelines (--{member}s, each one's threads and GPUs), the cluster and the backend."""
    parser.add_argument(f"--{member}s", type=_positive, default=1, metavar="N",
                        help=f"pipelines ({member}s) running at once (default: %(default)s)")
    parser.add_argument(f"--threads-per-{member}", type=_positive, default=1, metavar="T",
                        help=f"ONNX Runtime threads of each {member} (default: %(default)s)")
    parser.add_argument(f"--gpus-per-{member}", type=_non_negative, default=0.0, metavar="G",
                        help=f"GPUs each {member} reserves (default: 0)")
    parser.add_argument("--address", metavar="ADDR",
                        help="join a Ray cluster: auto (one started with `ray start` here) or HEAD:PORT; "
                        "default: start a local cluster on 127.0.0.1")
    parser.add_argument("--backend", choices=BACKENDS, default="auto", help="inference backend (default: %(default)s)")


def _add_common_flags(parser: argparse.ArgumentParser) -> None:
    """-v and --debug, unless a reused script parser defines them already."""
    for flags, help_text in ((("-v", "--verbose"), "info logs"), (("--debug",), "debug logs and tracebacks")):
        try:
            parser.add_argument(*flags, action="store_true", help=help_text)
        except argparse.ArgumentError:
            pass


def _configure_logging(args: argparse.Namespace) -> None:
    """Quiet by default: warnings only; -v info, --debug everything, on stderr."""
    level = logging.DEBUG if args.debug else logging.INFO if getattr(args, "verbose", False) else logging.WARNING
    for previous in [h for h in log.handlers if isinstance(h, _CommandLineHandler)]:
        log.removeHandler(previous)  # main() called again in one process: one handler, on today's stderr
    handler = _CommandLineHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    log.addHandler(handler)
    log.setLevel(level)


class _CommandLineHandler(logging.StreamHandler):
    """The stderr handler the command adds to the "anchor_edge" logger."""


def _fail(error: BaseException, debug: bool) -> int:
    """Report `error` as one line on stderr (the traceback too with --debug); returns exit code 1."""
    if debug:
        log.exception("failed")
    print(f"anchor-edge: {_one_line(str(error))}", file=sys.stderr)
    return 1


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _unique_name(stem: str, taken: set[str]) -> str:
    """`stem`, or `stem-2`, `stem-3`... when two images of one run share a file name."""
    name, count = stem, 1
    while name in taken:
        count += 1
        name = f"{stem}-{count}"
    taken.add(name)
    return name
