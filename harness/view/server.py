"""Serve a View on 127.0.0.1 (never another interface: the pages show patient images) with the standard library."""

from __future__ import annotations

import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

from harness.view.pages import View

HOST = "127.0.0.1"


def make_server(view: View, port: int = 0) -> ThreadingHTTPServer:
    """A server for `view` on 127.0.0.1:`port` (0: a free port; `server.server_address[1]` says which)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (the standard library's name)
            path = unquote(urlsplit(self.path).path)
            try:
                found = view.get(path)
            except Exception as exc:  # one broken page must not stop the server; the error is shown to the reader
                self._send(HTTPStatus.INTERNAL_SERVER_ERROR, "text/plain; charset=utf-8",
                           f"{type(exc).__name__}: {exc}".encode())
                return
            if found is None:
                self._send(HTTPStatus.NOT_FOUND, "text/plain; charset=utf-8", f"no page {path}".encode())
            else:
                self._send(HTTPStatus.OK, *found)

        def _send(self, status, content_type: str, body: bytes):
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")  # patient images stay out of the browser's disk cache
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format, *args):  # quiet: the terminal shows the address, not every request
            pass

    server = ThreadingHTTPServer((HOST, port), Handler)
    server.daemon_threads = True
    return server


def serve_in_thread(view: View, port: int = 0) -> tuple[ThreadingHTTPServer, threading.Thread]:
    """Start serving in a background thread (tests and benchmarks); `server.shutdown()` stops it."""
    server = make_server(view, port)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return server, thread
