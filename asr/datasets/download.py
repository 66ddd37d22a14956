"""Resumable HTTP downloads with size/checksum checks, and tar extraction that stays inside its target."""

from __future__ import annotations

import gzip
import http.client
import logging
import lzma
import os
import re
import tarfile
import urllib.error
import urllib.request
import zlib
from pathlib import Path, PurePosixPath

from asr.paths import file_digest

logger = logging.getLogger(__name__)

CHUNK = 1 << 20
MAX_LINK_HOPS = 40  # symbolic links followed in one member's path, as the system's own limit (ELOOP)
DONE_MARKER = ".complete"  # in a folder an archive was wholly extracted into
PARTIAL_MARKER = ".partial"  # written before an extraction's first file (``extract_tar(marker=)``); removed when done


class DownloadError(Exception):
    """A download or archive is unusable: network error, size or checksum mismatch, unsafe member."""


class TargetError(DownloadError):
    """A sound archive that its target folder cannot take: something already there stands where a
    member goes, or the system refused a write. The archive is not to blame (keep it)."""


def download(url: str, dest: str | Path, size: int | None = None, sha256: str | None = None, md5: str | None = None,
             timeout_s: float = 60.0) -> Path:
    """Fetch ``url`` to ``dest``, resuming a partial ``dest.part`` with an HTTP Range request.

    A finished file that already passes the checks is not fetched again; anything else at ``dest``
    (a file the user changed, or their own of that name) is refused, not replaced. The data goes to
    ``dest.part`` and is renamed only after the size and checksum match. A ``dest.part`` that the
    server says is complete (HTTP 416) is checked like a finished download; one that does not fit
    the file on the server (longer, or of another size) is removed and the download starts again.

    Raises:
        DownloadError: naming the URL or file and the cause (a failed write names ``dest.part``).
    """
    dest = Path(dest)
    if os.path.lexists(dest):  # checked once (an archive's MD5 takes a while); anything else is never replaced
        why = _mismatch(dest, size, sha256, md5) if dest.is_file() else "not a file"
        if why is None:
            return dest
        raise DownloadError(f"{dest}: is not the file at {url} ({why}); not replaced: move it away to download it")
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            resumed = have and response.status == 206
            if have and not resumed:
                logger.info("%s: server ignored the range request; downloading from the start", url)
            content_range = response.headers.get("Content-Range", "")
            if resumed and not content_range.startswith(f"bytes {have}-"):  # appending would splice the file
                raise DownloadError(f"{url}: asked for bytes from {have}, the server sent {content_range or 'no Content-Range'}; "
                                    f"remove {part} and run again")
            expected = response.headers.get("Content-Length", "")
            received = 0
            try:
                with part.open("ab" if resumed else "wb") as out:
                    while chunk := _read(response, url):
                        out.write(chunk)
                        received += len(chunk)
            except OSError as e:  # the local disk: full, read-only, ...
                raise DownloadError(f"{part}: cannot write ({e.strerror or e}); run again to resume once it can be written") from None
            if expected.isdigit() and received < int(expected):  # http.client does not raise for this
                raise DownloadError(f"{url}: connection closed after {received} of {expected} bytes; "
                                    f"run again to resume")
    except urllib.error.HTTPError as e:
        if e.code != 416 or not have:
            raise DownloadError(f"{url}: HTTP {e.code} {e.reason}") from None
        total = re.fullmatch(r"bytes \*/(\d+)", e.headers.get("Content-Range", "").strip())
        if have != (int(total[1]) if total else size):  # not the whole file: a stale or foreign part
            logger.info("%s: %s (%d bytes) does not fit the file on the server; downloading from the start", url, part, have)
            part.unlink()
            return download(url, dest, size=size, sha256=sha256, md5=md5, timeout_s=timeout_s)
    except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
        reason = getattr(e, "reason", e)
        raise DownloadError(f"{url}: download failed ({reason}); run again to resume") from None
    if why := _mismatch(part, size, sha256, md5):
        part.unlink()
        raise DownloadError(f"{part}: {why}; the file was removed")
    part.replace(dest)
    return dest


