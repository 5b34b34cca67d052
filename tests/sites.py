"""A real HTTP server on 127.0.0.1 for crawl tests, with the faults real sites have.

Built on the standard library's ``ThreadingHTTPServer`` rather than a mock library because the faults
must be honest at the socket level: a body shorter than its Content-Length followed by a closed
connection, or a response that never finishes, are things a framework would tidy up.

A test sets ``site.routes[path]`` to a :class:`Reply`, a list of replies (served in order, the last
one repeating: "429 then success") or a function of the :class:`Hit` (conditional responses). Every
request is recorded in ``site.hits`` with its headers and arrival time, so a test asserts what the
crawler sent and when. Unknown paths get 404.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass(frozen=True)
class Reply:
    status: int = 200
    body: bytes | str = b""
    headers: dict[str, str] = field(default_factory=dict)
    send: int | None = None  # send only this many body bytes (Content-Length stays the full size), then:
    hang: bool = False  # keep the connection open, never finishing the response (else close it)

    @property
    def data(self) -> bytes:
        return self.body.encode("utf-8") if isinstance(self.body, str) else self.body


@dataclass(frozen=True)
class Hit:
    method: str
    path: str
    headers: dict[str, str]  # header names as sent; look them up with :meth:`header`
    time: float  # time.monotonic() when the request arrived

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers.items() if k.lower() == name.lower()), None)


Route = Reply | list[Reply] | Callable[[Hit], Reply]


def html(body: str, status: int = 200, **headers: str) -> Reply:
    return Reply(status, f"<html><body>{body}</body></html>",
                 {"Content-Type": "text/html; charset=utf-8", **headers})


def conditional(body: str, *, etag: str | None = None, last_modified: str | None = None) -> Route:
    """200 with the validators, or 304 when the request sends one back unchanged (If-None-Match wins,
    as in RFC 9110)."""
    validators = {k: v for k, v in (("ETag", etag), ("Last-Modified", last_modified)) if v}

    def reply(hit: Hit) -> Reply:
        if hit.header("If-None-Match") is not None:
            fresh = hit.header("If-None-Match") == etag
        else:
            fresh = last_modified is not None and hit.header("If-Modified-Since") == last_modified
        return Reply(304, b"", validators) if fresh else html(body, **validators)

    return reply


class Site:
    """The server; use as a context manager (the ``site`` fixture does)."""

    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.hits: list[Hit] = []
        self._served: dict[str, int] = {}
        self._lock = threading.Lock()
        self.stopping = threading.Event()  # releases hanging responses at shutdown
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._server.site = self  # type: ignore[attr-defined]
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), name="test-site",
                                        daemon=True)

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    def hits_of(self, path: str) -> list[Hit]:
        with self._lock:
            return [h for h in self.hits if h.path == path]

    def __enter__(self) -> Site:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def _reply(self, hit: Hit) -> Reply:
        with self._lock:
            self.hits.append(hit)
            path = hit.path.split("?", 1)[0]
            route = self.routes.get(path)
            if isinstance(route, list):
                served = self._served.get(path, 0)
                self._served[path] = served + 1
                return route[min(served, len(route) - 1)]
        if route is None:
            return Reply(404, b"not found", {"Content-Type": "text/plain"})
        return route(hit) if callable(route) else route


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as Scrapy's HTTP/1.1 client uses it
    server: ThreadingHTTPServer

    def do_GET(self) -> None:  # noqa: N802 (the name http.server calls)
        site: Site = self.server.site  # type: ignore[attr-defined]
        reply = site._reply(Hit(self.command, self.path, dict(self.headers.items()), time.monotonic()))
        data = reply.data
        self.send_response(reply.status)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        with contextlib.suppress(OSError):  # the client may hang up first (over-size, timeout)
            self.wfile.write(data if reply.send is None else data[: reply.send])
            self.wfile.flush()
            if reply.hang:
                site.stopping.wait()
            if reply.hang or reply.send is not None:
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (overridden signature)
        """Silent: the test reads ``site.hits`` instead."""
