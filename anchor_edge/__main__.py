"""`python -m anchor_edge ...` runs the `anchor-edge` command."""

import sys

from anchor_edge.cli import main

sys.exit(main())