def _read(response: http.client.HTTPResponse, url: str) -> bytes:
    """The next chunk of the body; a network failure is a DownloadError (not an OSError, which
    means the local file here)."""
    try:
        return response.read(CHUNK)
    except (OSError, http.client.HTTPException) as e:
        raise DownloadError(f"{url}: download failed ({e}); run again to resume") from None


def matches(path: Path, size: int | None = None, sha256: str | None = None, md5: str | None = None) -> bool:
    """Whether ``path`` is a file with the size and checksums given (those that are not None)."""
    return path.is_file() and _mismatch(path, size, sha256, md5) is None


def _mismatch(path: Path, size: int | None, sha256: str | None, md5: str | None) -> str | None:
    """Why the file ``path`` is not the one of that size and checksums (those not None), or None."""
    actual_size = path.stat().st_size
    if size is not None and actual_size != size:
        return f"size {actual_size} bytes, expected {size}"
    for name, expected in (("sha256", sha256), ("md5", md5)):
        if expected and (actual := file_digest(path, name)) != expected.lower():
            return f"{name} mismatch (got {actual}, expected {expected})"
    return None


def extract_tar(archive: str | Path, target: str | Path, marker: str | Path | None = None) -> list[Path]:
    """Extract ``archive`` under ``target``; reject members that would land outside it.

    Absolute paths, ``..`` components, and symbolic/hard links pointing outside the target are
    rejected before anything is written, and so are paths and links that leave it through a link
    (one the archive makes before them, or one already in the target): every member is checked
    where it would land once the members before it are extracted. Device files and FIFOs are
    rejected too, and so is a compressed archive cut short or failing its CRC (read to its end
    before anything is written), and a member blocked by what is there before it (a file where it
    needs a folder, a folder where it makes a file: see :func:`_check_room`); a file of the archive
    replaces a regular file of that name (extracting the same archive again). A refused archive
    leaves the target as it was.

    ``marker``, when given, is a file written (its folders made) once the archive has passed those
    checks, before the first member is extracted: it says that an extraction began there, so that
    a caller resuming an interrupted one can tell its own folder from one it did not make.

    Returns:
        The extracted regular files.
    Raises:
        TargetError: something in the target stands in a member's way (nothing is written), or
            the system refused a write (the members before it are extracted); naming the archive,
            the member and the path, in one line.
        DownloadError: naming the archive and the offending member or the damage, in one line.
    """
    archive, target = Path(archive), Path(target)
    root = target.resolve()
    try:
        with tarfile.open(archive) as tar:
            members = tar.getmembers()
            links: dict[str, str] = {}  # the archive's symbolic links: where each lands -> its target
            made: dict[str, tarfile.TarInfo] = {}  # what the members before make: where each lands -> the member
            for m in members:
                _check_room(archive, target, m, _check_member(archive, root, m, links), made)
            for where, linkname in links.items():  # a link made later may have moved an earlier one's target
                if _landing(root, where, links) is None:
                    raise DownloadError(f"{archive}: link {where!r} -> {linkname!r} points outside the target folder "
                                        "(through a link made after it)")
            if isinstance(tar.fileobj, (gzip.GzipFile, lzma.LZMAFile)):
                while tar.fileobj.read(CHUNK):  # the rest: its CRC, checked only at the end of the stream
                    pass
            target.mkdir(parents=True, exist_ok=True)
            if marker is not None:
                _write_marker(archive, Path(marker))
            _extract(tar, archive, target, members)
    except tarfile.FilterError as e:  # checked above; the data filter stays a second guard
        raise DownloadError(f"{archive}: unsafe member ({e})") from None
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile, lzma.LZMAError) as e:  # damaged, cut short
        reason = str(e).splitlines()[0].rstrip(":") if str(e) else type(e).__name__
        raise DownloadError(f"{archive}: not a readable tar archive ({reason})") from None
    return [target / m.name for m in members if m.isfile()]


