"""A webhook receiver for the suite: a threaded HTTP server on a free port that
records every POST. Started once per session before the server (its URLs go
into the server's config file).

Paths:
  /hook   always answers 200
  /flaky  answers 500 to the first delivery of each event whose room name
          contains "flaky", 200 to everything else (to see the server retry)
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Optional

FLAKY_MARK = "flaky"


@dataclass
class Delivery:
    """One POST the sink received."""

    path: str
    headers: dict[str, str]  # lower-cased names
    body: bytes
    answered: int  # the status the sink replied with
    at: float  # time.monotonic() of arrival

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    @property
    def json(self) -> dict:
        try:
            return json.loads(self.body)
        except ValueError:
            return {}

    @property
    def event(self) -> str:
        return self.json.get("event", "")

    @property
    def room_name(self) -> str:
        return (self.json.get("room") or {}).get("name", "")

    def describe(self) -> str:
        j = self.json
        who = (j.get("participant") or {}).get("identity", "")
        track = (j.get("track") or {}).get("sid", "")
        return f"{self.path}:{self.answered}:{j.get('event')}({self.room_name} {who} {track}) id={j.get('id')}"


class WebhookSink:
    def __init__(self) -> None:
        self.deliveries: list[Delivery] = []
        self._lock = threading.Lock()
        self._flaky_seen: set[str] = set()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server API)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                status = sink._status_for(self.path, body)
                with sink._lock:
                    sink.deliveries.append(Delivery(
                        self.path, {k.lower(): v for k, v in self.headers.items()}, body, status, time.monotonic()))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="webhook-sink", daemon=True)

    def _status_for(self, path: str, body: bytes) -> int:
        if path != "/flaky":
            return 200
        try:
            event = json.loads(body)
        except ValueError:
            return 200
        if FLAKY_MARK not in (event.get("room") or {}).get("name", ""):
            return 200
        with self._lock:
            first = event.get("id") not in self._flaky_seen
            self._flaky_seen.add(event.get("id"))
        return 500 if first else 200

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def start(self) -> "WebhookSink":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def received(self, pred: Optional[Callable[[Delivery], bool]] = None, path: str = "/hook") -> list[Delivery]:
        with self._lock:
            items = list(self.deliveries)
        return [d for d in items if d.path == path and (pred is None or pred(d))]

    def for_room(self, room: str, path: str = "/hook") -> list[Delivery]:
        return self.received(lambda d: d.room_name == room, path)

    async def wait(self, pred: Callable[[Delivery], bool], *, path: str = "/hook", count: int = 1,
                   timeout: float = 15.0, what: str = "") -> list[Delivery]:
        """Wait (bounded, polling every 50 ms) until `count` deliveries on
        `path` satisfy `pred`; return them."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            hits = self.received(pred, path)
            if len(hits) >= count:
                return hits
            if loop.time() > deadline:
                seen = [d.describe() for d in self.received(None, path)][-20:]
                raise AssertionError(
                    f"webhook: {count} x {what or 'matching delivery'} on {path} not received within "
                    f"{timeout:.0f}s (got {len(hits)}); last deliveries: {seen}")
            await asyncio.sleep(0.05)
