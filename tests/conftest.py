import errno
import importlib
import os
import pkgutil
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

import asr

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real speech beside the checkout (../shared/data); its absence is an error, not a skip."""
    if not SHARED_DATA.is_dir():
        raise RuntimeError(f"{SHARED_DATA}: shared test data not found beside the checkout")
    return SHARED_DATA


@pytest.fixture
def unprivileged() -> Iterator[tuple[Path, Callable[[], AbstractContextManager[None]]]]:
    """A folder every user may enter, and a context in which the system's permission checks apply:
    the files there that a test makes unreadable or read-only (chmod) are then refused to us.

    Root passes every such check, so as root the context runs with the effective user and group
    ``nobody`` (65534), switched back after it. The interpreter's own folder may be closed to that
    user: every ``asr`` module is imported here, and what a command imports from other libraries
    must be imported before the context (run such a command once outside it). The folder is
    removed afterwards.
    """
    folder = Path(tempfile.mkdtemp(prefix="asr-perm-"))
    folder.chmod(0o777)

    @contextmanager
    def as_user() -> Iterator[None]:
        if os.geteuid() != 0:
            yield
            return
        os.setegid(65534)
        os.seteuid(65534)
        try:
            yield
        finally:
            os.seteuid(0)
            os.setegid(0)

    for module in pkgutil.walk_packages(asr.__path__, "asr."):  # those the commands import inside functions
        if not module.name.endswith(".__main__"):  # (which would run the command line)
            importlib.import_module(module.name)
    yield folder, as_user
    for top, folders, files in os.walk(folder):  # what the test closed, opened again (top-down) to remove it
        for name in folders + files:
            if not os.path.islink(os.path.join(top, name)):
                os.chmod(os.path.join(top, name), 0o777)
    shutil.rmtree(folder)


def interrupt_reading(command: list[str], fifo: Path, timeout_s: float = 120) -> subprocess.CompletedProcess:
    """Run ``command``, which reads the named pipe ``fifo`` (made here), and press Ctrl-C (SIGINT)
    once it waits on the pipe for text that never comes: an interrupt in the middle of the work,
    not in the interpreter's start-up.

    The signal goes only once the process sleeps with the pipe open (:func:`_asleep_on`), i.e. in
    its read: a SIGINT that came between its open and its read would run Python's handler there and
    leave the read itself waiting for ever (seen once in CI, on a busy machine)."""
    os.mkfifo(fifo)
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + timeout_s

    def wait_for(what: str, ready: Callable[[], bool]) -> None:
        while not ready():
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise AssertionError(f"{command} never {what} {fifo}: {proc.communicate()[1]}")
            time.sleep(0.05)

    writer = None

    def opened() -> bool:
        nonlocal writer
        try:
            writer = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)  # ENXIO until a reader has it open
        except OSError as e:
            if e.errno != errno.ENXIO:
                raise
        return writer is not None

    wait_for("opened", opened)
    try:
        wait_for("waited on", lambda: _asleep_on(proc.pid, fifo))
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=timeout_s)
    finally:
        os.close(writer)
    return subprocess.CompletedProcess(command, proc.returncode, stdout, stderr)


def _asleep_on(pid: int, path: Path) -> bool:
    """Whether process ``pid`` sleeps (state S in /proc) with ``path`` open: blocked in its read of
    a pipe, as nothing else in the tools tested sleeps once the pipe is open. True where /proc is
    missing (not Linux), where the old race remains."""
    proc = Path(f"/proc/{pid}")
    if not proc.is_dir():
        return True
    try:
        state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        fds = {os.readlink(fd) for fd in (proc / "fd").iterdir()}
    except OSError:  # it ended, or an fd closed while listed: look again
        return False
    return state == "S" and os.path.realpath(path) in fds


SHORT_UTTS = ["8226-274371-0020", "5652-19215-0032", "4088-158077-0078", "4406-16882-0033"]  # one per speaker


def dev4spk_flac(shared_data: Path, uid: str) -> Path:
    """The FLAC file of a dev-4spk utterance id (``<speaker>-<chapter>-<n>``)."""
    speaker, chapter, _ = uid.split("-")
    return shared_data / "LibriSpeech" / "dev-4spk" / speaker / chapter / f"{uid}.flac"


@pytest.fixture(scope="session")
def short_utterances(shared_data: Path) -> list[dict]:
    """Manifest entries (``audio_filepath``, ``duration``, ``text``) of four short dev-4spk
    utterances, one per speaker, 2.5-4 s each."""
    import soundfile as sf

    entries = []
    for uid in SHORT_UTTS:
        path = dev4spk_flac(shared_data, uid)
        speaker, chapter, _ = uid.split("-")
        trans = path.parent / f"{speaker}-{chapter}.trans.txt"
        text = dict(line.split(" ", 1) for line in trans.read_text().splitlines())[uid]
        entries.append({"audio_filepath": str(path), "duration": sf.info(path).duration, "text": text})
    return entries


class _RangeHandler(BaseHTTPRequestHandler):
    """Serves ``server.files``; honours ``Range: bytes=N-``; ``server.cut_after`` cuts the next body."""

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        server = self.server
        data = server.files.get(self.path)
        rng = self.headers.get("Range")
        if data is None:
            server.log.append((self.path, rng, 404))
            self.send_error(404)
            return
        start = 0
        if rng and server.honour_range:
            start = int(rng.removeprefix("bytes=").split("-")[0]) + server.range_shift
            if start >= len(data):
                server.log.append((self.path, rng, 416))
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
        body = data[start:]
        status = 206 if start else 200
        server.log.append((self.path, rng, status))
        self.send_response(status)
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        cut, server.cut_after = server.cut_after, None
        self.wfile.write(body if cut is None else body[:cut])
        self.wfile.flush()
        self.close_connection = True  # HTTP/1.0: the socket closes now, mid-body when cut

    def log_message(self, format, *args) -> None:  # keep test output clean
        pass


@pytest.fixture
def http_server():
    """A ThreadingHTTPServer on 127.0.0.1 (port 0) serving ``files`` {path: bytes}.

    ``log`` records (path, Range header, status) per request; ``cut_after`` closes the next
    response after that many body bytes; ``honour_range = False`` ignores Range requests;
    ``range_shift`` answers a range request from that many bytes later (a misbehaving server).
    """
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _RangeHandler)
    httpd.files, httpd.log, httpd.cut_after, httpd.honour_range, httpd.range_shift = {}, [], None, True, 0
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    yield httpd
    httpd.shutdown()
    httpd.server_close()
    thread.join(5)
