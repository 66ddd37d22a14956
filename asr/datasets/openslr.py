"""OpenSLR downloads: LibriSpeech (SLR12), its language-model files (SLR11), mini-LibriSpeech (SLR31),
and the MUSAN noise, music and speech corpus (SLR17) for additive-noise augmentation.

Each file has a known URL, and where a public source gives them, its size in bytes and MD5. A
download resumes a partial ``.part`` file, is checked against the size and MD5 before it is kept,
and an archive is extracted with :func:`asr.datasets.download.extract_tar` (no absolute paths,
``..`` members or links out of the target). A part already extracted (its
``LibriSpeech/<part>/.complete`` marker exists) or an LM file already downloaded and verified is
skipped without touching the network. An extraction writes ``LibriSpeech/<part>/.partial`` before
its first file, so that a run after an interrupted one extracts over only a folder it began: a
part folder holding files but neither marker (the user's own) is refused before the download.

Where the numbers come from (nothing here is guessed; a value no public source gave is ``None``):

- SLR12 MD5s: the publisher's ``resources/12/md5sum.txt`` as quoted, identically, by several
  independent projects (e.g. sdrobert/pytorch-database-prep ``librispeech.py``); sizes: Kaldi
  ``egs/librispeech/s5/local/download_and_untar.sh`` (``sizes_new``), matching the
  ``[337M]``-style sizes on https://www.openslr.org/12 and other projects' size tables.
- SLR31 sizes: Kaldi ``egs/mini_librispeech/s5/local/download_and_untar.sh``; MD5s:
  PaddlePaddle/PaddleSpeech ``dataset/mini_librispeech/mini_librispeech.py`` and others quoting
  ``resources/31/md5sum.txt``.
- SLR11 sizes: Kaldi ``egs/librispeech/s5/local/download_lm.sh``; MD5s: sdrobert/pytorch-database-prep
  ``librispeech.py`` (one source; ``librispeech-lm-norm.txt.gz``'s MD5 also in a second project).
  The size of ``librispeech-lm-norm.txt.gz`` was not found, so only its MD5 is checked.
- SLR17 (``musan.tar.gz``, extracting to ``musan/``): the MD5 as quoted by two independent projects
  (wenet-e2e/wespeaker's download script and an ``inex`` pipeline config); its size was not found.

Example:
    >>> f = FILES["dev-clean"]
    >>> f.url(), f.size, f.md5
    ('https://www.openslr.org/resources/12/dev-clean.tar.gz', 337926286, '42e2234ba48799c1f50f24a7926300a1')
    >>> resolve_parts(["mini_librispeech"])
    ['train-clean-5', 'dev-clean-2']
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from asr.datasets.download import (DONE_MARKER, PARTIAL_MARKER, DownloadError, download, extract_tar, mark_extracted,
                                   matches, refuse_foreign)

logger = logging.getLogger(__name__)

OPENSLR_URL = "https://www.openslr.org/resources"


@dataclass(frozen=True)
class RemoteFile:
    """One downloadable file.

    Attributes:
        name: the part name used on the command line (``train-clean-100``, ``4-gram.arpa.gz``).
        resource: the OpenSLR resource number (12, 11, 31).
        filename: the file name on the server.
        size: size in bytes, or ``None`` where no public source gives it.
        md5: MD5 hex digest, or ``None`` where no public source gives it.
        archive: a ``.tar.gz`` that extracts to ``folder``; otherwise a plain file saved under ``lm/``.
        folder: where an archive extracts, relative to the download folder ("": ``LibriSpeech/<name>``).
    """

    name: str
    resource: int
    filename: str
    size: int | None
    md5: str | None
    archive: bool
    folder: str = ""

    def url(self, base_url: str = OPENSLR_URL) -> str:
        return f"{base_url.rstrip('/')}/{self.resource}/{self.filename}"


def _archive(name: str, resource: int, size: int, md5: str) -> RemoteFile:
    return RemoteFile(name, resource, f"{name}.tar.gz", size, md5, archive=True)


def _lm(name: str, size: int | None, md5: str | None) -> RemoteFile:
    return RemoteFile(name, 11, name, size, md5, archive=False)


FILES: dict[str, RemoteFile] = {f.name: f for f in (
    # SLR12: LibriSpeech ASR corpus
    _archive("dev-clean", 12, 337926286, "42e2234ba48799c1f50f24a7926300a1"),
    _archive("dev-other", 12, 314305928, "c8d0bcc9cca99d4f8b62fcc847357931"),
    _archive("test-clean", 12, 346663984, "32fa31d27d2e1cad72775fee3f4849a9"),
    _archive("test-other", 12, 328757843, "fb5a50374b501bb3bac4815ee91d3135"),
    _archive("train-clean-100", 12, 6387309499, "2a93770f6d5c6c964bc36631d331a522"),
    _archive("train-clean-360", 12, 23049477885, "c0e676e450a7ff2f54aeade5171606fa"),
    _archive("train-other-500", 12, 30593501606, "d1a0fd59409feb2c614ce4d30c387708"),
    # SLR31: mini LibriSpeech
    _archive("train-clean-5", 31, 332954390, "5df7d4e78065366204ca6845bb08f490"),
    _archive("dev-clean-2", 31, 126046265, "6d7ab67ac6a1d2c993d050e16d61080d"),
    # SLR11: LibriSpeech language models, lexicon and LM training text
    _lm("3-gram.arpa.gz", 759636181, "74cbb837e582378c26c602e1c8cbcb9c"),
    _lm("3-gram.pruned.1e-7.arpa.gz", 34094057, "9a0f1325bcaf3a0f7b7be4be10823c2a"),
    _lm("3-gram.pruned.3e-7.arpa.gz", 13654242, "8f67ec741827742eee05799ab7605b50"),
    _lm("4-gram.arpa.gz", 1355172078, "6abdcd5b055bd482e4f9defe91d40408"),
    _lm("librispeech-lexicon.txt", 5627646, "28f72663f6bfed7cd346283c064c315b"),
    _lm("librispeech-vocab.txt", 1737588, "bf3cc7a50112831ed8b0afa40cae96a5"),
    _lm("librispeech-lm-norm.txt.gz", None, "c83c64c726a1aedfe65f80aa311de402"),
    # SLR17: MUSAN, for augment.noise_manifest (asr prepare musan)
    RemoteFile("musan", 17, "musan.tar.gz", None, "0c472d4fc0c5141eca47ad1ffeb2a7df", archive=True, folder="musan"),
)}

GROUPS: dict[str, tuple[str, ...]] = {
    "librispeech": ("train-clean-100", "train-clean-360", "train-other-500",
                    "dev-clean", "dev-other", "test-clean", "test-other"),
    "librispeech-eval": ("dev-clean", "dev-other", "test-clean", "test-other"),
    "mini_librispeech": ("train-clean-5", "dev-clean-2"),
    "lm": ("3-gram.arpa.gz", "4-gram.arpa.gz", "librispeech-lexicon.txt", "librispeech-vocab.txt",
           "librispeech-lm-norm.txt.gz"),
}


def resolve_parts(names: Sequence[str]) -> list[str]:
    """Expand group names (``librispeech``, ``librispeech-eval``, ``mini_librispeech``, ``lm``)
    into part names, keeping the order and dropping repeats.

    Raises:
        ValueError: an unknown name, with the known ones.
    """
    out: list[str] = []
    for name in names:
        parts = GROUPS.get(name, (name,))
        for part in parts:
            if part not in FILES:
                known = ", ".join([*GROUPS, *FILES])
                raise ValueError(f"unknown OpenSLR part {name!r} (known: {known})")
            if part not in out:
                out.append(part)
    return out


def part_dir(dest: str | Path, name: str) -> Path:
    """Where part ``name`` lives once fetched: ``dest/LibriSpeech/<name>`` (``dest/musan`` for MUSAN)
    or ``dest/lm/<file>``."""
    f = FILES[name]
    if not f.archive:
        return Path(dest) / "lm" / f.filename
    return Path(dest) / (f.folder or f"LibriSpeech/{name}")


def is_done(dest: str | Path, name: str) -> bool:
    """True when part ``name`` is already extracted (marker present) or, for a plain file, present
    with the expected size and MD5 (a file cut short or damaged is downloaded again)."""
    f, path = FILES[name], part_dir(dest, name)
    return (path / DONE_MARKER).is_file() if f.archive else matches(path, size=f.size, md5=f.md5)


def fetch_parts(
    names: Sequence[str], dest: str | Path, base_url: str = OPENSLR_URL,
    remove_archive: bool = False, timeout_s: float = 60.0,
) -> list[Path]:
    """Download (and extract) each part under ``dest``, skipping parts already done.

    Archives go to ``dest/<part>.tar.gz`` and extract to ``dest/LibriSpeech/<part>/`` (MUSAN:
    ``dest/musan/``), which then gets a ``.complete`` marker; LM files go to ``dest/lm/``. An interrupted run resumes where it
    stopped (partial download, or the extraction of a verified archive, into the part folder
    marked ``.partial`` when that extraction began). A part folder that holds files but neither
    marker is not ours: it is refused before anything is fetched, and left as it is.

    Args:
        names: part or group names (see :func:`resolve_parts`).
        dest: the download folder.
        base_url: the server holding ``<resource>/<file>`` (a mirror, or a local test server).
        remove_archive: delete each archive once it is extracted.
        timeout_s: socket timeout per request.

    Returns:
        The extracted part folders and LM files, in the order of ``names``.

    Raises:
        ValueError: an unknown part name.
        DownloadError: a failed transfer, a size or MD5 mismatch (the bad download is removed), a
            file there that is not the published one (kept as it is), an unsafe archive member,
            something in ``dest`` in a member's way (the archive is kept), a part folder that
            holds files no extraction of ours began, or an archive without its
            ``LibriSpeech/<part>/`` (``musan/``) folder.
    """
    dest = Path(dest)
    done: list[Path] = []
    for name in resolve_parts(names):
        f, target = FILES[name], part_dir(dest, name)
        if is_done(dest, name):
            logger.info("part=%s status=done path=%s", name, target)
            done.append(target)
            continue
        if f.archive:
            refuse_foreign(target, "move it away, or download to another destination")
        local = dest / f.filename if f.archive else target
        logger.info("part=%s url=%s size_bytes=%s", name, f.url(base_url), f.size)
        download(f.url(base_url), local, size=f.size, md5=f.md5, timeout_s=timeout_s)
        if f.archive:
            logger.info("part=%s extracting=%s", name, local)
            files = extract_tar(local, dest, marker=target / PARTIAL_MARKER)
            if not any(p.is_relative_to(target) for p in files):
                raise DownloadError(f"{local}: the archive holds no {target.relative_to(dest)}/ folder")
            mark_extracted(target, f"{f.url(base_url)} md5={f.md5}\n")
            if remove_archive:
                os.remove(local)
        done.append(target)
    return done


def describe_parts() -> str:
    """A table of every known part: name, URL, size in bytes and MD5 (``-`` where unknown)."""
    rows = [f"{'part':<28} {'bytes':>12}  {'md5':<32}  url"]
    for f in FILES.values():
        rows.append(f"{f.name:<28} {f.size if f.size is not None else '-':>12}  "
                    f"{f.md5 or '-':<32}  {f.url()}")
    rows.append("groups: " + "; ".join(f"{g} = {' '.join(p)}" for g, p in GROUPS.items()))
    return "\n".join(rows)
