"""Resumable downloads against a local HTTP server (127.0.0.1) and safe tar extraction."""

from __future__ import annotations

import hashlib
import io
import os
import random
import tarfile
from pathlib import Path

import pytest

from asr.datasets.download import DownloadError, TargetError, download, extract_tar

PAYLOAD = random.Random(0).randbytes(300_000)


@pytest.fixture
def server(http_server):
    http_server.files["/data.bin"] = PAYLOAD
    return http_server


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ------------------------------------------------------------------------------------- download
def test_download_verified(server, tmp_path):
    dest = tmp_path / "sub" / "data.bin"
    got = download(f"{server.url}/data.bin", dest, size=len(PAYLOAD), sha256=_sha256(PAYLOAD),
                   md5=hashlib.md5(PAYLOAD).hexdigest(), timeout_s=10)
    assert got == dest and dest.read_bytes() == PAYLOAD
    assert not (tmp_path / "sub" / "data.bin.part").exists()
    assert server.log == [("/data.bin", None, 200)]


def test_resume_after_interrupted_transfer(server, tmp_path):
    dest = tmp_path / "data.bin"
    part = tmp_path / "data.bin.part"
    server.cut_after = 100_000
    with pytest.raises(DownloadError, match=r"data\.bin.*run again to resume"):
        download(f"{server.url}/data.bin", dest, timeout_s=10)  # no size/checksum: the header must catch it
    assert not dest.exists()
    assert part.read_bytes() == PAYLOAD[:100_000]

    got = download(f"{server.url}/data.bin", dest, size=len(PAYLOAD), sha256=_sha256(PAYLOAD), timeout_s=10)
    assert got.read_bytes() == PAYLOAD
    assert not part.exists()
    assert server.log == [("/data.bin", None, 200), ("/data.bin", "bytes=100000-", 206)]


def test_resume_from_the_wrong_offset_is_refused(server, tmp_path):
    """A 206 that starts elsewhere than asked would splice the file; the part is kept as it was."""
    dest, part = tmp_path / "data.bin", tmp_path / "data.bin.part"
    part.write_bytes(PAYLOAD[:100_000])
    server.range_shift = -10
    with pytest.raises(DownloadError, match=r"asked for bytes from 100000, the server sent bytes 99990-"):
        download(f"{server.url}/data.bin", dest, timeout_s=10)
    assert part.read_bytes() == PAYLOAD[:100_000] and not dest.exists()


def test_resume_twice_interrupted(server, tmp_path):
    dest = tmp_path / "data.bin"
    for cut in (50_000, 70_000):
        server.cut_after = cut
        with pytest.raises(DownloadError, match="run again to resume"):
            download(f"{server.url}/data.bin", dest, timeout_s=10)
    assert (tmp_path / "data.bin.part").stat().st_size == 120_000
    download(f"{server.url}/data.bin", dest, sha256=_sha256(PAYLOAD), timeout_s=10)
    assert dest.read_bytes() == PAYLOAD
    assert [entry[1] for entry in server.log] == [None, "bytes=50000-", "bytes=120000-"]


def test_server_ignoring_range_restarts_from_zero(server, tmp_path):
    dest = tmp_path / "data.bin"
    (tmp_path / "data.bin.part").write_bytes(b"garbage that is not the start of the payload")
    server.honour_range = False
    download(f"{server.url}/data.bin", dest, sha256=_sha256(PAYLOAD), timeout_s=10)
    assert dest.read_bytes() == PAYLOAD
    assert server.log == [("/data.bin", "bytes=44-", 200)]


def test_size_mismatch_rejected_and_removed(server, tmp_path):
    dest = tmp_path / "data.bin"
    with pytest.raises(DownloadError) as e:
        download(f"{server.url}/data.bin", dest, size=len(PAYLOAD) - 10, timeout_s=10)
    msg = str(e.value)
    assert "data.bin.part" in msg and f"size {len(PAYLOAD)} bytes, expected {len(PAYLOAD) - 10}" in msg
    assert "\n" not in msg
    assert not dest.exists() and not (tmp_path / "data.bin.part").exists()


