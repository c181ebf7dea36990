"""A loopback HTTP server of real files: GET /<name> answers the file's bytes (200), any other path
404; and a loopback proxy that refuses every tunnel (an offline network, as urllib sees it)."""

from __future__ import annotations

import mimetypes
from pathlib import Path

from memegap.testing.server import LoopbackServer, QuietHandler


class StaticFilesHandler(QuietHandler):
    server_version = "StaticFiles/1.0"

    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        path: Path | None = self.server.app.get(self.path.lstrip("/"))
        if path is None:
            self.send_error(404)
            return
        body = path.read_bytes()
        self.send_response(200)
        self.send_header("Content-Type", mimetypes.guess_type(path.name)[0] or "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def static_files_server(files: dict[str, Path]) -> LoopbackServer:
    """`with static_files_server({"a.jpg": path}) as server:` serves path at server.url + "/a.jpg"."""
    return LoopbackServer(StaticFilesHandler, files)


class RefusingProxyHandler(QuietHandler):
    """An HTTP proxy that answers 403 to every CONNECT (https) and GET (http)."""

    def do_CONNECT(self) -> None:  # noqa: N802
        self.send_error(403, "no network here")

    do_GET = do_CONNECT


def refusing_proxy() -> LoopbackServer:
    """Point https_proxy / http_proxy at server.url and every download fails at once, as offline."""
    return LoopbackServer(RefusingProxyHandler, None)
