"""`python -m anchor_edge ...` runs the `anchor-edge` command."""
import sys

from .cli import main

sys.exit(main())
