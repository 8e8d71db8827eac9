"""``python -m ifscope`` is the ``ifscope`` command."""

import sys

from .cli import main

sys.exit(main())
