"""What duologue asks an OpenAI-compatible server outside a turn: its models (GET /models),
and the API key a participant names; every fault is one line to act on."""

from __future__ import annotations

import os
from collections.abc import Iterable

import httpx
import openai

from graphs.engine.spec import Participant
from graphs.errors import OpenAIServerError
from graphs.ollama.api import tls_context

NO_KEY = "none"
"""Sent as the key when a participant names none: a local server ignores it, and the client
then never looks in $OPENAI_API_KEY, which may hold a key for somewhere else."""


def api_key(participant: Participant) -> str:
    """The participant's key from the variable its api_key_env names, read now and never kept."""
    return key_in(participant.api_key_env, participant.name, str(participant.base_url))


def key_in(variable: str | None, who: str, base_url: str) -> str:
    """The value of $variable (NO_KEY when none is named); one line when it is not set."""
    if variable is None:
        return NO_KEY
    value = os.environ.get(variable)
    if not value:
        raise OpenAIServerError(
            f"{who}: api_key_env names ${variable}, which is not set; "
            f"export {variable}=KEY for the server at {base_url}, or drop api_key_env"
        )
    return value


def server_models(base_url: str, api_key_env: str | None = None, timeout: float = 10.0) -> list[str]:
    """What a server at base_url serves, asked with the key in $api_key_env (for the page, which
    names the variable, never the key)."""
    return served_models(base_url, key_in(api_key_env, base_url, base_url), timeout)


def served_models(base_url: str, key: str = NO_KEY, timeout: float = 10.0) -> list[str]:
    """The model ids a server serves (GET {base_url}/models)."""
    where = f"{base_url}/models"
    try:
        response = httpx.get(
            where, headers={"Authorization": f"Bearer {key}"}, timeout=timeout, verify=tls_context()
        )
    except httpx.TimeoutException:
        raise OpenAIServerError(
            f"the server at {base_url} did not answer /models within {timeout:.0f}s"
        ) from None
    except httpx.TransportError:
        raise OpenAIServerError(unreachable_message(base_url)) from None
    if response.status_code in (401, 403):
        raise OpenAIServerError(
            f"the server at {base_url} refused the API key (/models: HTTP {response.status_code}); "
            "check the variable api_key_env names"
        )
    try:
        data = response.json()
        ids = [str(entry["id"]) for entry in data["data"]]
    except (ValueError, KeyError, TypeError):
        raise OpenAIServerError(
            f"the server at {base_url} does not answer like an OpenAI API "
            f"(/models: HTTP {response.status_code}); base_url usually ends in /v1"
        ) from None
    return ids


def check_models(base_url: str, models: Iterable[str], key: str = NO_KEY) -> list[str]:
    """Fail early when the server is down or does not serve a model; returns what it serves."""
    served = served_models(base_url, key)
    for model in models:
        if model not in served:
            have = ", ".join(served) or "none"
            raise OpenAIServerError(
                f"the server at {base_url} does not serve '{model}' (it serves: {have}); "
                "name one of those, as --model NAME=openai:MODEL@URL"
            )
    return served


def unreachable_message(base_url: str) -> str:
    return f"cannot reach an OpenAI-compatible server at {base_url}; is it running, and is that its address?"


def describe_failure(exc: BaseException, base_url: str) -> str | None:
    """One line for a fault while talking to such a server mid-run, or None if it is not one."""
    if isinstance(exc, openai.APITimeoutError):
        return (
            f"the server at {base_url} stopped answering (--timeout); resume with a longer --timeout SECONDS"
        )
    if isinstance(exc, openai.APIConnectionError):
        return f"lost the connection to the server at {base_url}"
    if isinstance(exc, openai.APIStatusError):
        body = exc.body if isinstance(exc.body, dict) else {}
        said = body.get("message") or exc.message.removeprefix(f"Error code: {exc.status_code} - ")
        return f"the server at {base_url} answered HTTP {exc.status_code}: {said}"
    return None
