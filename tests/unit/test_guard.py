"""The guard against a real Ollama: a test that connects to this machine's port 11434 fails, by name."""

from __future__ import annotations

import os

import pytest
from support.guard import NOWHERE, OllamaGuard, is_real_ollama

pytest_plugins = ["pytester"]

DIALLING = """
import errno
import socket
import threading

import pytest


def test_swallows_the_refusal():
    try:
        socket.create_connection(("127.0.0.1", 11434), timeout=1).close()
    except OSError:
        pass  # as duologue does, saying it cannot reach Ollama


def test_dials_by_name_from_a_thread():
    def dial():
        with socket.socket() as sock:
            try:
                sock.connect(("localhost", 11434))
            except OSError:
                pass

    worker = threading.Thread(target=dial)
    worker.start()
    worker.join()


@pytest.fixture
def probe():
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", 11434))


def test_dials_in_a_fixture(probe):
    assert probe == errno.ECONNREFUSED


def test_dials_nothing():
    pass
"""


def test_a_test_that_dials_a_real_ollama_fails_and_is_named(pytester: pytest.Pytester):
    pytester.makepyfile(test_dialling=DIALLING)
    recorder = pytester.inline_run("-p", "no:cacheprovider", plugins=[OllamaGuard()])
    reports = recorder.getreports("pytest_runtest_logreport")
    assert [(r.nodeid, r.when, r.outcome) for r in reports if r.when == "call" or r.failed] == [
        ("test_dialling.py::test_swallows_the_refusal", "call", "failed"),
        ("test_dialling.py::test_dials_by_name_from_a_thread", "call", "failed"),
        ("test_dialling.py::test_dials_in_a_fixture", "setup", "failed"),
        ("test_dialling.py::test_dials_nothing", "call", "passed"),
    ]
    advice = (
        "tests use the Ollama-protocol test server (support.fakeollama) or the embedded one, on a free port"
    )
    assert [r.longreprtext for r in reports if r.failed] == [
        f"test_dialling.py::test_swallows_the_refusal dialled a real Ollama at 127.0.0.1:11434 (in call); {advice}",
        f"test_dialling.py::test_dials_by_name_from_a_thread dialled a real Ollama at localhost:11434 (in call); {advice}",
        f"test_dialling.py::test_dials_in_a_fixture dialled a real Ollama at 127.0.0.1:11434 (in setup); {advice}",
    ]


def test_the_guard_knows_this_machines_ollama_by_any_name():
    addresses = [
        ("127.0.0.1", 11434),
        ("localhost", 11434),
        ("::1", 11434, 0, 0),
        ("::ffff:127.0.0.1", 11434, 0, 0),
        ("127.0.1.1", 11434),
        ("0.0.0.0", 11434),
        ("127.0.0.1", 9),
        ("192.0.2.7", 11434),  # another machine's Ollama is not this one's
        "/tmp/ollama.sock",
    ]
    assert {address: is_real_ollama(address) for address in addresses} == {
        ("127.0.0.1", 11434): True,
        ("localhost", 11434): True,
        ("::1", 11434, 0, 0): True,
        ("::ffff:127.0.0.1", 11434, 0, 0): True,
        ("127.0.1.1", 11434): True,
        ("0.0.0.0", 11434): True,
        ("127.0.0.1", 9): False,
        ("192.0.2.7", 11434): False,
        "/tmp/ollama.sock": False,
    }


def test_processes_the_tests_start_find_no_ollama_by_default():
    """They inherit OLLAMA_HOST: a run without --host fails at once instead of reaching a real Ollama."""
    assert os.environ["OLLAMA_HOST"] == NOWHERE == "http://127.0.0.1:9"
