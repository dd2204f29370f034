"""A run the older duologue recorded continues with this one.

tests/support/data/old-run-format1/ was recorded by commit 04a48f6 (its README.txt says how):
inputs.jsonl at format 1 (whole prompts), and checkpoints written while the state's turns and
interjections were plain lists, each checkpoint holding the whole list. It is a duet that paused
for the facilitator before turns 2 and 3 and was left at the second pause, after 2 of 4 turns.
Resumed or forked now, its finished turns are not generated again, every prompt is the one the
old turns call for, and inputs.jsonl reads back whole, old rows and new.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from support.duet import A_REPLIES, B_REPLIES, only_run, turn_sections, user
from support.fakeollama import FakeModel, fake_ollama
from support.guard import NOWHERE

from graphs.commands.cli import main
from graphs.records.schema import InputsRecord
from graphs.records.store import RunRecord, RunStore

FIXTURE = Path(__file__).parents[1] / "support" / "data" / "old-run-format1"
RUN_ID = "20261202-061514-duet-fd607d80"
FILES = ["checkpoints.sqlite", "inputs.jsonl", "run.json", "trace.jsonl", "transcript.md"]
OLD_INPUTS = [
    InputsRecord.model_validate_json(line) for line in (FIXTURE / "inputs.jsonl").read_text().splitlines()
]
A_SYSTEM, A_OPENING = OLD_INPUTS[0].messages
B_SYSTEM = OLD_INPUTS[1].messages[0]
REMEMBER = "Facilitator: Remember the echo."  # what the old run's facilitator said before turn 2

THIRD, CLOSING = "A speaks third.", "B closes."
TURN_3_PROMPT = [
    A_SYSTEM,
    A_OPENING,
    {"role": "assistant", "content": A_REPLIES[0]},
    user(REMEMBER),
    user(B_REPLIES[0]),
    user("Facilitator: Be brief now."),
    user("Reply to what was said."),
]
TURN_4_PROMPT = [
    B_SYSTEM,
    user(A_REPLIES[0]),
    user(REMEMBER),
    user("Respond to what was said."),
    {"role": "assistant", "content": B_REPLIES[0]},
    user("Facilitator: Be brief now."),
    user(THIRD),
    user(
        "Close the conversation with a synthesis: where you converge, where you diverge, and what surprised you."
    ),
]
RESUMED_TRANSCRIPT = f"""# Model-to-Model Dialogue: glm-4.7-flash vs qwen3:32b
## 2026-12-02 06:15 UTC
## Topic: An essay.
## Facilitator: duologue (passed messages, did not participate)
## Run: {RUN_ID} · shape duet

---

### Turn 1: glm-4.7-flash — Opening
*(10 tokens, 9.0 tok/s, 0s)*

{A_REPLIES[0]}

---

### Facilitator — before Turn 2

Remember the echo.

---

### Turn 2: qwen3:32b — Response
*(4 tokens, 1.4 tok/s, 0s)*

{B_REPLIES[0]}

---

### Facilitator — before Turn 3

Be brief now.

---

### Turn 3: glm-4.7-flash — Reply
*(3 tokens, 9.0 tok/s, 0s)*

{THIRD}

---

### Turn 4: qwen3:32b — Closing
*(2 tokens, 1.4 tok/s, 0s)*

{CLOSING}

Total: 19 tokens across 4 turns (<1 minute of generation)
"""


def new_models(a_replies: list[str], b_replies: list[str]) -> list[FakeModel | str]:
    """The old run's two models, at its speeds, with replies the old server never gave."""
    return [
        FakeModel("glm-4.7-flash", replies=a_replies, gpu_tok_s=9.0),
        FakeModel("qwen3:32b", replies=b_replies, gpu_tok_s=1.4),
    ]


def inputs_record(run_id: str, turn: int, messages: list[dict[str, str]]) -> InputsRecord:
    speaker, model = ("a", "glm-4.7-flash") if turn % 2 else ("b", "qwen3:32b")
    return InputsRecord(run_id=run_id, turn=turn, speaker=speaker, model=model, messages=messages)


def row_formats(run: RunRecord) -> list[int | None]:
    """Each inputs.jsonl row's format, as written (None: format 1, which has no field for it)."""
    return [json.loads(line).get("format") for line in (run.folder / "inputs.jsonl").read_text().splitlines()]


@pytest.fixture
def old_run(runs_dir: Path) -> RunRecord:
    """The old run, copied into the runs folder as a user who kept it would have it."""
    runs_dir.mkdir(parents=True)
    shutil.copytree(FIXTURE, runs_dir / RUN_ID, ignore=shutil.ignore_patterns("README.txt"))
    return only_run(runs_dir)