def refuse_foreign(folder: Path, what_to_do: str, expected: tuple[str, ...] = ()) -> None:
    """Refuse to extract into ``folder`` when it holds files no extraction of ours began there:
    neither marker (``PARTIAL_MARKER``, ``DONE_MARKER``) is in it, and it holds something besides
    the names ``expected`` (e.g. the archive being downloaded). Extracting would replace the user's
    files of the archive's names.

    Raises:
        DownloadError: naming the folder, one of its files and ``what_to_do``, in one line.
    """
    if not folder.is_dir() or any((folder / m).is_file() for m in (PARTIAL_MARKER, DONE_MARKER)):
        return
    try:
        foreign = sorted(p.name for p in folder.iterdir() if p.name not in expected)
    except OSError as e:
        raise DownloadError(f"{folder}: cannot be read ({e.strerror or e})") from None
    if foreign:
        raise DownloadError(f"{folder}: holds files that were not extracted by asr (e.g. {foreign[0]}; no {PARTIAL_MARKER} "
                            f"or {DONE_MARKER} marker); not extracted over: {what_to_do}")


def mark_extracted(folder: Path, note: str) -> None:
    """Mark ``folder`` wholly extracted: ``DONE_MARKER`` (holding ``note``, e.g. the URL) in place
    of the ``PARTIAL_MARKER`` its extraction began with."""
    (folder / DONE_MARKER).write_text(note)
    (folder / PARTIAL_MARKER).unlink()


def _write_marker(archive: Path, marker: Path) -> None:
    """Write ``marker`` (naming ``archive``), making its folders.

    Raises:
        TargetError: the system refused the write (nothing of the archive is extracted).
    """
    try:
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(f"{archive}\n")
    except OSError as e:
        raise TargetError(f"{marker}: cannot be written ({e.strerror or e}); nothing of {archive} was extracted") from None


def _extract(tar: tarfile.TarFile, archive: Path, target: Path, members: list[tarfile.TarInfo]) -> None:
    """Extract the checked ``members`` under ``target`` (tarfile's data filter as a second guard).

    Raises:
        TargetError: the system refused a write (a full disk, a read-only folder, ...).
    """
    current: list[tarfile.TarInfo] = []

    def data_filter(member: tarfile.TarInfo, path: str) -> tarfile.TarInfo | None:
        current[:] = [member]  # the member being extracted, for the error
        return tarfile.data_filter(member, path)

    try:
        tar.extractall(target, members=members, filter=data_filter)
    except OSError as e:
        if not e.filename:  # not the disk: the archive's stream
            raise
        raise TargetError(f"{archive}: member {current[0].name!r} could not be extracted ({e.filename}: "
                          f"{e.strerror or e}); the members before it are extracted") from None


def _check_room(archive: Path, target: Path, m: tarfile.TarInfo, where: list[str],
                made: dict[str, tarfile.TarInfo]) -> None:
    """Refuse ``m``, which lands at ``where`` (the parts of a path below ``target``), when what is
    there once the members before it (``made``) are extracted blocks it: something other than a
    folder at a parent of ``where``, or at ``where`` something ``m`` does not replace (for a
    folder, anything but a folder; for a file, a folder or a FIFO, device or socket; for a link, a
    folder). Add ``m`` to ``made``.

    Raises:
        TargetError: naming the archive, the member and the path in the way.
    """
    for i in range(1, len(where) + 1):
        key = "/".join(where[:i])
        path = os.path.join(target, key)  # a string: pathlib's parsing, per member and parent, cost as much as the rest
        if i < len(where) or m.isdir():
            needs, fits = "a folder", ("a folder",)
        elif m.isfile():
            needs, fits = "a file", ("a file", "a link")
        else:
            needs, fits = "a link", ("a file", "a link", "something other than a file or folder")
        kind = _member_kind(made[key]) if key in made else _disk_kind(path)
        if kind is None or kind in fits:
            continue
        if key in made:
            raise TargetError(f"{archive}: member {m.name!r} needs {needs} at {path}, where member {made[key].name!r} "
                              f"before it makes {kind}; nothing was extracted")
        raise TargetError(f"{archive}: member {m.name!r} needs {needs} at {path}, where {kind} is already in the "
                          "target; nothing was extracted (move it away, or extract elsewhere)")
    made["/".join(where)] = m


