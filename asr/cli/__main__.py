"""``python -m asr.cli``: the ``asr`` command (torchrun starts training this way)."""

import sys

from asr.cli import main

sys.exit(main())
