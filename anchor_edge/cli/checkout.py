"""`anchor-edge export` and `anchor-edge bench`: second doors to the source checkout's scripts.

They reuse the scripts' own `build_parser(parser)` and `run(args)`, so the
options can never drift apart. Those scripts need the build-time
dependencies (torch), which a deployment does not install, so they are
imported only when asked for, from the source checkout.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from anchor_edge.cli.failure import one_line, report_failure
from anchor_edge.cli.options import add_common_flags
from anchor_edge.errors import AnchorEdgeError

#: subcommand -> (checkout module, the script it stands for, what to install when it is missing)
CHECKOUT_COMMANDS = {
    "export": ("export.cli", "export/to_trt.py", "pip install -e .[cpu,export]"),
    "bench": ("benchmarks.latency", "benchmarks/latency.py", "pip install -e .[cpu,export,bench]"),
}


def add_parsers(commands: argparse._SubParsersAction) -> None:
    """Placeholders: the script's own parser reads the rest of the command line later."""
    for command, (_, script, _) in CHECKOUT_COMMANDS.items():
        commands.add_parser(command, add_help=False, help=f"{script}'s options (anchor-edge {command} --help)")


def run_checkout_command(command: str, argv: list[str]) -> int:
    """Parse `argv` with the checkout script's own parser and run it."""
    from anchor_edge.cli.main import configure_logging

    module_name, _, install = CHECKOUT_COMMANDS[command]
    try:
        module = _import_from_checkout(module_name)
    except ImportError as error:
        print(
            f"anchor-edge {command} needs a source checkout with {install} "
            f"(run it from the checkout; {one_line(str(error))})",
            file=sys.stderr,
        )
        return 1
    description = (module.__doc__ or "").split("\n\n")[0]
    parser = module.build_parser(argparse.ArgumentParser(prog=f"anchor-edge {command}", description=description))
    add_common_flags(parser)
    args = parser.parse_args(argv)
    configure_logging(args)
    try:
        return int(module.run(args))
    except (AnchorEdgeError, OSError) as error:
        return report_failure(error, args.debug)


def _import_from_checkout(module_name: str) -> ModuleType:
    """Import a checkout module: from the folder above this package (editable install) or the current one.

    The build-time packages (`export`, `benchmarks`) are not installed with the
    runtime, so the top-level package is registered from the checkout folder
    through importlib (no sys.path edit); its submodules then import normally.
    """
    package, _, _ = module_name.partition(".")
    if package not in sys.modules:
        roots = [Path(__file__).resolve().parents[2], Path.cwd()]
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