def _member_kind(m: tarfile.TarInfo) -> str:
    """What a member makes, in words."""
    return "a folder" if m.isdir() else "a file" if m.isfile() else "a link"


def _disk_kind(path: str) -> str | None:
    """What is at ``path`` (a link not followed), in words; None if nothing."""
    if os.path.islink(path):
        return "a link"
    if os.path.isdir(path):
        return "a folder"
    if os.path.isfile(path):
        return "a file"
    return "something other than a file or folder" if os.path.lexists(path) else None


def _check_member(archive: Path, root: Path, m: tarfile.TarInfo, links: dict[str, str]) -> list[str]:
    """Refuse ``m`` unless it and its link target land inside ``root`` once the members before it
    (whose symbolic links are in ``links``) are extracted; add its own symbolic link to ``links``.
    Return where it lands (see :func:`_landing`).

    Raises:
        DownloadError: naming the archive, the member and the cause.
    """
    name = m.name
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        raise DownloadError(f"{archive}: member {name!r} has an absolute path")
    if ".." in Path(name).parts:
        raise DownloadError(f"{archive}: member {name!r} leaves the target folder ('..')")
    is_link = m.issym() or m.islnk()
    where = _landing(root, name, links, follow_last=not is_link)  # a link replaces what is at its name
    if where is None:
        raise DownloadError(f"{archive}: member {name!r} leaves the target folder")
    if is_link:
        base = where[:-1] if m.issym() else []  # a hard link's target is named from the archive's root
        if Path(m.linkname).is_absolute() or _landing(root, "/".join([*base, m.linkname]), links) is None:
            raise DownloadError(f"{archive}: link {name!r} -> {m.linkname!r} points outside the target folder")
        if m.issym():
            links["/".join(where)] = m.linkname
    elif not (m.isfile() or m.isdir()):
        raise DownloadError(f"{archive}: member {name!r} is not a regular file or folder")
    return where


def _landing(root: Path, name: str, links: dict[str, str], follow_last: bool = True) -> list[str] | None:
    """Where the relative path ``name`` lands under ``root``, as the parts of a path below it:
    ``..`` taken and symbolic links followed, those of the archive (``links``, keyed by where each
    lands) and those already on disk. None when it leaves ``root`` or goes through more than
    ``MAX_LINK_HOPS`` links.

    Example:
        >>> _landing(Path("/nowhere"), "a/b/../c", {"a": "x/y"})
        ['x', 'y', 'c']
        >>> _landing(Path("/nowhere"), "up/c", {"up": ".."}) is None
        True
    """
    parts: list[str] = []
    todo = list(PurePosixPath(name).parts)
    hops = 0
    while todo:
        part = todo.pop(0)
        if part == "..":
            if not parts:
                return None
            parts.pop()
            continue
        parts.append(part)
        if not todo and not follow_last:
            break
        key = "/".join(parts)
        if key in links:
            todo[:0] = PurePosixPath(links[key]).parts
            parts.pop()
        elif os.path.islink(os.path.join(root, key)):
            real = Path(os.path.realpath(os.path.join(root, key)))
            if not real.is_relative_to(root):
                return None
            parts = list(real.relative_to(root).parts)
        else:
            continue
        hops += 1
        if hops > MAX_LINK_HOPS:
            return None
    return parts