def resume(runs_dir: Path, run_id: str, say: str, *host: str) -> int:
    return main(["resume", run_id, "--say", say, *host, "--runs-dir", str(runs_dir)])


def test_the_fixture_is_an_old_run_stopped_after_two_turns(old_run: RunRecord):
    assert sorted(p.name for p in FIXTURE.iterdir()) == ["README.txt", *FILES], "no -wal, -shm or .lock"
    assert (old_run.meta.status, old_run.meta.paused_before_turn) == ("interrupted", 3)
    assert [p.host for p in old_run.meta.participants] == [NOWHERE, NOWHERE]
    assert [r.turn for r in old_run.turn_records] == [1, 2]
    assert row_formats(old_run) == [None, None]
    assert old_run.inputs() == OLD_INPUTS
    assert old_run.inputs() == [
        inputs_record(RUN_ID, 1, [A_SYSTEM, A_OPENING]),
        inputs_record(
            RUN_ID, 2, [B_SYSTEM, user(A_REPLIES[0]), user(REMEMBER), user("Respond to what was said.")]
        ),
    ]


def test_an_old_run_resumes_without_regenerating_its_turns(old_run: RunRecord, runs_dir: Path, capsys):
    with fake_ollama(new_models([THIRD], [CLOSING])) as (server, backend):
        assert resume(runs_dir, RUN_ID, "Be brief now.", "--host", server.url) == 0
        asked = [(r.model, r.messages) for r in backend.chat_requests]
    # Turns 3 and 4 only, each on the whole history the old checkpoints hold.
    assert asked == [("glm-4.7-flash", TURN_3_PROMPT), ("qwen3:32b", TURN_4_PROMPT)]
    run = only_run(runs_dir)
    assert (run.meta.status, run.meta.error, run.meta.paused_before_turn) == ("completed", None, None)
    assert run.transcript() == RESUMED_TRANSCRIPT
    assert [r.turn for r in run.turn_records] == [1, 2, 3, 4]
    # Two rows at format 1 from the old run, two at format 2 from this one; all read whole.
    assert row_formats(run) == [None, None, 2, 2]
    assert run.inputs() == [
        *OLD_INPUTS,
        inputs_record(RUN_ID, 3, TURN_3_PROMPT),
        inputs_record(RUN_ID, 4, TURN_4_PROMPT),
    ]
    assert [i.messages for i in run.inputs()[2:]] == [messages for _, messages in asked]


def test_an_old_run_that_fails_again_after_the_upgrade_resumes_again(
    old_run: RunRecord, runs_dir: Path, capsys
):
    """Its checkpoints are then old ones, new ones, and a failed step's writes on top."""
    with fake_ollama(new_models([THIRD], [CLOSING]), fail_on_call=2) as (server, backend):
        assert resume(runs_dir, RUN_ID, "Be brief now.", "--host", server.url) == 1
        asked = [(r.model, r.messages) for r in backend.chat_requests]
    assert asked == [("glm-4.7-flash", TURN_3_PROMPT), ("qwen3:32b", TURN_4_PROMPT)]
    failed = only_run(runs_dir)
    assert (failed.meta.status, [r.turn for r in failed.turn_records]) == ("failed", [1, 2, 3, 4])
    with fake_ollama(new_models([THIRD], [CLOSING])) as (server, backend):
        assert main(["resume", RUN_ID, "--host", server.url, "--runs-dir", str(runs_dir)]) == 0
        asked = [(r.model, r.messages) for r in backend.chat_requests]
    assert asked == [("qwen3:32b", TURN_4_PROMPT)], "turn 4 alone, on the same history"
    run = only_run(runs_dir)
    assert run.meta.status == "completed"
    assert run.transcript() == RESUMED_TRANSCRIPT
    assert [r.turn for r in run.turn_records] == [1, 2, 3, 4, 4], "the failed attempt stays in the log"
    assert row_formats(run) == [None, None, 2, 2, 2]
    assert run.inputs() == [
        *OLD_INPUTS,
        inputs_record(RUN_ID, 3, TURN_3_PROMPT),
        inputs_record(RUN_ID, 4, TURN_4_PROMPT),  # the failed attempt's prompt
        inputs_record(RUN_ID, 4, TURN_4_PROMPT),
    ]


