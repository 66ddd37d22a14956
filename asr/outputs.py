"""Output files named by the user: written only over a file of the same kind that asr wrote, and
whole or not at all.

``asr evaluate --results-json``, ``asr build-lm --out`` and ``asr tune-lm --cache`` used to replace
whatever was at the path: a checkpoint, the LM's own input text, a device. ``check_output`` refuses
a path that holds something else. Every file asr writes goes through ``atomic_output``: it is
written under a temporary name and renamed over the path once complete, so an interrupted write
leaves the old file as it was.

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

import itertools
import json
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path


class OutputError(Exception):
    """Writing an output would lose something of the user's."""


def check_output(path: str | Path, is_ours: Callable[[Path], bool], what: str) -> Path:
    """The path to write for ``path`` (a symbolic link followed to its target), once it is certain
    that writing there loses nothing and can succeed: it does not exist, or it is a plain file that
    ``is_ours`` recognizes as ``what`` (an earlier output of the same kind); and its folder can be
    made and written (:func:`check_output_folder`). Call it before the work.

    Raises:
        OutputError: the path is a folder, device or other non-file, a file we may not read, or a
            file that is not ``what``; or its folder cannot hold it.
    """
    path = Path(os.path.realpath(path)) if os.path.islink(path) else Path(path)
    if os.path.lexists(path):
        if not path.is_file():
            raise OutputError(f"{path}: exists and is not a plain file; not overwritten")
        try:  # one we may not read cannot be told ours, and would be refused as "not what" below
            open(path, "rb").close()
        except OSError as e:
            raise OutputError(f"{path}: exists and cannot be read ({e.strerror or e}); not overwritten") from None
        if not is_ours(path):
            raise OutputError(f"{path}: exists and is not {what}; not overwritten (remove it or choose another path)")
    check_output_folder(path.parent, f"; nothing written at {path}")
    return path


def check_output_folder(path: str | Path, hint: str = "") -> None:
    """Refuse ``path`` as a folder of outputs when it cannot be one: something other than a folder is
    there or at one of its parents (a file), or the system refuses new files in it (in its nearest
    existing parent when it is yet to be made: a read-only folder, a system folder). Call it before
    the work; nothing is made (the file that tries is never visible, or removed at once). ``hint``
    ends the message.

    Raises:
        OutputError: ``path`` or one of its parents exists and is not a folder, or no file can be made
            in the folder that holds or will hold it.
    """
    for folder in (Path(path), *Path(path).parents):
        if not os.path.lexists(folder):
            continue
        if not os.path.isdir(folder):
            raise OutputError(f"{folder}: exists and is not a folder{hint}")
        try:
            tempfile.TemporaryFile(dir=folder).close()
        except OSError as e:
            raise OutputError(f"{folder}: cannot write files there ({e.strerror or e}){hint}") from None
        return


@contextmanager
def atomic_output(path: str | Path, suffix: str = "", durable: bool = False) -> Iterator[Path]:
    """A hidden temporary file beside ``path`` to write (created empty); once the ``with`` block ends
    without an error it is renamed onto ``path`` (the same folder, so the rename is atomic). On an
    error or Ctrl-C the temporary file is removed and ``path`` keeps what it held.

    Args:
        path: the file to write.
        suffix: kept at the end of the temporary name, for writers that choose a format by extension.
        durable: flush the file to the disk before the rename (checkpoints, manifests), so that a
            crash of the machine leaves the old file or the new one, never an empty one.

    Raises:
        OSError: the temporary file cannot be created (a missing or read-only folder), or cannot
            replace ``path`` (a folder there): the ``OSError`` subclass of the cause, its
            ``filename`` being ``path``.

    Example:
        >>> import tempfile
        >>> folder = Path(tempfile.mkdtemp())
        >>> with atomic_output(folder / "a.txt") as tmp:
        ...     _ = tmp.write_text("whole")
        >>> (folder / "a.txt").read_text(), [p.name for p in folder.iterdir()]
        ('whole', ['a.txt'])
    """
    path = Path(path)
    name = os.fsdecode(os.fsencode(path.name)[:TMP_NAME_KEPT])  # a name near the system's 255 bytes still has a temporary one
    tmp = path.with_name(f".{name}.{os.getpid()}-{next(_serial)}.tmp{suffix}")
    try:  # made here, so that a folder the system refuses is named as the user gave it, before any work
        open(tmp, "xb").close()
    except OSError as e:
        raise type(e)(e.errno, f"cannot write a file there ({e.strerror})", str(path)) from None
    try:
        yield tmp
        if durable:
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        try:
            os.replace(tmp, path)
        except OSError as e:  # a folder at ``path``, ...: named as given, not as the temporary file (gone)
            raise type(e)(e.errno, e.strerror, str(path)) from None
    finally:
        tmp.unlink(missing_ok=True)


TMP_NAME_KEPT = 200  # bytes of the file's name in its temporary name; the rest (pid, serial, suffix) fits in 255
_serial = itertools.count()  # distinct temporary names for writes of one path from several threads


def holds(path: str | Path, chunks: Iterable[bytes]) -> bool:
    """Whether ``path`` is a file holding exactly ``chunks`` one after the other, compared as they
    come (an output left by a run stopped before its record, to be kept as it is)."""
    if not os.path.isfile(path):
        return False
    with open(path, "rb") as f:
        for chunk in chunks:
            if f.read(len(chunk)) != chunk:
                return False
        return not f.read(1)


def starts_with(path: Path, prefix: bytes) -> bool:
    """Whether the file begins with ``prefix`` (after any blank lines)."""
    with open(path, "rb") as f:
        return f.read(len(prefix) + 4096).lstrip(b"\r\n \t").startswith(prefix)


def json_lines_with(path: Path, keys: set[str]) -> bool:
    """Whether the file is empty or its first line is a JSON object holding ``keys``: how a
    JSON-lines output of asr (a training log, a sweep's records) is recognized."""
    with open(path, "rb") as f:
        first = f.readline(1_000_000)
    if not first:
        return True
    try:
        record = json.loads(first)
    except (ValueError, RecursionError):
        return False
    return isinstance(record, dict) and keys <= set(record)