@pytest.mark.parametrize("algo", ["sha256", "md5"])
def test_checksum_mismatch_rejected(server, tmp_path, algo):
    dest = tmp_path / "data.bin"
    wrong = hashlib.new(algo, b"something else").hexdigest()
    with pytest.raises(DownloadError, match=rf"data\.bin\.part: {algo} mismatch \(got {hashlib.new(algo, PAYLOAD).hexdigest()}, "
                                            rf"expected {wrong}\); the file was removed"):
        download(f"{server.url}/data.bin", dest, **{algo: wrong}, timeout_s=10)
    assert not dest.exists() and not (tmp_path / "data.bin.part").exists()
    assert len(server.log) == 1


def test_finished_verified_file_not_fetched_again(server, tmp_path):
    dest = tmp_path / "data.bin"
    download(f"{server.url}/data.bin", dest, sha256=_sha256(PAYLOAD), timeout_s=10)
    mtime = dest.stat().st_mtime_ns
    assert download(f"{server.url}/data.bin", dest, sha256=_sha256(PAYLOAD), size=len(PAYLOAD), timeout_s=10) == dest
    assert len(server.log) == 1 and dest.stat().st_mtime_ns == mtime
    # a file that fails its checksum (the user's own, or one changed since) is named and kept, not replaced
    for other in (b"the user's own older copy", PAYLOAD[:-1] + bytes([PAYLOAD[-1] ^ 1])):  # another size; same size
        dest.write_bytes(other)
        with pytest.raises(DownloadError, match=r"data\.bin: is not the file at .*/data\.bin \((size|sha256 mismatch) .*\); "
                                                r"not replaced: move it away to download it$"):
            download(f"{server.url}/data.bin", dest, sha256=_sha256(PAYLOAD), size=len(PAYLOAD), timeout_s=10)
        assert dest.read_bytes() == other and len(server.log) == 1
    dest.unlink()
    dest.mkdir()  # a folder in the way: refused before anything is fetched
    with pytest.raises(DownloadError, match=r"data\.bin: is not the file at .* \(not a file\)"):
        download(f"{server.url}/data.bin", dest, sha256=_sha256(PAYLOAD), timeout_s=10)
    assert len(server.log) == 1


def test_http_errors_are_download_errors(server, tmp_path):
    with pytest.raises(DownloadError, match=r"/missing\.bin: HTTP 404"):
        download(f"{server.url}/missing.bin", tmp_path / "m.bin", timeout_s=10)
    assert not (tmp_path / "m.bin").exists()
    # nothing listens on the port after the server closed
    port = server.server_address[1]
    server.shutdown()
    server.server_close()
    with pytest.raises(DownloadError, match=rf"127\.0\.0\.1:{port}/data\.bin: download failed .*run again to resume"):
        download(f"http://127.0.0.1:{port}/data.bin", tmp_path / "d.bin", timeout_s=5)


@pytest.mark.parametrize("checks", [{"md5": hashlib.md5(PAYLOAD).hexdigest()}, {}])
def test_complete_part_is_checked_not_refused(server, tmp_path, checks):
    """A .part already whole (the run stopped during the checksum, before the rename) gets HTTP 416
    for its range; with no size to compare it used to fail with 'HTTP 416' on every run."""
    dest = tmp_path / "data.bin"
    (tmp_path / "data.bin.part").write_bytes(PAYLOAD)
    assert download(f"{server.url}/data.bin", dest, timeout_s=10, **checks) == dest
    assert dest.read_bytes() == PAYLOAD and not (tmp_path / "data.bin.part").exists()
    assert server.log == [("/data.bin", f"bytes={len(PAYLOAD)}-", 416)]


def test_part_longer_than_the_file_starts_again(server, tmp_path):
    dest = tmp_path / "data.bin"
    (tmp_path / "data.bin.part").write_bytes(PAYLOAD + b"tail of another file")
    download(f"{server.url}/data.bin", dest, size=len(PAYLOAD), sha256=_sha256(PAYLOAD), timeout_s=10)
    assert dest.read_bytes() == PAYLOAD
    assert server.log == [("/data.bin", f"bytes={len(PAYLOAD) + 20}-", 416), ("/data.bin", None, 200)]


