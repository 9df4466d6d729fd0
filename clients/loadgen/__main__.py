"""``python -m clients.loadgen``."""

from __future__ import annotations

import sys

from clients.loadgen.cli import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
