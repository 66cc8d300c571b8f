"""The `anchor-edge` command: one parser with shared option groups, one module per subcommand."""

from anchor_edge.cli.main import main
from anchor_edge.cli.parser import build_parser

__all__ = ["build_parser", "main"]
