"""``python -m web_demo [--port 8000] [--prepare-only]``: serve the in-browser demo."""

import sys

from .server import main

sys.exit(main())
