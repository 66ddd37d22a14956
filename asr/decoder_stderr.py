"""What a decoder inside libsndfile writes to standard error, turned into one line of ours.

soundfile's libsndfile decodes MP3 (and MPEG audio in WAV) with libmpg123, linked into it, which
prints its notes on damaged data straight to the process's standard error ("Note: Illegal
Audio-MPEG-Header 0x00000000 at offset 1080.", "[src/libmpg123/layer3.c:INT123_do_layer3():1804]
error: dequantization failed!"), beside our own one-line error about the same file, or with no
word of ours at all when it patches over the damage and returns samples. libsndfile 1.2.2 neither
sets libmpg123's MPG123_QUIET flag nor has a command to pass it (``mpeg_decode.c``), so
:func:`decoder_notes` points file descriptor 2 at a temporary file while a file is opened and
decoded, and then logs what was written there: at DEBUG when the read failed (our error says so),
else as one warning naming the file (the samples may hold glitches).

File descriptor 2 belongs to the whole process: while it points away, whatever any thread writes to
standard error goes there too, and two threads doing this at once could restore each other's
redirection wrongly. So it is done only while the calling thread is the process's only Python thread
(``asr transcribe``, ``asr stream``, a DataLoader worker process); while others run (the threads of
:meth:`asr.data.AudioCache.preload`, a checkpoint writer) libmpg123's notes reach standard error as
before. Anything else written to standard error in that window (a Python warning raised while
decoding, a message of a thread of C code) is logged with the decoder's notes.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import tempfile
import threading
from collections import Counter
from collections.abc import Iterator
from typing import Any

from asr.read_notes import collected

logger = collected(logging.getLogger(__name__))  # per-item warnings: asr.read_notes

MAX_NOTE_BYTES = 1 << 16  # of what was written, this much is read back
_MAX_NOTES = 3  # distinct lines quoted in the warning
_SOURCE_PREFIX = re.compile(r"^\[src/[^\]]*\]\s*")  # libmpg123's "[src/libmpg123/parse.c:wetwork():1349] "


@contextlib.contextmanager
def decoder_notes(label: str) -> Iterator[None]:
    """Capture what is written to file descriptor 2 in the ``with`` block (opening and decoding
    ``label``), and log it afterwards: at DEBUG if the block raised, else as one warning. Nothing is
    captured while other Python threads run, or without a file descriptor 2 or a temporary file.
    """
    capture = _redirect_stderr()
    if capture is None:
        yield
        return
    saved, spool = capture
    failed = True
    try:
        yield
        failed = False
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        spool.seek(0)
        text = spool.read(MAX_NOTE_BYTES).decode("utf-8", "replace")
        if text:
            spool.seek(0)
            spool.truncate()
        if text.strip():
            _report(label, text, failed)


_spools: dict[int, Any] = {}  # process id -> its temporary file, empty between captures


def _redirect_stderr():
    """Point file descriptor 2 at the process's temporary file (made at its first use: a forked
    process shares its parent's file offset, so it makes its own); return (a duplicate of the old
    fd 2, the file), or None where that is not safe or not possible."""
    if threading.active_count() > 1:
        return None
    try:
        saved = os.dup(2)
    except OSError:  # no standard error to keep clean
        return None
    spool = _spools.get(os.getpid())
    if spool is None:
        try:
            spool = _spools[os.getpid()] = tempfile.TemporaryFile()
        except OSError:
            os.close(saved)
            return None
    sys.stderr.flush()  # what Python has buffered goes where it was meant to
    os.dup2(spool.fileno(), 2)
    return saved, spool


def _report(label: str, text: str, failed: bool) -> None:
    if failed:
        logger.debug("path=%s decoder_notes=%r", label, text)
        return
    notes = Counter(_SOURCE_PREFIX.sub("", line).strip() for line in text.splitlines() if line.strip())
    quoted = [note if times == 1 else f"{note} (x{times})" for note, times in list(notes.items())[:_MAX_NOTES]]
    more = "; ..." if len(notes) > _MAX_NOTES else ""
    logger.warning("%s: the decoder reported damaged data and went on (%s%s); read as it is, glitches and all",
                   label, "; ".join(quoted), more)