def test_complete_part_with_wrong_bytes_is_removed_then_fetched(server, tmp_path):
    dest = tmp_path / "data.bin"
    (tmp_path / "data.bin.part").write_bytes(bytes(len(PAYLOAD)))
    with pytest.raises(DownloadError, match=r"data\.bin\.part: sha256 mismatch .*the file was removed"):
        download(f"{server.url}/data.bin", dest, sha256=_sha256(PAYLOAD), timeout_s=10)
    assert not (tmp_path / "data.bin.part").exists()
    download(f"{server.url}/data.bin", dest, sha256=_sha256(PAYLOAD), timeout_s=10)
    assert dest.read_bytes() == PAYLOAD


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs Linux's /dev/full")
def test_a_failed_write_names_the_local_file(server, tmp_path):
    """A full disk (writes to /dev/full fail with ENOSPC): the message names the .part file, not the URL."""
    (tmp_path / "data.bin.part").symlink_to("/dev/full")
    with pytest.raises(DownloadError) as e:
        download(f"{server.url}/data.bin", tmp_path / "data.bin", timeout_s=10)
    assert str(e.value).startswith(f"{tmp_path / 'data.bin.part'}: cannot write (No space left on device)")
    assert not (tmp_path / "data.bin").exists()


# ------------------------------------------------------------------------------------ extract_tar
def _tar(path: Path, members: list[tuple[str, str, bytes | str]], mode: str = "w") -> Path:
    """Build an archive from (kind, name, data-or-linkname) with kind 'file', 'dir', 'sym' or 'hard'."""
    with tarfile.open(path, mode) as tar:
        for kind, name, payload in members:
            info = tarfile.TarInfo(name)
            if kind == "file":
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))
                continue
            if kind == "dir":
                info.type = tarfile.DIRTYPE
            else:
                info.type = tarfile.SYMTYPE if kind == "sym" else tarfile.LNKTYPE
                info.linkname = payload
            tar.addfile(info)
    return path


GOOD_FIRST = ("file", "ok/first.txt", b"harmless")


@pytest.mark.parametrize(
    ("bad", "pattern"),
    [
        (("file", "../evil.txt", b"x"), r"member '\.\./evil\.txt' leaves the target folder"),
        (("file", "ok/../../evil.txt", b"x"), r"member 'ok/\.\./\.\./evil\.txt' leaves the target folder"),
        (("file", "/tmp/asr-test-evil.txt", b"x"), r"member '/tmp/asr-test-evil\.txt' has an absolute path"),
        (("sym", "ok/link", "../../outside.txt"), r"link 'ok/link' -> '\.\./\.\./outside\.txt' points outside"),
        (("sym", "abslink", "/etc/passwd"), r"link 'abslink' -> '/etc/passwd' points outside"),
        (("hard", "hardlink", "../outside.txt"), r"link 'hardlink' -> '\.\./outside\.txt' points outside"),
        (("hard", "abshard", "/etc/passwd"), r"link 'abshard' -> '/etc/passwd' points outside"),
    ],
)
def test_unsafe_members_rejected_nothing_written(tmp_path, bad, pattern):
    archive = _tar(tmp_path / "bad.tar", [GOOD_FIRST, bad, ("file", "ok/last.txt", b"y")])
    target = tmp_path / "target" / "inner"
    with pytest.raises(DownloadError, match=rf"bad\.tar: {pattern}"):
        extract_tar(archive, target)
    assert not (tmp_path / "target").exists()  # all members checked before anything is written
    assert not Path("/tmp/asr-test-evil.txt").exists()
    # an existing target folder is left exactly as it was
    target.mkdir(parents=True)
    (target / "keep.txt").write_text("mine")
    with pytest.raises(DownloadError):
        extract_tar(archive, target)
    assert [p.name for p in target.rglob("*")] == ["keep.txt"]
    assert (target / "keep.txt").read_text() == "mine"


def test_device_file_rejected(tmp_path):
    with tarfile.open(tmp_path / "fifo.tar", "w") as tar:
        info = tarfile.TarInfo("pipe")
        info.type = tarfile.FIFOTYPE
        tar.addfile(info)
    with pytest.raises(DownloadError, match=r"member 'pipe' is not a regular file or folder"):
        extract_tar(tmp_path / "fifo.tar", tmp_path / "t")
    assert not (tmp_path / "t").exists()


def test_good_archive_extracts(tmp_path):
    archive = _tar(
        tmp_path / "good.tar.gz",
        [("dir", "pkg", b""), ("file", "pkg/a.txt", b"alpha"), ("file", "pkg/sub/b.bin", bytes(range(256))),
         ("sym", "pkg/sub/link", "../a.txt"), ("hard", "pkg/hard", "pkg/a.txt")],
        mode="w:gz",
    )
    target = tmp_path / "out"
    files = extract_tar(archive, target)
    assert sorted(files) == sorted([target / "pkg/a.txt", target / "pkg/sub/b.bin"])
    assert (target / "pkg/a.txt").read_bytes() == b"alpha"
    assert (target / "pkg/sub/b.bin").read_bytes() == bytes(range(256))
    assert (target / "pkg/sub/link").is_symlink() and (target / "pkg/sub/link").read_bytes() == b"alpha"
    assert (target / "pkg/hard").read_bytes() == b"alpha"


