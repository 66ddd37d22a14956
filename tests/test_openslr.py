"""The LibriSpeech download stage (asr.datasets.openslr) against a local HTTP server on 127.0.0.1,
serving small tar.gz files built here in LibriSpeech layout."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import re
import tarfile
from pathlib import Path

import pytest

from asr.cli import main
from asr.datasets import openslr
from asr.datasets.download import DownloadError
from asr.datasets.openslr import FILES, GROUPS, fetch_parts, resolve_parts


@pytest.fixture
def server(http_server):
    return http_server


def _targz(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _part_archive(part: str) -> bytes:
    """A small archive laid out like the real one: LibriSpeech/<part>/<spk>/<chapter>/..."""
    folder = f"LibriSpeech/{part}/19/198"
    return _targz({
        "LibriSpeech/README.TXT": b"readme",
        f"{folder}/19-198.trans.txt": b"19-198-0000 HELLO\n",
        f"{folder}/19-198-0000.flac": bytes(range(256)) * 40,  # large enough to cut mid-transfer
    })


@pytest.fixture
def serve(server, monkeypatch):
    """Serve the named parts' test files at ``/<resource>/<file>`` and point FILES at their sizes
    and MD5s (the real values describe the real multi-GB archives)."""

    def _serve(*names: str, payloads: dict[str, bytes] | None = None, **overrides) -> dict[str, bytes]:
        payloads = payloads or {}
        served = {}
        for name in names:
            f = FILES[name]
            data = payloads.get(name) or (_part_archive(name) if f.archive else f"{name} data\n".encode())
            server.files[f"/{f.resource}/{f.filename}"] = data
            changes = {"size": len(data), "md5": hashlib.md5(data).hexdigest(), **overrides}
            monkeypatch.setitem(FILES, name, dataclasses.replace(f, **changes))
            served[name] = data
        return served

    return _serve


# ------------------------------------------------------------------------------------ the table
def test_part_list_urls_and_checksum_table():
    slr12 = ["train-clean-100", "train-clean-360", "train-other-500", "dev-clean", "dev-other",
             "test-clean", "test-other"]
    assert list(GROUPS["librispeech"]) == slr12
    assert resolve_parts(["librispeech"]) == slr12
    assert resolve_parts(["mini_librispeech"]) == ["train-clean-5", "dev-clean-2"]
    assert resolve_parts(["dev-clean", "librispeech-eval"]) == ["dev-clean", "dev-other", "test-clean", "test-other"]
    for part in slr12:
        assert FILES[part].url() == f"https://www.openslr.org/resources/12/{part}.tar.gz"
    for part in ("train-clean-5", "dev-clean-2"):
        assert FILES[part].url() == f"https://www.openslr.org/resources/31/{part}.tar.gz"
    for name in GROUPS["lm"]:
        assert FILES[name].url() == f"https://www.openslr.org/resources/11/{name}" and not FILES[name].archive
    assert {"3-gram.arpa.gz", "4-gram.arpa.gz", "librispeech-lexicon.txt", "librispeech-lm-norm.txt.gz"} <= set(GROUPS["lm"])
    for f in FILES.values():
        assert f.md5 is None or re.fullmatch(r"[0-9a-f]{32}", f.md5), f
        assert f.size is None or f.size > 0
    # values quoted from public sources (see the module docstring)
    assert (FILES["train-clean-100"].size, FILES["train-clean-100"].md5) == (6387309499, "2a93770f6d5c6c964bc36631d331a522")
    assert (FILES["dev-clean-2"].size, FILES["dev-clean-2"].md5) == (126046265, "6d7ab67ac6a1d2c993d050e16d61080d")
    assert FILES["librispeech-lm-norm.txt.gz"].size is None  # no public source found: not checked
    with pytest.raises(ValueError, match="unknown OpenSLR part 'train-clean-99'"):
        resolve_parts(["train-clean-99"])


# ------------------------------------------------------------------------------- download stage
def test_fetch_extract_and_skip_when_done(server, serve, tmp_path):
    serve("dev-clean", "test-clean", "librispeech-lexicon.txt")
    got = fetch_parts(["dev-clean", "test-clean", "librispeech-lexicon.txt"], tmp_path, base_url=server.url)
    assert got == [tmp_path / "LibriSpeech/dev-clean", tmp_path / "LibriSpeech/test-clean",
                   tmp_path / "lm/librispeech-lexicon.txt"]
    assert [path for path, _, _ in server.log] == ["/12/dev-clean.tar.gz", "/12/test-clean.tar.gz",
                                               "/11/librispeech-lexicon.txt"]
    for part in ("dev-clean", "test-clean"):
        assert (tmp_path / f"LibriSpeech/{part}/19/198/19-198.trans.txt").read_bytes() == b"19-198-0000 HELLO\n"
        assert (tmp_path / f"LibriSpeech/{part}/.complete").is_file()
        assert (tmp_path / f"{part}.tar.gz").is_file()  # kept unless remove_archive
    assert (tmp_path / "lm/librispeech-lexicon.txt").read_text() == "librispeech-lexicon.txt data\n"
    # a second run touches neither the network nor the files
    server.log.clear()
    server.files.clear()  # the server would answer 404 now
    assert fetch_parts(["dev-clean", "test-clean", "librispeech-lexicon.txt"], tmp_path, base_url=server.url) == got
    assert server.log == []


def test_an_lm_file_that_differs_from_the_published_one_is_kept_not_downloaded_over(server, serve, tmp_path):
    """A lexicon the user edited (or one damaged since) is not the published file: it is named and
    left as it is, with nothing fetched; once moved away, the file is downloaded again."""
    serve("librispeech-lexicon.txt")
    lexicon = fetch_parts(["librispeech-lexicon.txt"], tmp_path, base_url=server.url)[0]
    good = lexicon.read_bytes()
    for changed, why in ((good[:-3], "size"), (good[:-3] + b"XYZ", "md5 mismatch")):  # cut short; same size
        lexicon.write_bytes(changed)
        server.log.clear()
        with pytest.raises(DownloadError, match=rf"^{re.escape(str(lexicon))}: is not the file at .*\({why}.*not replaced"):
            fetch_parts(["librispeech-lexicon.txt"], tmp_path, base_url=server.url)
        assert lexicon.read_bytes() == changed and server.log == []
    lexicon.rename(tmp_path / "my-lexicon.txt")
    assert fetch_parts(["librispeech-lexicon.txt"], tmp_path, base_url=server.url) == [lexicon]
    assert lexicon.read_bytes() == good and (tmp_path / "my-lexicon.txt").read_bytes() == changed


def test_resume_after_interrupted_transfer(server, serve, tmp_path):
    data = serve("dev-clean")["dev-clean"]
    server.cut_after = len(data) // 2
    with pytest.raises(DownloadError, match="run again to resume"):
        fetch_parts(["dev-clean"], tmp_path, base_url=server.url)
    assert (tmp_path / "dev-clean.tar.gz.part").stat().st_size == len(data) // 2
    assert not (tmp_path / "LibriSpeech/dev-clean/.complete").exists()
    fetch_parts(["dev-clean"], tmp_path, base_url=server.url)
    assert server.log == [("/12/dev-clean.tar.gz", None, 200), ("/12/dev-clean.tar.gz", f"bytes={len(data) // 2}-", 206)]
    assert (tmp_path / "LibriSpeech/dev-clean/.complete").is_file()


def test_checksum_mismatch_rejected(server, serve, tmp_path):
    serve("dev-other", md5="0" * 32)
    with pytest.raises(DownloadError, match=r"dev-other\.tar\.gz\.part: md5 mismatch .*the file was removed"):
        fetch_parts(["dev-other"], tmp_path, base_url=server.url)
    assert not (tmp_path / "LibriSpeech").exists()
    assert list(tmp_path.iterdir()) == []


def test_size_mismatch_rejected(server, serve, tmp_path):
    data = serve("test-other")["test-other"]
    serve("test-other", size=len(data) + 1)
    with pytest.raises(DownloadError, match=rf"size {len(data)} bytes, expected {len(data) + 1}"):
        fetch_parts(["test-other"], tmp_path, base_url=server.url)
    assert not (tmp_path / "LibriSpeech").exists()


@pytest.mark.parametrize("bad_member", ["../evil.txt", "LibriSpeech/dev-clean/../../evil.txt", "/tmp/asr-openslr-evil.txt"])
def test_unsafe_archive_rejected(server, serve, tmp_path, bad_member):
    archive = _targz({"LibriSpeech/dev-clean/19/198/a.txt": b"ok", bad_member: b"evil"})
    serve("dev-clean", payloads={"dev-clean": archive})
    dest = tmp_path / "dest"
    with pytest.raises(DownloadError, match=re.escape(repr(bad_member))):
        fetch_parts(["dev-clean"], dest, base_url=server.url)
    assert not (dest / "LibriSpeech").exists() and not (tmp_path / "evil.txt").exists()
    assert not Path("/tmp/asr-openslr-evil.txt").exists()


def test_archive_without_its_part_folder(server, serve, tmp_path):
    serve("train-clean-5", payloads={"train-clean-5": _targz({"LibriSpeech/other-part/x.txt": b"x"})})
    with pytest.raises(DownloadError, match=r"train-clean-5\.tar\.gz: the archive holds no LibriSpeech/train-clean-5/"):
        fetch_parts(["mini_librispeech"], tmp_path, base_url=server.url)


def test_cli_download_list_and_fetch(server, serve, tmp_path, capsys):
    assert main(["download", "--list"]) == 0
    listing = capsys.readouterr().out
    assert "https://www.openslr.org/resources/12/train-other-500.tar.gz" in listing
    assert "d1a0fd59409feb2c614ce4d30c387708" in listing
    serve("train-clean-5", "dev-clean-2")
    assert main(["download", "mini_librispeech", "--dest", str(tmp_path), "--base-url", server.url,
                 "--remove-archive"]) == 0
    assert capsys.readouterr().out.split() == [str(tmp_path / "LibriSpeech/train-clean-5"),
                                               str(tmp_path / "LibriSpeech/dev-clean-2")]
    assert not list(tmp_path.glob("*.tar.gz"))
    assert main(["download", "nope", "--dest", str(tmp_path)]) == 2
    assert "unknown OpenSLR part 'nope'" in capsys.readouterr().err
    # the prepared split reads straight from the download folder
    assert main(["prepare", "librispeech", "--data-dir", str(tmp_path), "--out", str(tmp_path / "m"),
                 "--splits", "train-clean-5"]) == 0
    out = capsys.readouterr().out
    assert "train-clean-5: 0 utterances" in out and "1 skipped" in out  # the test 'flac' is not audio


def test_cli_download_goes_on_past_a_part_that_fails(server, serve, tmp_path, capsys):
    """A part that cannot be fetched (here the server lacks it) is one error line; the parts after
    it are still fetched, and the status says that one failed."""
    serve("dev-clean-2")  # train-clean-5 is not served: HTTP 404
    assert main(["download", "mini_librispeech", "--dest", str(tmp_path), "--base-url", server.url]) == 2
    captured = capsys.readouterr()
    assert captured.out == f"{tmp_path / 'LibriSpeech/dev-clean-2'}\n"
    assert captured.err == (f"asr: error: {server.url}/31/train-clean-5.tar.gz: HTTP 404 Not Found\n"
                            "asr: 1 of 2 parts not fetched: train-clean-5\n")
    assert (tmp_path / "LibriSpeech/dev-clean-2/.complete").is_file()


def test_default_base_url_is_openslr():
    assert openslr.OPENSLR_URL == "https://www.openslr.org/resources"


def test_cli_download_into_a_folder_with_something_in_the_way(server, serve, tmp_path, capsys):
    """A file where the archive makes its part's folder: one line naming the archive, the member
    and the file (it was tarfile's 'Not a directory' once README.TXT was written); nothing is
    extracted, the verified archive is kept, and the run after the file is moved extracts it."""
    serve("train-clean-5")
    (tmp_path / "LibriSpeech").mkdir()
    (tmp_path / "LibriSpeech" / "train-clean-5").write_text("my notes\n")
    args = ["download", "train-clean-5", "--dest", str(tmp_path), "--base-url", server.url]
    assert main(args) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == (
        f"asr: error: {tmp_path / 'train-clean-5.tar.gz'}: member 'LibriSpeech/train-clean-5/19/198/19-198.trans.txt' "
        f"needs a folder at {tmp_path / 'LibriSpeech' / 'train-clean-5'}, where a file is already in the target; "
        "nothing was extracted (move it away, or extract elsewhere)\n")
    assert [p.name for p in (tmp_path / "LibriSpeech").iterdir()] == ["train-clean-5"]
    assert (tmp_path / "LibriSpeech" / "train-clean-5").read_text() == "my notes\n"
    (tmp_path / "LibriSpeech" / "train-clean-5").rename(tmp_path / "notes.txt")
    assert main(args) == 0
    assert (tmp_path / "LibriSpeech/train-clean-5/.complete").is_file() and len(server.log) == 1


def test_a_part_folder_of_the_users_is_refused_before_the_download(server, serve, tmp_path, capsys):
    """A LibriSpeech/<part>/ folder the user made (their own files, the archive's names) without a
    .complete marker was taken for an interrupted extraction and extracted over, replacing their
    transcript. Now it is one line naming it, before anything is fetched, and it is left as it is."""
    serve("dev-clean")
    mine = tmp_path / "LibriSpeech/dev-clean/19/198/19-198.trans.txt"
    mine.parent.mkdir(parents=True)
    mine.write_text("19-198-0000 MY OWN CORRECTED TRANSCRIPT\n")
    args = ["download", "dev-clean", "--dest", str(tmp_path), "--base-url", server.url]
    assert main(args) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == (
        f"asr: error: {tmp_path / 'LibriSpeech/dev-clean'}: holds files that were not extracted by asr (e.g. 19; "
        "no .partial or .complete marker); not extracted over: move it away, or download to another destination\n")
    assert server.log == [] and not (tmp_path / "dev-clean.tar.gz").exists()
    assert mine.read_text() == "19-198-0000 MY OWN CORRECTED TRANSCRIPT\n"
    assert sorted(p.name for p in mine.parent.parent.parent.iterdir()) == ["19"]
    (tmp_path / "LibriSpeech/dev-clean").rename(tmp_path / "my-dev-clean")
    assert main(args) == 0
    assert (tmp_path / "LibriSpeech/dev-clean/.complete").is_file()
    assert not (tmp_path / "LibriSpeech/dev-clean/.partial").exists()


def test_an_interrupted_extraction_of_ours_is_resumed(server, serve, tmp_path):
    """An extraction the system stopped (here a member name too long) leaves LibriSpeech/<part>/
    marked .partial, written before its first file: the next run extracts over that folder."""
    long = "x" * 300
    folder = "LibriSpeech/dev-clean/19/198"
    bad = _targz({f"{folder}/19-198.trans.txt": b"19-198-0000 HELLO\n", f"{folder}/{long}": b"y"})
    serve("dev-clean", payloads={"dev-clean": bad})
    with pytest.raises(DownloadError, match="File name too long"):
        fetch_parts(["dev-clean"], tmp_path, base_url=server.url)
    part = tmp_path / "LibriSpeech/dev-clean"
    assert (part / ".partial").is_file() and not (part / ".complete").exists()
    (part / "19/198/19-198.trans.txt").write_bytes(b"19-198-0000 HE")  # as if cut short
    (tmp_path / "dev-clean.tar.gz").unlink()  # the archive that cannot be extracted here
    serve("dev-clean")
    assert fetch_parts(["dev-clean"], tmp_path, base_url=server.url) == [part]
    assert (part / "19/198/19-198.trans.txt").read_bytes() == b"19-198-0000 HELLO\n"
    assert (part / ".complete").is_file() and not (part / ".partial").exists()
