"""A local HTTP server for download tests: routes per path, every request's Range header recorded."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    """Answers GET with the server's route for the path; records every request's Range header."""

    def do_GET(self) -> None:
        self.server.ranges.append(self.headers.get("Range"))
        route = self.server.routes.get(self.path)
        if route is None:
            self.send_error(404)
        else:
            route(self)

    def log_message(self, *args) -> None:
        pass


def full(body: bytes) -> Callable[[Handler], None]:
    """200 with the whole body, whatever Range says."""

    def serve(h: Handler) -> None:
        h.send_response(200)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    return serve


def ranged(body: bytes) -> Callable[[Handler], None]:
    """Honours ``Range: bytes=N-`` with 206 (416 past the end), else 200."""

    def serve(h: Handler) -> None:
        spec = h.headers.get("Range")
        if spec is None:
            full(body)(h)
            return
        start = int(spec.removeprefix("bytes=").removesuffix("-"))
        if start >= len(body):
            h.send_error(416)
            return
        h.send_response(206)
        h.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        h.send_header("Content-Length", str(len(body) - start))
        h.end_headers()
        h.wfile.write(body[start:])

    return serve


def cut_off(body: bytes, keep: int) -> Callable[[Handler], None]:
    """Announces the whole body, sends ``keep`` bytes, then closes the connection."""

    def serve(h: Handler) -> None:
        h.send_response(200)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body[:keep])
        h.wfile.flush()
        h.close_connection = True

    return serve


class Site:
    def __init__(self, server: ThreadingHTTPServer) -> None:
        self.server = server

    @property
    def ranges(self) -> list[str | None]:
        return self.server.ranges

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def route(self, path: str, serve: Callable[[Handler], None]) -> str:
        self.server.routes[path] = serve
        return self.url(path)


@contextmanager
def serving() -> Iterator[Site]:
    """A server on a free local port, for as long as the block runs."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.routes = {}
    server.ranges = []
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield Site(server)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
