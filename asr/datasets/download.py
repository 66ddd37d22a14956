"""Resumable HTTP downloads with size/checksum checks, and tar extraction that stays inside its target."""

from __future__ import annotations

import gzip
import hashlib
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

logger = logging.getLogger(__name__)

CHUNK = 1 << 20
MAX_LINK_HOPS = 40  # symbolic links followed in one member's path, as the system's own limit (ELOOP)


class DownloadError(Exception):
    """A download or archive is unusable: network error, size or checksum mismatch, unsafe member."""


def download(url: str, dest: str | Path, size: int | None = None, sha256: str | None = None, md5: str | None = None,
             timeout_s: float = 60.0) -> Path:
    """Fetch ``url`` to ``dest``, resuming a partial ``dest.part`` with an HTTP Range request.

    A finished file that already passes the checks is not fetched again. The data goes to
    ``dest.part`` and is renamed only after the size and checksum match. A ``dest.part`` that the
    server says is complete (HTTP 416) is checked like a finished download; one that does not fit
    the file on the server (longer, or of another size) is removed and the download starts again.

    Raises:
        DownloadError: naming the URL or file and the cause (a failed write names ``dest.part``).
    """
    dest = Path(dest)
    if matches(dest, size, sha256, md5):
        return dest
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
    _verified(part, size, sha256, md5, raise_error=True)
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
    return path.is_file() and _verified(path, size, sha256, md5, raise_error=False)


def _verified(path: Path, size: int | None, sha256: str | None, md5: str | None, raise_error: bool) -> bool:
    actual_size = path.stat().st_size
    if size is not None and actual_size != size:
        if raise_error:
            path.unlink()
            raise DownloadError(f"{path}: size {actual_size} bytes, expected {size}; the file was removed")
        return False
    for name, expected in (("sha256", sha256), ("md5", md5)):
        if expected:
            digest = hashlib.new(name)
            with path.open("rb") as f:
                while chunk := f.read(CHUNK):
                    digest.update(chunk)
            if digest.hexdigest() != expected.lower():
                if raise_error:
                    path.unlink()
                    raise DownloadError(f"{path}: {name} mismatch (got {digest.hexdigest()}, expected {expected}); the file was removed")
                return False
    return True


def extract_tar(archive: str | Path, target: str | Path) -> list[Path]:
    """Extract ``archive`` under ``target``; reject members that would land outside it.

    Absolute paths, ``..`` components, and symbolic/hard links pointing outside the target are
    rejected before anything is written, and so are paths and links that leave it through a link
    (one the archive makes before them, or one already in the target): every member is checked
    where it would land once the members before it are extracted. Device files and FIFOs are
    rejected too, and so is a compressed archive cut short or failing its CRC (read to its end
    before anything is written). A refused archive leaves the target as it was.

    Returns:
        The extracted regular files.
    Raises:
        DownloadError: naming the archive and the offending member or the damage, in one line.
    """
    archive, target = Path(archive), Path(target)
    root = target.resolve()
    try:
        with tarfile.open(archive) as tar:
            members = tar.getmembers()
            links: dict[str, str] = {}  # the archive's symbolic links: where each lands -> its target
            for m in members:
                _check_member(archive, root, m, links)
            for where, linkname in links.items():  # a link made later may have moved an earlier one's target
                if _landing(root, where, links) is None:
                    raise DownloadError(f"{archive}: link {where!r} -> {linkname!r} points outside the target folder "
                                        "(through a link made after it)")
            if isinstance(tar.fileobj, (gzip.GzipFile, lzma.LZMAFile)):
                while tar.fileobj.read(CHUNK):  # the rest: its CRC, checked only at the end of the stream
                    pass
            target.mkdir(parents=True, exist_ok=True)
            tar.extractall(target, members=members, filter="data")
    except tarfile.FilterError as e:  # checked above; the data filter stays a second guard
        raise DownloadError(f"{archive}: unsafe member ({e})") from None
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile, lzma.LZMAError) as e:  # damaged, cut short
        reason = str(e).splitlines()[0].rstrip(":") if str(e) else type(e).__name__
        raise DownloadError(f"{archive}: not a readable tar archive ({reason})") from None
    return [target / m.name for m in members if m.isfile()]


def _check_member(archive: Path, root: Path, m: tarfile.TarInfo, links: dict[str, str]) -> None:
    """Refuse ``m`` unless it and its link target land inside ``root`` once the members before it
    (whose symbolic links are in ``links``) are extracted; add its own symbolic link to ``links``.

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
        on_disk = root.joinpath(*parts)
        if "/".join(parts) in links:
            todo[:0] = PurePosixPath(links["/".join(parts)]).parts
            parts.pop()
        elif os.path.islink(on_disk):
            real = Path(os.path.realpath(on_disk))
            if not real.is_relative_to(root):
                return None
            parts = list(real.relative_to(root).parts)
        else:
            continue
        hops += 1
        if hops > MAX_LINK_HOPS:
            return None
    return parts
