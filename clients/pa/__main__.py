"""``python -m clients.pa``: see :mod:`clients.pa.cli`."""

from __future__ import annotations

import sys

from clients.pa.cli import main

if __name__ == "__main__":
    sys.exit(main())
