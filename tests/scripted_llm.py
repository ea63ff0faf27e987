"""A small OpenAI-compatible server on 127.0.0.1 that answers from a script, for exact end-to-end tests.

``answer(messages) -> str`` decides each reply; the server reports token usage as whitespace words
and ``finish_reason: stop``. An answer that is a :class:`Raw` is sent as it is instead (an error
status, an error body, a page that is not JSON). Real HTTP, so the job's ``openai`` engine path runs
as it does against a real endpoint.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import NamedTuple


class Raw(NamedTuple):
    status: int
    body: str
    content_type: str = "application/json"


class ScriptedLLM:
    def __init__(self, answer: Callable[[list[dict]], str]):
        self.answer = answer
        self.requests: list[dict] = []
        self.clients: set[tuple[str, int]] = set()  # (host, port) of each connection that sent a request
        handler = self._handler()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def _handler(self):
        scripted = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as vLLM's server and hosted endpoints answer
            disable_nagle_algorithm = True  # headers and body are two writes: Nagle would hold the body 40 ms

            def do_POST(self):  # noqa: N802 - http.server's naming
                payload = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                scripted.requests.append(payload)
                scripted.clients.add(self.client_address)
                text = scripted.answer(payload["messages"])
                prompt = sum(len(m["content"].split()) for m in payload["messages"])
                if not isinstance(text, Raw):
                    text = Raw(200, json.dumps({
                        "choices": [{"message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                        "usage": {"prompt_tokens": prompt, "completion_tokens": len(text.split())}}))
                data = text.body.encode()
                self.send_response(text.status)
                self.send_header("Content-Type", text.content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        return Handler

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
