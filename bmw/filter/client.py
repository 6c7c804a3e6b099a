"""The OpenAI-compatible client and one chat request.

The `openai` client retries 408/409/429/5xx, timeouts and connection errors `max_retries` times with
exponential backoff (0.5 s doubling, capped at 8 s, jittered) and honours `retry-after`/`retry-after-ms`
up to 120 s. What it does not do is added by the caller (`bmw.filter.filter`): retrying a malformed answer,
and telling configuration errors (401/403/404, which no retry fixes) from transient ones.
The key is read from the environment only; it is never logged, cached or put in an error message
(the `openai` logger redacts the Authorization header; error bodies, which may echo the key, are dropped).
"""

from __future__ import annotations

import os

import openai

from bmw.params import FilterParams

# Errors no retry fixes: a wrong key, a key without access, a wrong base_url or model name.
CONFIG_ERRORS = (openai.AuthenticationError, openai.PermissionDeniedError, openai.NotFoundError)


class MissingApiKeyError(RuntimeError):
    pass


class EndpointConfigError(RuntimeError):
    pass


def make_client(params: FilterParams) -> openai.OpenAI:
    key = os.environ.get(params.api_key_env, "")
    if not key:
        raise MissingApiKeyError(
            f"filter.enabled is true but the environment variable {params.api_key_env} (filter.api_key_env) "
            "is not set or empty: export the endpoint's API key in it (any non-empty value for an endpoint "
            "without authentication)"
        )
    return openai.OpenAI(
        base_url=params.base_url, api_key=key, timeout=params.timeout_s, max_retries=params.max_retries
    )


def complete(client: openai.OpenAI, model: str, messages: list[dict[str, str]]) -> str | None:
    """The content of the first choice of one JSON-mode chat completion (None if the endpoint sent none)."""
    response = client.chat.completions.create(
        model=model, messages=messages, response_format={"type": "json_object"}
    )
    return response.choices[0].message.content if response.choices else None


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
