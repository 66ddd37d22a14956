"""Resumable HTTP downloads with size/checksum checks, and tar extraction that stays inside its target."""

from __future__ import annotations

import hashlib
import http.client
import logging
import tarfile
import urllib.error
import urllib.request
from pathlib import Path

logger = logging.getLogger(__name__)

CHUNK = 1 << 20


class DownloadError(Exception):
    """A download or archive is unusable: network error, size or checksum mismatch, unsafe member."""


def download(url: str, dest: str | Path, size: int | None = None, sha256: str | None = None, md5: str | None = None,
             timeout_s: float = 60.0) -> Path:
    """Fetch ``url`` to ``dest``, resuming a partial ``dest.part`` with an HTTP Range request.

    A finished file that already passes the checks is not fetched again. The data goes to
    ``dest.part`` and is renamed only after the size and checksum match.

    Raises:
        DownloadError: naming the URL or file and the cause.
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
            expected = response.headers.get("Content-Length", "")
            received = 0
            with part.open("ab" if resumed else "wb") as out:
                while chunk := response.read(CHUNK):
                    out.write(chunk)
                    received += len(chunk)
            if expected.isdigit() and received < int(expected):  # http.client does not raise for this
                raise DownloadError(f"{url}: connection closed after {received} of {expected} bytes; "
                                    f"run again to resume")
    except urllib.error.HTTPError as e:
        if e.code == 416 and have and size == have:  # the part file is already complete
            pass
        else:
            raise DownloadError(f"{url}: HTTP {e.code} {e.reason}") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
        reason = getattr(e, "reason", e)
        raise DownloadError(f"{url}: download failed ({reason}); run again to resume") from None
    _verified(part, size, sha256, md5, raise_error=True)
    part.replace(dest)
    return dest


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
    rejected before anything is written. Device files and FIFOs are rejected too.

    Returns:
        The extracted regular files.
    Raises:
        DownloadError: naming the archive and the offending member.
    """
    archive, target = Path(archive), Path(target)
    root = target.resolve()
    try:
        with tarfile.open(archive) as tar:
            members = tar.getmembers()
            for m in members:
                _check_member(archive, root, m)
            target.mkdir(parents=True, exist_ok=True)
            tar.extractall(target, members=members, filter="data")
    except tarfile.TarError as e:
        raise DownloadError(f"{archive}: not a readable tar archive ({e})") from None
    return [target / m.name for m in members if m.isfile()]


def _check_member(archive: Path, root: Path, m: tarfile.TarInfo) -> None:
    name = m.name
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        raise DownloadError(f"{archive}: member {name!r} has an absolute path")
    if ".." in Path(name).parts:
        raise DownloadError(f"{archive}: member {name!r} leaves the target folder ('..')")
    if not (root / name).resolve().is_relative_to(root):
        raise DownloadError(f"{archive}: member {name!r} leaves the target folder")
    if m.issym() or m.islnk():
        base = (root / name).parent if m.issym() else root
        if Path(m.linkname).is_absolute() or not (base / m.linkname).resolve().is_relative_to(root):
            raise DownloadError(f"{archive}: link {name!r} -> {m.linkname!r} points outside the target folder")
    elif not (m.isfile() or m.isdir()):
        raise DownloadError(f"{archive}: member {name!r} is not a regular file or folder")