def test_a_resumed_old_runs_checkpoints_hold_its_four_turns_once(old_run: RunRecord, runs_dir: Path, capsys):
    """Its checkpoints are old ones (the whole list) then new ones (what each step added)."""
    with fake_ollama(new_models([THIRD], [CLOSING, "B closes again."])) as (server, backend):
        assert resume(runs_dir, RUN_ID, "Be brief now.", "--host", server.url) == 0
        capsys.readouterr()
        assert main(["fork", RUN_ID, "--at", "5", "--runs-dir", str(runs_dir)]) == 2
        assert capsys.readouterr().err == (
            f"duologue: error: --at 5: run {RUN_ID} has 4 finished turn(s); fork it at a turn from 1 to 4\n"
        )
        assert main(["fork", RUN_ID, "--at", "3", "--host", server.url, "--runs-dir", str(runs_dir)]) == 0
        asked = [(r.model, r.messages) for r in backend.chat_requests[2:]]
    # The fork's turn 4 hears the same history, from turn 1 and both facilitator's words on.
    assert asked == [("qwen3:32b", TURN_4_PROMPT)]
    fork = next(r for r in RunStore(runs_dir).list() if r.meta.run_id != RUN_ID)
    assert fork.meta.status == "completed"
    assert turn_sections(fork.transcript())[:3] == turn_sections(RESUMED_TRANSCRIPT)[:3]
    assert turn_sections(fork.transcript())[3] == (
        "### Turn 4: qwen3:32b — Closing\n*(3 tokens, 1.4 tok/s, 0s)*\n\nB closes again."
    )
    assert fork.inputs() == [
        *(i.model_copy(update={"run_id": fork.meta.run_id}) for i in OLD_INPUTS),
        inputs_record(fork.meta.run_id, 3, TURN_3_PROMPT),
        inputs_record(fork.meta.run_id, 4, TURN_4_PROMPT),
    ]


def test_an_old_run_forks_at_turn_1(old_run: RunRecord, runs_dir: Path, capsys):
    kept = {name: (old_run.folder / name).read_bytes() for name in FILES if name != "checkpoints.sqlite"}
    with fake_ollama(new_models([THIRD], ["B answers anew.", CLOSING])) as (server, backend):
        # The fork keeps the shape's pauses: before turn 2, then before turn 3.
        assert main(["fork", RUN_ID, "--at", "1", "--host", server.url, "--runs-dir", str(runs_dir)]) == 3
        fork = next(r for r in RunStore(runs_dir).list() if r.meta.run_id != RUN_ID)
        assert resume(runs_dir, fork.meta.run_id, "Say more.") == 3
        assert resume(runs_dir, fork.meta.run_id, "") == 0
        asked = [(r.model, r.messages) for r in backend.chat_requests]
    fork_turn_2 = [
        B_SYSTEM,
        user(A_REPLIES[0]),
        user("Facilitator: Say more."),
        user("Respond to what was said."),
    ]
    fork_turn_3 = [
        A_SYSTEM,
        A_OPENING,
        {"role": "assistant", "content": A_REPLIES[0]},
        user("Facilitator: Say more."),
        user("B answers anew."),
        user("Reply to what was said."),
    ]
    fork_turn_4 = [
        *fork_turn_2,
        {"role": "assistant", "content": "B answers anew."},
        user(THIRD),
        TURN_4_PROMPT[-1],
    ]
    assert asked == [("qwen3:32b", fork_turn_2), ("glm-4.7-flash", fork_turn_3), ("qwen3:32b", fork_turn_4)]
    fork = RunStore(runs_dir).load(fork.meta.run_id)
    assert fork.meta.forked_from == {"run_id": RUN_ID, "at": 1}
    assert (fork.meta.status, [p.host for p in fork.meta.participants]) == ("completed", [server.url] * 2)
    assert [s.splitlines()[0] for s in turn_sections(fork.transcript())] == [
        "### Turn 1: glm-4.7-flash — Opening",
        "### Turn 2: qwen3:32b — Response",
        "### Turn 3: glm-4.7-flash — Reply",
        "### Turn 4: qwen3:32b — Closing",
    ]
    assert turn_sections(fork.transcript())[0] == turn_sections(old_run.transcript())[0]
    assert "Remember the echo." not in fork.transcript(), (
        "the old run's words before turn 2 are not the fork's"
    )
    assert fork.inputs() == [
        OLD_INPUTS[0].model_copy(update={"run_id": fork.meta.run_id}),
        inputs_record(fork.meta.run_id, 2, fork_turn_2),
        inputs_record(fork.meta.run_id, 3, fork_turn_3),
        inputs_record(fork.meta.run_id, 4, fork_turn_4),
    ]
    assert row_formats(fork) == [2, 2, 2, 2]
    # The old run is as it was, and still resumes.
    assert {name: (old_run.folder / name).read_bytes() for name in kept} == kept
    with fake_ollama(new_models([THIRD], [CLOSING])) as (server, backend):
        assert resume(runs_dir, RUN_ID, "Be brief now.", "--host", server.url) == 0
        assert [(r.model, r.messages) for r in backend.chat_requests] == [
            ("glm-4.7-flash", TURN_3_PROMPT),
            ("qwen3:32b", TURN_4_PROMPT),
        ]
    assert RunStore(runs_dir).load(RUN_ID).transcript() == RESUMED_TRANSCRIPT
