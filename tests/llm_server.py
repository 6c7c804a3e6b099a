"""A real OpenAI-compatible chat-completions server on 127.0.0.1 for the filter tests.

Its "model" is deterministic code: it deletes boilerplate-looking lines and keeps the chunk, or rejects a chunk
with no prose line. Each request can be scripted: `script(marker, [behaviour, ...])` makes the next requests
whose chunk contains `marker` behave as listed, in order (then "ok"); markers keep it deterministic under
concurrency. Behaviours: ok, fenced (valid JSON in a code fence behind prose), reject, 429, 500, 401, timeout,
malformed, add_sentence, drop_most.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

BOILERPLATE = re.compile(
    r"^(BMW Group|Corporate Communications|Media Information|Page \d+|Date .*|Subject .*|Telephone: .*|"
    r"E-mail: .*|Internet: .*)$"
)
CONTACT_BLOCK = "For further information please contact:"
ADDED_SENTENCE = "BMW also announced a flying car for 2027."


def model_answer(chunk: str) -> dict:
    """Keep/reject and delete boilerplate lines and contact blocks, paragraph by paragraph."""
    paragraphs = []
    for para in chunk.split("\n\n"):
        if para.startswith(CONTACT_BLOCK):
            continue
        lines = [ln for ln in para.split("\n") if not BOILERPLATE.match(ln.strip())]
        if lines:
            paragraphs.append("\n".join(lines))
    if not any(len(ln.split()) >= 8 for p in paragraphs for ln in p.split("\n")):
        return {"decision": "reject", "text": "", "reason": "no prose: boilerplate only"}
    return {"decision": "keep", "text": "\n\n".join(paragraphs), "reason": "removed boilerplate lines"}


class LLMServer:
    def __init__(self, timeout_sleep: float = 1.0) -> None:
        self.timeout_sleep = timeout_sleep  # longer than the client's timeout in the tests
        self.requests = 0
        self.bodies: list[dict] = []
        self.auth_headers: list[str] = []
        self._scripts: dict[str, deque[str]] = {}
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def script(self, marker: str, behaviours: list[str]) -> None:
        with self._lock:
            self._scripts[marker] = deque(behaviours)

    def reset_count(self) -> None:
        with self._lock:
            self.requests = 0

    def __enter__(self) -> LLMServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()

    def _next_behaviour(self, chunk: str) -> str:
        with self._lock:
            self.requests += 1
            for marker, queue in self._scripts.items():
                if marker in chunk and queue:
                    return queue.popleft()
        return "ok"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep test output quiet
                pass

            def _send(self, status: int, body: dict, headers: dict[str, str] | None = None) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                try:
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout behaviour)
                    pass

            def _error(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
                self._send(status, {"error": {"message": message, "type": "test", "code": status}}, headers)

            def do_POST(self) -> None:
                if self.path != "/v1/chat/completions":
                    return self._error(404, f"no route {self.path}")
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                chunk = next(m["content"] for m in body["messages"] if m["role"] == "user")
                with server._lock:
                    server.bodies.append(body)
                    server.auth_headers.append(self.headers.get("Authorization", ""))
                behaviour = server._next_behaviour(chunk)
                fast = {"retry-after-ms": "5"}  # server-directed backoff keeps the retry tests fast
                if behaviour == "429":
                    return self._error(429, "rate limited", {"retry-after": "0.01"})
                if behaviour == "500":
                    return self._error(500, "internal error", fast)
                if behaviour == "401":
                    # Real endpoints echo (part of) the key in the body: the client must not pass it on.
                    return self._error(401, f"Incorrect API key provided: {self.headers.get('Authorization')}")
                if behaviour == "timeout":
                    time.sleep(server.timeout_sleep)
                answer = model_answer(chunk)
                content = json.dumps(answer)
                if behaviour == "fenced":
                    content = f"Here is the result:\n```json\n{content}\n```"
                elif behaviour == "malformed":
                    content = 'Sure! {"decision": "keep", "text": '
                elif behaviour == "reject":
                    content = json.dumps({"decision": "reject", "text": "", "reason": "scripted reject"})
                elif behaviour == "add_sentence":
                    content = json.dumps({**answer, "text": answer["text"] + " " + ADDED_SENTENCE})
                elif behaviour == "drop_most":
                    content = json.dumps({**answer, "text": answer["text"][: len(answer["text"]) // 10]})
                self._send(200, {
                    "id": f"chatcmpl-{server.requests}",
                    "object": "chat.completion",
                    "created": 0,
                    "model": body["model"],
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": content}}],
                    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
                })

        return Handler
