"""A real OpenAI-compatible chat-completions server on 127.0.0.1 for the filter tests.

Its "model" is deterministic code: it deletes boilerplate-looking lines and keeps the chunk, or rejects a chunk
with no prose line. Each request can be scripted: `script(marker, [behaviour, ...])` makes the next requests
whose chunk contains `marker` behave as listed, in order (then "ok"); markers keep it deterministic under
concurrency. Behaviours: ok, fenced (valid JSON in a code fence behind prose), reject, 429, 500, 401, timeout,
malformed, add_sentence, drop_most (keeps the first sentence); bodies that are no chat completion: html (a
200 text/html page), invalid_json, wrong_schema, bad_choices; drip (the whole response, one byte every
`drip_s`), cut (the connection closed halfway through the body); rewrites: reorder (two sentences swapped),
add_word, drop_across_line (a word deleted where the answer breaks its line).
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


def _sentences(text: str) -> list[str]:
    return re.split(r"(?<=[.!?])\s+", text)


def rewrite(text: str, behaviour: str) -> str:
    """The answer text changed as `behaviour` says: each change is one an unfaithful model makes."""
    first, *rest = text.split("\n\n")
    words = first.split()
    if behaviour == "drop_most":
        return _sentences(first)[0]
    if behaviour == "reorder":
        one, two, *more = _sentences(first)
        return "\n\n".join([" ".join([two, one, *more]), *rest])
    if behaviour == "add_word":
        return "\n\n".join([" ".join(words[:4] + ["not"] + words[4:]), *rest])
    if behaviour == "drop_across_line":  # "... the" / "battery ..." with the word between the two lines gone
        return "\n\n".join([" ".join(words[:6]) + "\n" + " ".join(words[7:]), *rest])
    raise ValueError(behaviour)


class LLMServer:
    def __init__(self, timeout_sleep: float = 1.0, drip_s: float = 0.05, delay_s: float = 0.0) -> None:
        self.timeout_sleep = timeout_sleep  # longer than the client's timeout in the tests
        self.drip_s = drip_s
        self.delay_s = delay_s  # before every answer: a run that takes long enough to be killed midway
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

            def _send(self, status: int, body: dict | bytes, headers: dict[str, str] | None = None,
                      content_type: str = "application/json", drip: bool = False, cut: bool = False) -> None:
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                try:
                    if drip:  # within any read timeout, never done: only a deadline on the whole request ends it
                        for i in range(len(data)):
                            self.wfile.write(data[i : i + 1])
                            self.wfile.flush()
                            time.sleep(server.drip_s)
                    else:
                        self.wfile.write(data[: len(data) // 2] if cut else data)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout behaviour)
                    pass
                if cut:
                    self.close_connection = True

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
                time.sleep(server.delay_s)
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
                if behaviour == "html":
                    return self._send(200, b"<html><body>Please log in</body></html>", content_type="text/html")
                if behaviour == "invalid_json":
                    return self._send(200, b'{"id": "chatcmpl-1", "choices": [{"mess')
                if behaviour == "wrong_schema":
                    return self._send(200, {"result": "ok", "data": [1, 2, 3]})
                if behaviour == "bad_choices":
                    return self._send(200, {"id": "x", "object": "chat.completion", "choices": [{"message": None}]})
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
                elif behaviour in ("drop_most", "reorder", "add_word", "drop_across_line"):
                    content = json.dumps({**answer, "text": rewrite(answer["text"], behaviour)})
                self._send(200, {
                    "id": f"chatcmpl-{server.requests}",
                    "object": "chat.completion",
                    "created": 0,
                    "model": body["model"],
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": content}}],
                    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
                }, drip=behaviour == "drip", cut=behaviour == "cut")

        return Handler
