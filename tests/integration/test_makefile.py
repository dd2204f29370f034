"""`make setup` (and so `make demo` on a fresh clone): the 5-minute install says what it does.

It used to print nothing while llama-cpp-python compiled, 5 minutes on 2 cores and 22 on a
busy machine, so it looked hung. The recipe runs here as written, with a fake Python whose
venv's pip is slow, and a heartbeat of 1 s rather than 30.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from support import ROOT

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs make")

FAKE_PYTHON = """#!/bin/sh
# `python -c CODE` (reading an extra from pyproject.toml) is the real Python's; `python -m venv DIR`
# makes a venv whose pip is slow at installing, quick at upgrading itself.
case "$1" in -c) exec python3 "$@";; esac
mkdir -p "$3/bin"
cat > "$3/bin/pip" <<'PIP'
#!/bin/sh
case "$*" in *--upgrade*) exit 0;; esac
echo "Obtaining file:///work/main"
sleep 1
echo "Building wheel for llama-cpp-python (pyproject): started"
sleep "$FAKE_PIP_SECONDS"
if [ -n "$FAKE_PIP_FAILS" ]; then echo "ERROR: Failed building wheel for llama-cpp-python"; exit 1; fi
echo "Successfully installed duologue-0.1.0 llama-cpp-python-0.3.16"
PIP
chmod +x "$3/bin/pip"
"""
STEP = (
    "Installing duologue and the embedded model: llama-cpp-python compiles from source "
    "(expected: about 5 minutes on 2 cores, up to 22 on a busy machine; only the first time)"
)
HEARTBEAT = re.compile(r"  \.\.\. 0m(\d+)s so far: (.*)")


def make_setup(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    python = tmp_path / "python"
    python.write_text(FAKE_PYTHON)
    python.chmod(0o755)
    venv = tmp_path / "venv"
    command = ["make", "-s", "-C", str(ROOT), "setup", f"VENV={venv}", f"PYTHON={python}", "HEARTBEAT_S=1"]
    return subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "FAKE_PIP_SECONDS": "3", **env},
    )


def test_the_install_says_what_it_does_and_shows_a_sign_of_life_while_it_does(tmp_path: Path) -> None:
    done = make_setup(tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == STEP
    beats = [HEARTBEAT.fullmatch(line) for line in lines[1:-1]]
    assert all(beats) and len(beats) >= 3, lines
    seconds = [int(beat[1]) for beat in beats if beat]
    assert all(0 < later - earlier <= 2 for earlier, later in zip([0, *seconds], seconds, strict=False)), (
        seconds
    )
    assert "Building wheel for llama-cpp-python (pyproject): started" in [beat[2] for beat in beats if beat]
    assert re.fullmatch(r"  done in 0m\d+s", lines[-1])
    assert (tmp_path / "venv" / ".installed").exists()


def test_a_failed_install_shows_the_end_of_its_log_and_stops(tmp_path: Path) -> None:
    failed = make_setup(tmp_path, FAKE_PIP_SECONDS="1", FAKE_PIP_FAILS="1")
    lines = failed.stdout.splitlines()
    log = Path(lines[-1].rpartition(" ")[2])
    try:
        assert failed.returncode != 0
        assert lines[0] == STEP
        assert lines[-4:-1] == [
            "Obtaining file:///work/main",
            "Building wheel for llama-cpp-python (pyproject): started",
            "ERROR: Failed building wheel for llama-cpp-python",
        ]
        assert re.fullmatch(
            r"Installing duologue and the embedded model: llama-cpp-python compiles from source: "
            r"failed \(exit 1\) after 0m\ds; the whole log is \S+",
            lines[-1],
        )
        assert log.read_text().splitlines() == lines[-4:-1]
        assert not (tmp_path / "venv" / ".installed").exists(), "a failed install is tried again next time"
    finally:
        log.unlink(missing_ok=True)


FAKE_DUOLOGUE = """#!/bin/sh
# duologue, as `make demo` calls it: each call logged; `runs --json` lists the demo's run.
echo "$*" >> "$CALLS"
case "$1 $2" in "runs --json") echo '[{"run_id": "20261202-000000-duet-0a1b2c3d"}]';; esac
"""


def test_the_demo_ends_with_the_analysis_of_the_dialogue_it_held(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / ".installed").touch()
    fake = venv / "bin" / "duologue"
    fake.write_text(FAKE_DUOLOGUE)
    fake.chmod(0o755)
    (venv / "bin" / "python").symlink_to(shutil.which("python3") or "/usr/bin/python3")
    calls = tmp_path / "calls"
    env = {**os.environ, "CALLS": str(calls)}
    command = ["make", "-s", "-C", str(ROOT), "-o", str(venv / ".installed"), "demo", f"VENV={venv}"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 0, done.stderr
    assert calls.read_text().splitlines() == [
        "run duet --embedded --topic-file graphs/samples/essay.md",
        "runs",
        "runs --json",
        "analyze 20261202-000000-duet-0a1b2c3d",
    ]
    assert "What happened between them (duologue analyze RUN_ID):" in done.stdout
