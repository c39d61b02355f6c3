"""``python -m tools.soak``: the memory soak test; the code is in tests/soak.py (see there)."""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "tests"))

from soak import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main())
