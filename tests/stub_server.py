"""The one http.server stand-in the tests' OpenAI-compatible endpoints share: POSTs on 127.0.0.1, answered in
a thread by a plain function, so each test server holds only what it answers."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Request:
    path: str
    body: bytes
    headers: Any  # http.client.HTTPMessage

    def json(self) -> Any:
        return json.loads(self.body)


# (status, payload) or (status, payload, extra headers); a dict payload is sent as JSON. None: no reply at all
# (a hung server: the client times out).
Reply = tuple[int, Any] | tuple[int, Any, dict[str, str]] | None


class StubServer:
    """`with StubServer(answer) as server:` serves `answer(request)` at `server.base_url`."""

    def __init__(self, answer: Callable[[Request], Reply]):
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler_for(answer))
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}/v1"

    def start(self) -> StubServer:
        self.thread.start()
        return self

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> StubServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


def handler_for(answer: Callable[[Request], Reply]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            reply = answer(Request(self.path, body, self.headers))
            if reply is not None:
                send(self, *reply)

        def log_message(self, *args: object) -> None:
            pass

    return Handler


def send(
    handler: BaseHTTPRequestHandler, status: int, payload: Any, headers: dict[str, str] | None = None
) -> None:
    data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    try:
        handler.send_response(status)
        for name, value in {"content-type": "application/json", **(headers or {})}.items():
            handler.send_header(name, value)
        handler.send_header("content-length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)
    except OSError:
        pass  # the client hung up
