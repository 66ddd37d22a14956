"""``python -m asr``: the ``asr`` command, as ``python -m asr.cli`` (see :mod:`asr.cli`)."""

import sys

from asr.cli import main

sys.exit(main())