def test_not_a_tar_archive(tmp_path):
    (tmp_path / "x.tar").write_bytes(b"this is not an archive at all" * 20)
    with pytest.raises(DownloadError, match=r"x\.tar: not a readable tar archive"):
        extract_tar(tmp_path / "x.tar", tmp_path / "t")


def _gz_of_three_files() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for i in range(3):
            data = random.Random(i).randbytes(50_000)  # incompressible: stored, so a flipped byte keeps it inflatable
            info = tarfile.TarInfo(f"pkg/f{i}.bin")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.mark.parametrize(("damage", "cause"), [
    ("cut", "Compressed file ended before the end-of-stream marker was reached"),
    ("flipped", "CRC check failed"),
    ("html", "file could not be opened successfully"),
])
def test_damaged_archive_rejected_in_one_line_nothing_written(tmp_path, damage, cause):
    """A gzip cut short raised EOFError (a traceback); one with changed bytes inside a member was
    extracted without a word (the CRC at the end of the stream was never read); an HTML page gave
    a five-line message."""
    data = _gz_of_three_files()
    if damage == "cut":
        data = data[: len(data) // 2]
    elif damage == "flipped":
        data = data[: len(data) // 2] + bytes([data[len(data) // 2] ^ 0xFF]) + data[len(data) // 2 + 1:]
    else:
        data = b"<html><body>Not Found</body></html>\n"
    (tmp_path / "a.tar.gz").write_bytes(data)
    with pytest.raises(DownloadError) as e:
        extract_tar(tmp_path / "a.tar.gz", tmp_path / "t")
    assert str(e.value).startswith(f"{tmp_path / 'a.tar.gz'}: not a readable tar archive ({cause}")
    assert "\n" not in str(e.value)
    assert not (tmp_path / "t").exists()


@pytest.mark.parametrize(("members", "message"), [
    ([("sym", "a", "."), ("sym", "b", "a/.."), ("file", "b/escaped.txt", b"x")],
     "link 'b' -> 'a/..' points outside the target folder"),
    ([("sym", "sub/up", ".."), ("sym", "sub/up/up2", ".."), ("file", "sub/up/up2/escaped.txt", b"x")],
     "link 'sub/up/up2' -> '..' points outside the target folder"),
    ([("sym", "b", "c/.."), ("sym", "c", "."), ("file", "b/escaped.txt", b"x")],
     "member 'b/escaped.txt' leaves the target folder"),
    ([("sym", "b", "c/.."), ("sym", "c", ".")],
     "link 'b' -> 'c/..' points outside the target folder (through a link made after it)"),
])
def test_a_chain_of_links_out_of_the_target_is_refused_before_anything_is_written(tmp_path, members, message):
    """Each link looks inside until the one before it exists: tarfile's data filter stopped the
    chain only once its first link was on disk."""
    archive = _tar(tmp_path / "chain.tar", [GOOD_FIRST, *members])
    target = tmp_path / "target" / "inner"
    with pytest.raises(DownloadError) as e:
        extract_tar(archive, target)
    assert str(e.value) == f"{archive}: {message}"
    assert not (tmp_path / "target").exists()
    target.mkdir(parents=True)
    (target / "keep.txt").write_text("mine")
    with pytest.raises(DownloadError):
        extract_tar(archive, target)
    assert [p.name for p in target.rglob("*")] == ["keep.txt"] and (target / "keep.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["chain.tar", "target"]


def test_a_chain_of_links_that_stays_inside_extracts(tmp_path):
    archive = _tar(tmp_path / "inside.tar", [("dir", "pkg", b""), ("sym", "cur", "pkg"), ("sym", "pkg/up", ".."),
                                             ("file", "cur/up/cur/f.txt", b"z")])
    extract_tar(archive, tmp_path / "out")
    assert (tmp_path / "out" / "pkg" / "f.txt").read_bytes() == b"z"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["inside.tar", "out"]


def test_a_link_already_in_the_target_that_leads_out_is_refused(tmp_path):
    target = tmp_path / "target"
    target.mkdir()
    (tmp_path / "elsewhere").mkdir()
    (target / "data").symlink_to(tmp_path / "elsewhere")
    archive = _tar(tmp_path / "a.tar", [GOOD_FIRST, ("file", "data/f.txt", b"x")])
    with pytest.raises(DownloadError, match=r"a\.tar: member 'data/f\.txt' leaves the target folder$"):
        extract_tar(archive, target)
    assert [p.name for p in target.iterdir()] == ["data"] and not any((tmp_path / "elsewhere").iterdir())


def _tree(folder: Path) -> dict[str, bytes | None]:
    """Every path under ``folder``: a file's bytes, None for a folder."""
    return {str(p.relative_to(folder)): None if p.is_dir() else p.read_bytes() for p in sorted(folder.rglob("*"))}


@pytest.mark.parametrize(("member", "obstacle", "message"), [
    (("file", "pkg/sub/b.txt", b"b"), "file", "member 'pkg/sub/b.txt' needs a folder at {t}/pkg/sub, where a file"),
    (("file", "pkg/sub", b"b"), "folder", "member 'pkg/sub' needs a file at {t}/pkg/sub, where a folder"),
    (("dir", "pkg/sub", b""), "file", "member 'pkg/sub' needs a folder at {t}/pkg/sub, where a file"),
    (("sym", "pkg/sub", "a.txt"), "folder", "member 'pkg/sub' needs a link at {t}/pkg/sub, where a folder"),
])
def test_something_in_the_target_in_a_members_way_is_refused_before_anything_is_written(tmp_path, member, obstacle,
                                                                                       message):
    """A file where a member needs a folder, or a folder where it makes a file, raised tarfile's
    NotADirectoryError / IsADirectoryError once the members before it were written (a link onto a
    folder was skipped without a word, a folder onto a file set the file's modification time). A regular file
    the archive holds is replaced, as when the same archive is extracted again."""
    archive = _tar(tmp_path / "a.tar", [("dir", "pkg", b""), ("file", "pkg/a.txt", b"new"), member])
    target = tmp_path / "t"
    (target / "pkg").mkdir(parents=True)
    (target / "pkg" / "a.txt").write_bytes(b"old")
    if obstacle == "file":
        (target / "pkg" / "sub").write_bytes(b"mine")
    else:
        (target / "pkg" / "sub").mkdir()
        (target / "pkg" / "sub" / "keep.txt").write_bytes(b"mine")
    before = _tree(target)
    with pytest.raises(TargetError) as e:
        extract_tar(archive, target)
    assert str(e.value) == (f"{archive}: {message.format(t=target)} is already in the target; nothing was extracted "
                            "(move it away, or extract elsewhere)")
    assert _tree(target) == before
    (target / "pkg" / "sub").rename(tmp_path / "moved")
    extract_tar(archive, target)
    assert (target / "pkg" / "a.txt").read_bytes() == b"new" and os.path.lexists(target / member[1])
    extract_tar(archive, target)  # and again: what it made is replaced


def test_a_member_in_the_way_of_a_later_one_is_refused_before_anything_is_written(tmp_path):
    archive = _tar(tmp_path / "a.tar", [GOOD_FIRST, ("file", "a", b"x"), ("file", "a/b", b"y")])
    with pytest.raises(TargetError) as e:
        extract_tar(archive, tmp_path / "t")
    assert str(e.value) == (f"{archive}: member 'a/b' needs a folder at {tmp_path / 't' / 'a'}, where member 'a' "
                            "before it makes a file; nothing was extracted")
    assert not (tmp_path / "t").exists()


def test_a_write_the_system_refuses_names_the_member(tmp_path):
    """What is not known before (here a name too long for the file system) is one line naming
    the member, and says what was extracted."""
    long = "x" * 300
    archive = _tar(tmp_path / "a.tar", [GOOD_FIRST, ("file", f"ok/{long}", b"y")])
    with pytest.raises(TargetError) as e:
        extract_tar(archive, tmp_path / "t")
    assert str(e.value) == (f"{archive}: member 'ok/{long}' could not be extracted ({tmp_path / 't' / 'ok' / long}: "
                            "File name too long); the members before it are extracted")
    assert _tree(tmp_path / "t") == {"ok": None, "ok/first.txt": b"harmless"}
