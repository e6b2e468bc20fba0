"""Fixtures: the ferrokit server under test (one per session), SDK client
pools, and the connection-mode parametrisation (single / dual peer connection).

The server is started with `--config <tmpfile>` holding a `webhook` section
(URLs of the session's WebhookSink, webhook_sink.py) and `prometheus_port`.

Environment:
  FERROKIT_BIN  server binary (run.sh defaults it to <repo>/target/debug/ferrokit)
  FERROKIT_URL  optional: use an already running server at this http(s) URL
                instead of starting one (dev keys devkey/secret assumed)
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Optional

import pytest

from helpers import API_KEY, API_SECRET, ClientPool
from webhook_sink import WebhookSink

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
LOG_PATH = HERE / "server.log"
STARTUP_TIMEOUT = 20.0
SHUTDOWN_TIMEOUT = 10.0
LOG_TAIL_LINES = 60
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")


@dataclass
class Server:
    url: str  # ws://127.0.0.1:<port>
    http_url: str  # http://127.0.0.1:<port>
    api_key: str
    api_secret: str
    proc: Optional[subprocess.Popen] = None
    log_path: Optional[Path] = None
    log_file: Optional[BinaryIO] = None  # read through our own fd
    metrics_url: Optional[str] = None  # http://127.0.0.1:<prometheus_port>/metrics
    webhooks: Optional[WebhookSink] = None  # receives the server's webhooks

    def log_size(self) -> int:
        return os.fstat(self.log_file.fileno()).st_size if self.log_file and not self.log_file.closed else 0

    def log_tail(self, start: int = 0, lines: int = LOG_TAIL_LINES) -> str:
        if self.log_file is None or self.log_file.closed:
            return f"(server log closed; see {self.log_path})"
        size = self.log_size()
        text = os.pread(self.log_file.fileno(), max(size - start, 0), start).decode("utf-8", "replace")
        text = ANSI_ESCAPE.sub("", text)
        return "\n".join(text.splitlines()[-lines:]) or "(empty)"


def _free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker() -> str:
    return os.environ.get("PYTEST_XDIST_WORKER", "gw0")


def _log_note(worker: str) -> Optional[Path]:
    """Where an xdist worker records its server log path, so the controller can
    show that log when the worker crashes."""
    run = os.environ.get("PYTEST_XDIST_TESTRUNUID")
    return Path(tempfile.gettempdir()) / f"ferrokit-interop-{run}-{worker}.logpath" if run else None


def pytest_configure(config):
    # xdist controller: fix the run id now (workers get it as
    # PYTEST_XDIST_TESTRUNUID) so pytest_handlecrashitem can find the notes
    if not hasattr(config, "workerinput") and getattr(config.option, "numprocesses", None):
        if config.option.testrunuid is None:
            config.option.testrunuid = uuid.uuid4().hex
        os.environ["PYTEST_XDIST_TESTRUNUID"] = config.option.testrunuid


def _open_log() -> tuple[Path, BinaryIO]:
    """server.log (server.<worker>.log for a replacement xdist worker), locked
    for this session; if another run holds it, server.<pid>.log, so concurrent
    runs do not clobber each other's log."""
    worker = _worker()
    preferred = LOG_PATH if worker == "gw0" else HERE / f"server.{worker}.log"
    for path in (preferred, HERE / f"server.{os.getpid()}.log"):
        f = open(path, "a+b")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.close()
            continue
        f.truncate(0)
        note = _log_note(worker)
        if note is not None:
            note.write_text(str(path))
        return path, f
    raise RuntimeError("cannot open a server log file")


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as r:
            return r.status == 200 and r.read().strip() == b"OK"
    except (urllib.error.URLError, OSError):
        return False


def _binary() -> str:
    binary = os.environ.get("FERROKIT_BIN", str(REPO / "target/debug/ferrokit"))
    if not (os.path.isfile(binary) and os.access(binary, os.X_OK)):
        pytest.fail(f"server binary not found or not executable: {binary} (set FERROKIT_BIN)", pytrace=False)
    return binary


@pytest.fixture(scope="session")
def ferrokit_bin() -> str:
    """Path of the ferrokit binary (for CLI tests)."""
    return _binary()


@pytest.fixture(scope="session")
def webhook_sink():
    """The session's webhook receiver (started before the server)."""
    sink = WebhookSink().start()
    yield sink
    sink.stop()


def _write_config(sink: WebhookSink, prometheus_port: int) -> Path:
    """The server's config file: webhooks to the sink, Prometheus port."""
    fd, name = tempfile.mkstemp(prefix="ferrokit-interop-", suffix=".yaml")
    with os.fdopen(fd, "w") as f:
        f.write(
            "webhook:\n"
            f"  api_key: {API_KEY}\n"
            f'  urls: ["{sink.url("/hook")}", "{sink.url("/flaky")}"]\n'
            f"prometheus_port: {prometheus_port}\n"
        )
    return Path(name)


