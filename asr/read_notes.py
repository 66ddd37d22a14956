"""Warnings logged while one item of a dataset is read, kept with the item instead of printed.

A loader's worker processes read the same files again every epoch (new workers each time), so a
warning about a file (its channels cancel out, its header is doubtful, a noise segment would not
decode) came once per epoch and worker. Inside :func:`collecting`, the warnings of the loggers
passed through :func:`collected` are kept as :class:`Note` records instead; the dataset puts them
in its item, and the process iterating the loader reports each once (``asr.data.ReadLog``).

The collection is per thread (a context variable), so other threads log as usual.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
from collections.abc import Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class Note:
    """A warning kept for another process: its logger's name, level and message."""

    logger: str
    level: int
    message: str

    def log(self) -> None:
        """Log it as it would have been logged where it was made."""
        logging.getLogger(self.logger).log(self.level, "%s", self.message)


_notes: contextvars.ContextVar[list[Note] | None] = contextvars.ContextVar("asr_read_notes", default=None)


class _Collect(logging.Filter):
    """Keeps a warning (or worse) as a ``Note`` inside :func:`collecting`, and drops it there."""

    def filter(self, record: logging.LogRecord) -> bool:
        notes = _notes.get()
        if notes is None or record.levelno < logging.WARNING:
            return True
        notes.append(Note(record.name, record.levelno, record.getMessage()))
        return False


_COLLECT = _Collect()


def collected(logger: logging.Logger) -> logging.Logger:
    """``logger``, whose warnings :func:`collecting` keeps (for a module's ``logger = ...`` line)."""
    logger.addFilter(_COLLECT)
    return logger


@contextlib.contextmanager
def collecting() -> Iterator[list[Note]]:
    """The list the warnings of ``collected`` loggers go to in the ``with`` block, in this thread.

    >>> log = collected(logging.getLogger("asr.doctest"))
    >>> with collecting() as notes:
    ...     log.warning("a.wav: odd")
    >>> notes == [Note("asr.doctest", logging.WARNING, "a.wav: odd")]
    True
    """
    notes: list[Note] = []
    token = _notes.set(notes)
    try:
        yield notes
    finally:
        _notes.reset(token)
