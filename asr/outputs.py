"""Output files named by the user: written only over a file of the same kind that asr wrote, and
whole or not at all.

``asr evaluate --results-json``, ``asr build-lm --out`` and ``asr tune-lm --cache`` used to replace
whatever was at the path: a checkpoint, the LM's own input text, a device. ``check_output`` refuses
a path that holds something else; ``temporary_sibling`` gives the name to write first and rename
over the path once the file is complete, so an interrupted write leaves the old file as it was.

Example:
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> (folder / "notes.txt").write_text("mine")
    4
    >>> check_output(folder / "notes.txt", lambda p: False, "a results file")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    asr.outputs.OutputError: .../notes.txt: exists and is not a results file; not overwritten (remove it or choose another path)
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path


class OutputError(Exception):
    """Writing an output would lose something of the user's."""


def check_output(path: str | Path, is_ours: Callable[[Path], bool], what: str) -> Path:
    """The path to write for ``path`` (a symbolic link followed to its target), once it is certain
    that writing there loses nothing: it does not exist, or it is a plain file that ``is_ours``
    recognizes as ``what`` (an earlier output of the same kind).

    Raises:
        OutputError: the path is a folder, device or other non-file, or a file that is not ``what``.
    """
    path = Path(os.path.realpath(path)) if os.path.islink(path) else Path(path)
    if not os.path.lexists(path):
        return path
    if not path.is_file():
        raise OutputError(f"{path}: exists and is not a plain file; not overwritten")
    if not is_ours(path):
        raise OutputError(f"{path}: exists and is not {what}; not overwritten (remove it or choose another path)")
    return path


def temporary_sibling(path: Path, suffix: str = "") -> Path:
    """A hidden name beside ``path`` to write first and then ``os.replace`` onto ``path`` (the same
    folder, so the rename is atomic); ``suffix`` keeps an extension a tool insists on."""
    return path.with_name(f".{path.name}.{os.getpid()}.tmp{suffix}")


def starts_with(path: Path, prefix: bytes) -> bool:
    """Whether the file begins with ``prefix`` (after any blank lines)."""
    with open(path, "rb") as f:
        return f.read(len(prefix) + 4096).lstrip(b"\r\n \t").startswith(prefix)
