"""``python -m llamart``: the same as the ``llamart`` command."""

import sys

from .cli import main

sys.exit(main())