@pytest.fixture(scope="session")
def server(webhook_sink):
    """Start `$FERROKIT_BIN serve --dev --config <file>` on free ports, wait
    for GET / -> 200 OK, yield a Server; at the end SIGTERM it and require exit
    code 0."""
    external = os.environ.get("FERROKIT_URL")
    if external:
        http_url = external.rstrip("/")
        yield Server(re.sub(r"^http", "ws", http_url), http_url, API_KEY, API_SECRET)
        return

    binary = _binary()

    port, udp_port = _free_port(socket.SOCK_STREAM), _free_port(socket.SOCK_DGRAM)
    prometheus_port = _free_port(socket.SOCK_STREAM)
    config = _write_config(webhook_sink, prometheus_port)
    cmd = [binary, "serve", "--dev", "--bind", "127.0.0.1", "--port", str(port), "--udp-port", str(udp_port),
           "--config", str(config)]
    env = dict(os.environ)
    env.setdefault("RUST_LOG", "info")
    env.setdefault("NO_COLOR", "1")
    log_path, log_file = _open_log()
    log_file.write(f"$ {' '.join(cmd)}\n{config.read_text()}".encode())
    log_file.flush()
    # the server must not outlive this process, even if the SDK aborts it
    setpriv = shutil.which("setpriv")
    launch = [setpriv, "--pdeathsig", "TERM", "--", *cmd] if setpriv else cmd
    proc = subprocess.Popen(launch, stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
    srv = Server(f"ws://127.0.0.1:{port}", f"http://127.0.0.1:{port}", API_KEY, API_SECRET, proc, log_path, log_file,
                 metrics_url=f"http://127.0.0.1:{prometheus_port}/metrics", webhooks=webhook_sink)

    deadline = time.monotonic() + STARTUP_TIMEOUT
    try:
        while not _http_ok(srv.http_url + "/"):
            if proc.poll() is not None:
                pytest.fail(
                    f"server exited during startup with code {proc.returncode}\n{srv.log_tail()}", pytrace=False
                )
            if time.monotonic() > deadline:
                pytest.fail(
                    f"server did not answer GET / with 200 OK within {STARTUP_TIMEOUT:.0f}s\n{srv.log_tail()}",
                    pytrace=False,
                )
            time.sleep(0.1)
    except BaseException:
        proc.kill()
        proc.wait(5)
        log_file.close()
        config.unlink(missing_ok=True)
        raise

    yield srv

    try:
        if proc.poll() is not None:
            pytest.fail(f"server died during the session (exit code {proc.returncode})\n{srv.log_tail()}", pytrace=False)
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(SHUTDOWN_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
            pytest.fail(f"server did not exit within {SHUTDOWN_TIMEOUT:.0f}s of SIGTERM\n{srv.log_tail()}", pytrace=False)
        if code != 0:
            pytest.fail(f"server exited with code {code} after SIGTERM (expected 0)\n{srv.log_tail()}", pytrace=False)
    finally:
        log_file.close()
        config.unlink(missing_ok=True)
        note = _log_note(_worker())
        if note is not None:
            note.unlink(missing_ok=True)


@pytest.fixture(autouse=True)
def _server_check(request, server):
    """Fail fast if the server died; remember where this test's log starts."""
    if server.proc is not None and server.proc.poll() is not None:
        pytest.fail(f"server is not running (exit code {server.proc.returncode})\n{server.log_tail()}", pytrace=False)
    request.node._server = server
    request.node._server_log_start = server.log_size()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """Attach the server log written during a failed test to its report."""
    report = yield
    srv = getattr(item, "_server", None)
    if report.failed and srv is not None and srv.log_file is not None:
        start = getattr(item, "_server_log_start", 0)
        report.sections.append((f"server log during test (last {LOG_TAIL_LINES} lines)", srv.log_tail(start)))
    return report


@pytest.hookimpl(optionalhook=True)
def pytest_handlecrashitem(crashitem, report, sched):
    """xdist controller: a worker died (e.g. the SDK aborted the process):
    attach the tail of that worker's server log to the crash report."""
    m = re.search(r"worker '([\w-]+)' crashed", str(report.longrepr))
    note = _log_note(m.group(1)) if m else None
    if note is None or not note.exists():
        return
    path = Path(note.read_text())
    note.unlink(missing_ok=True)
    text = ANSI_ESCAPE.sub("", path.read_text("utf-8", "replace")) if path.exists() else "(missing)"
    tail = "\n".join(text.splitlines()[-LOG_TAIL_LINES:])
    report.sections.append((f"server log {path.name} (last {LOG_TAIL_LINES} lines)", tail))


@pytest.fixture
def room_name(request) -> str:
    """A fresh room per test, named after the test."""
    base = re.sub(r"[^A-Za-z0-9_-]+", "-", request.node.name)[:40].strip("-")
    return f"{base}-{uuid.uuid4().hex[:6]}"


@pytest.fixture
async def pool(server):
    """Connects SDK clients (pool.connect(identity, room, single_pc=...));
    disconnects them all at teardown."""
    p = ClientPool(server.url)
    yield p
    await p.close()


@pytest.fixture(params=["single", "dual"])
def pc_mode(request) -> str:
    """Connection mode: 'single' = RoomOptions(single_peer_connection=True),
    /rtc/v1; 'dual' = single_peer_connection=False, /rtc with publisher and
    subscriber peer connections."""
    return request.param


@pytest.fixture
def connect(pool, pc_mode, room_name):
    """connect(identity, room=room_name, **RoomOptions fields) in the test's mode."""

    async def _connect(identity: str, room: Optional[str] = None, **kw):
        return await pool.connect(identity, room or room_name, single_pc=(pc_mode == "single"), **kw)

    return _connect
