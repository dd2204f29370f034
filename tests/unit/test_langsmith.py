"""LangSmith settings from the environment, and the key kept out of langsmith's logs."""

from __future__ import annotations

import logging

from graphs.run import langsmith as smith

KEY = "secret-key-value"


def test_settings_come_from_the_environment_as_it_is_now():
    assert smith.settings_from_env({}) is None
    assert smith.settings_from_env({"LANGSMITH_TRACING": "false", "LANGSMITH_API_KEY": KEY}) is None
    settings = smith.settings_from_env({"LANGSMITH_TRACING": "true", "LANGSMITH_API_KEY": KEY})
    assert settings is not None
    assert (settings.endpoint, settings.project) == (smith.DEFAULT_ENDPOINT, "duologue")
    assert KEY not in repr(settings)
    legacy = smith.settings_from_env(
        {
            "LANGCHAIN_TRACING_V2": "true",
            "LANGCHAIN_API_KEY": KEY,
            "LANGCHAIN_ENDPOINT": "http://127.0.0.1:1/",
        }
    )
    assert legacy is not None and legacy.endpoint == "http://127.0.0.1:1"


def test_log_records_are_redacted(caplog):
    smith.protect_secret("short7!")  # short keys are printed nearly whole by langsmith's mask
    caplog.set_level(logging.DEBUG)
    log = logging.getLogger("langsmith.client")
    log.warning("failed\nAPI Key: %s", smith.masked("short7!"))
    log.debug("header x-api-key=%s", "short7!")
    try:
        raise ValueError("key short7! rejected")
    except ValueError:
        log.exception("trouble")
    assert "short7" not in caplog.text and "[redacted]" in caplog.text
