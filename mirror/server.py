"""Serve the mirror site over real HTTP on 127.0.0.1, with injectable faults for crawler tests.

`bmw mirror serve [--port N]` serves it for browsing by hand.
"""

from __future__ import annotations

import argparse
import collections
import json
import logging
import threading
import time
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator, Union

from mirror import SITE_DIR

log = logging.getLogger(__name__)
TIMEOUT_HOLD_S = 120.0  # a "timeout" fault holds the request this long (or until shutdown): past any client timeout


@dataclass(frozen=True)
class Fault:
    """One scripted response: `status`, `body` (None: the route's own, or a short text for a status without one),
    `content_type` (None: the route's), extra `headers`; `cut` sends only that many bytes of the declared body and
    closes the connection; `length: False` sends no Content-Length (the body ends when the connection closes)."""

    status: int = 200
    body: bytes | None = None
    content_type: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    cut: int | None = None
    length: bool = True


FaultSpec = Union[int, str, Fault]  # an HTTP status, "timeout", or a Fault


class MirrorServer:
    """A running mirror: `url` is "http://127.0.0.1:<port>", `hits` counts requests per path (with query)."""

    def __init__(self, site_dir: Path | None = None, faults: dict[str, list[FaultSpec]] | None = None,
                 delay_s: float = 0.0, port: int = 0) -> None:
        site_dir = Path(site_dir) if site_dir is not None else SITE_DIR
        routes_file = site_dir / "routes.json"
        if not routes_file.is_file():
            raise FileNotFoundError(f"{routes_file}: no routes.json; build the site with bmw mirror build")
        if delay_s < 0:
            raise ValueError(f"delay_s must be >= 0, got {delay_s}")
        routes = json.loads(routes_file.read_text(encoding="utf-8"))
        # the whole site is small: hold it in memory so requests never touch the disk
        self._pages = {path: (r["status"], r["type"], (site_dir / r["file"]).read_bytes())
                       for path, r in routes.items()}
        self._faults = {path: deque(_check_fault(path, f) for f in queue) for path, queue in (faults or {}).items()}
        self._delay_s = delay_s
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self.hits: collections.Counter[str] = collections.Counter()
        self.requests: list[tuple[float, str]] = []  # (time.monotonic(), path) of every request, in order
        self._httpd = ThreadingHTTPServer(("127.0.0.1", port), self._handler_class())
        self._httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="mirror-server", daemon=True)

    def start(self) -> "MirrorServer":
        self._thread.start()
        log.info("mirror serving %d routes at %s", len(self._pages), self.url)
        return self

    def stop(self) -> None:
        self._stopping.set()  # releases requests held by delays and "timeout" faults
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()

    def _respond(self, handler: BaseHTTPRequestHandler, head_only: bool) -> None:
        path = handler.path
        with self._lock:
            self.hits[path] += 1
            self.requests.append((time.monotonic(), path))
            queue = self._faults.get(path)
            fault = queue.popleft() if queue else None
        if self._delay_s and self._stopping.wait(self._delay_s):
            return
        if fault == "timeout":
            self._stopping.wait(TIMEOUT_HOLD_S)
            handler.close_connection = True
            return
        status, ctype, body = self._pages.get(path, (404, "text/plain; charset=utf-8", b"not found\n"))
        fault = Fault(fault) if isinstance(fault, int) else fault or Fault(status)
        if fault.status != status and fault.body is None:
            body, ctype = f"injected fault {fault.status}\n".encode(), "text/plain; charset=utf-8"
        body, ctype = fault.body if fault.body is not None else body, fault.content_type or ctype
        handler.send_response(fault.status)
        handler.send_header("Content-Type", ctype)
        if fault.length:
            handler.send_header("Content-Length", str(len(body)))
        for name, value in fault.headers.items():
            handler.send_header(name, value)
        if fault.cut is not None or not fault.length:
            handler.send_header("Connection", "close")
            handler.close_connection = True
        handler.end_headers()
        if not head_only:
            handler.wfile.write(body if fault.cut is None else body[: fault.cut])

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            server_version = "MirrorServer/1.0"

            def do_GET(self) -> None:  # noqa: N802
                server._respond(self, head_only=False)

            def do_HEAD(self) -> None:  # noqa: N802
                server._respond(self, head_only=True)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                log.debug("%s " + format, self.address_string(), *args)

        return Handler


def _check_fault(path: str, fault: FaultSpec) -> FaultSpec:
    status = fault.status if isinstance(fault, Fault) else fault
    if fault == "timeout" or (isinstance(status, int) and not isinstance(status, bool) and 100 <= status <= 599):
        return fault
    raise ValueError(f"faults[{path!r}]: {fault!r} is neither an HTTP status (100-599), 'timeout' nor a Fault")


@contextmanager
def serve_site(site_dir: Path | None = None, faults: dict[str, list[FaultSpec]] | None = None,
               delay_s: float = 0.0) -> Iterator[MirrorServer]:
    """Serve the mirror on 127.0.0.1 (ephemeral port) for the duration of the block."""
    server = MirrorServer(site_dir, faults, delay_s).start()
    try:
        yield server
    finally:
        server.stop()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="bmw mirror serve", description="Serve the bundled press-site mirror on 127.0.0.1.")
    ap.add_argument("--port", type=int, default=8080)
    ap.add_argument("--site", type=Path, default=None, help="a site folder (default: the bundled one)")
    ap.add_argument("--delay", type=float, default=0.0, help="seconds added to every response")
    ap.add_argument("--debug", action="store_true", help="log every request")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    server = MirrorServer(args.site, delay_s=args.delay, port=args.port).start()
    print(f"serving {server.url}/global/article/overview  (Ctrl-C to stop)", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


if __name__ == "__main__":
    main()
