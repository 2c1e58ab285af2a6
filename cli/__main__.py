"""``python -m asymk_talker.cli``: the ``asymk-talker`` command."""

import sys

from .main import main

sys.exit(main())
