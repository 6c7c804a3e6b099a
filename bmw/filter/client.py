"""The OpenAI-compatible client and one chat request.

The `openai` client retries 408/409/429/5xx, timeouts and connection errors `max_retries` times with
exponential backoff (0.5 s doubling, capped at 8 s, jittered) and honours `retry-after`/`retry-after-ms`
up to 120 s. What it does not do is added here and by the caller (`bmw.filter.filter`): a deadline for the
whole of one request (its timeout bounds each read of the socket, so a body sent a byte at a time never ends),
a 200 whose body is no chat completion (an HTML page of a proxy, broken JSON, another schema) as an error of
its own, retrying a malformed answer, and telling configuration errors (401/403/404, which no retry fixes)
from transient ones.
The key is read from the environment only; it is never logged, cached or put in an error message
(the `openai` logger redacts the Authorization header; error bodies, which may echo the key, are dropped).
"""

from __future__ import annotations

import json
import os
import threading
import time
from typing import Any

import httpcore2
import httpx2
import openai
from openai.types.chat import ChatCompletion

from bmw.params import FilterParams

# Errors no retry fixes: a wrong key, a key without access, a wrong base_url or model name.
CONFIG_ERRORS = (openai.AuthenticationError, openai.PermissionDeniedError, openai.NotFoundError)


class MissingApiKeyError(RuntimeError):
    pass


class EndpointConfigError(RuntimeError):
    pass


class BadResponse(Exception):
    """A 200 whose body is no chat completion; the message says what it is instead."""


class _Deadline(threading.local):
    at: float | None = None  # time.monotonic() by which this thread's current request must be done


_DEADLINE = _Deadline()


def _remaining(timeout: float | None) -> float | None:
    if _DEADLINE.at is None:
        return timeout
    left = _DEADLINE.at - time.monotonic()
    if left <= 0:
        raise httpcore2.ReadTimeout("the request's deadline (filter.timeout_s) passed")
    return left if timeout is None else min(timeout, left)


class _DeadlineStream(httpcore2.NetworkStream):
    """A connection whose every read and write waits no longer than the current request's deadline allows."""

    def __init__(self, stream: httpcore2.NetworkStream):
        self._stream = stream

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._stream.read(max_bytes, _remaining(timeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._stream.write(buffer, _remaining(timeout))

    def close(self) -> None:
        self._stream.close()

    def start_tls(self, ssl_context: Any, server_hostname: str | None = None,
                  timeout: float | None = None) -> httpcore2.NetworkStream:
        return _DeadlineStream(self._stream.start_tls(ssl_context, server_hostname, _remaining(timeout)))

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class _DeadlineBackend(httpcore2.SyncBackend):
    def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                    socket_options: Any = None) -> httpcore2.NetworkStream:
        return _DeadlineStream(super().connect_tcp(host, port, _remaining(timeout), local_address, socket_options))

    def connect_unix_socket(self, path: str, timeout: float | None = None,
                            socket_options: Any = None) -> httpcore2.NetworkStream:
        return _DeadlineStream(super().connect_unix_socket(path, _remaining(timeout), socket_options))


class DeadlineTransport(httpx2.HTTPTransport):
    """An HTTP transport that gives each request `seconds` in all: connecting, sending, the headers and the whole
    body. The client reads the body in the thread that sent the request, so the deadline is kept per thread."""

    def __init__(self, seconds: float):
        super().__init__()
        self.seconds = seconds
        self._pool = httpcore2.ConnectionPool(ssl_context=httpx2.create_ssl_context(),
                                              network_backend=_DeadlineBackend())

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        _DEADLINE.at = time.monotonic() + self.seconds
        return super().handle_request(request)


def make_client(params: FilterParams) -> openai.OpenAI:
    key = os.environ.get(params.api_key_env, "")
    if not key:
        raise MissingApiKeyError(
            f"filter.enabled is true but the environment variable {params.api_key_env} (filter.api_key_env) "
            "is not set or empty: export the endpoint's API key in it (any non-empty value for an endpoint "
            "without authentication)"
        )
    return openai.OpenAI(
        base_url=params.base_url, api_key=key, timeout=params.timeout_s, max_retries=params.max_retries,
        http_client=openai.DefaultHttpxClient(transport=DeadlineTransport(params.timeout_s)),
    )


def complete(client: openai.OpenAI, model: str, messages: list[dict[str, str]]) -> str | None:
    """The content of the first choice of one JSON-mode chat completion (None if the endpoint sent none)."""
    try:
        response = client.chat.completions.create(
            model=model, messages=messages, response_format={"type": "json_object"}
        )
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise BadResponse("a body that is not JSON") from None  # declared JSON, is none: the client gives up
    if not isinstance(response, ChatCompletion):  # the client hands on a body it cannot parse as text
        raise BadResponse(f"a body that is not JSON ({type(response).__name__})")
    try:
        if response.choices is None:  # the client builds its objects unvalidated: a missing field reads None
            raise TypeError
        content = response.choices[0].message.content if response.choices else None
    except (AttributeError, TypeError, KeyError):
        raise BadResponse("JSON that is no chat completion") from None
    if content is not None and not isinstance(content, str):
        raise BadResponse("JSON that is no chat completion")
    return content


def describe_error(err: openai.APIError) -> str:
    """A short, key-free description: the status or the kind of failure, never the response body."""
    if isinstance(err, openai.APIStatusError):
        return f"HTTP {err.status_code}"
    if isinstance(err, openai.APITimeoutError):
        return "timeout"
    if isinstance(err, openai.APIConnectionError):
        return "connection error"
    return type(err).__name__


def config_error(err: openai.APIStatusError, params: FilterParams) -> EndpointConfigError:
    return EndpointConfigError(
        f"the endpoint refused the request with {describe_error(err)}: check filter.base_url "
        f"({params.base_url}), filter.model ({params.model!r}) and the key in ${params.api_key_env} "
        "(filter.api_key_env)"
    )
