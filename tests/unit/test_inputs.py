"""What users give duologue, held to one set of rules: shape files, flags, topic files (issue 13).

Each bad input is refused with one line that names it as the user wrote it. The rules live in
graphs/engine/spec.py; these tests call the same functions the CLI and the page call.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from support.records import run_meta, trace_record

from graphs.commands.cli import read_topic
from graphs.commands.doctor import participants_for, too_big_message
from graphs.engine.prompting import template_names
from graphs.engine.spec import (
    MAX_TURNS,
    ModelOptions,
    Participant,
    load_shape,
    parse_shape,
    with_overrides,
)
from graphs.errors import ShapeError
from graphs.ollama.api import ModelFacts
from graphs.ollama.residency import resolve_options
from graphs.records.store import RunRecord

DUET = load_shape("duet")
SHAPE_FILE = "name: x\nparticipants: [{name: a, model: m}, {name: b, model: m}]\norder: [a, b]\n"


def refusal(call, *args, **kwargs) -> str:
    with pytest.raises(ShapeError) as caught:
        call(*args, **kwargs)
    message = str(caught.value)
    assert "\n" not in message
    return message


# -- 6. limits on flags, as strict as in shape files ------------------------------------------


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ([("a", "temperature", "inf")], "--set a.temperature=inf: temperature should be a finite number"),
        ([("a", "temperature", "nan")], "--set a.temperature=nan: temperature should be a finite number"),
        ([("a", "top_p", float("nan"))], "--set a.top_p=.nan: top_p should be a finite number"),
        (
            [("a", "num_ctx", 99999999999999999999)],
            "--set a.num_ctx=99999999999999999999: num_ctx should be at most 16777216",
        ),
        (
            [("b", "num_predict", 2**40)],
            "--set b.num_predict=1099511627776: num_predict should be at most 2147483647",
        ),
        ([("a", "seed", -7)], "--set a.seed=-7: seed should be at least -1"),
        ([("a", "num_ctx", "abc")], "--set a.num_ctx=abc: num_ctx should be a whole number"),
        ([("a", "use_mmap", "sometimes")], "--set a.use_mmap=sometimes: use_mmap should be true or false"),
        ([("b", "min_tok_s", "inf")], "--set b.min_tok_s=inf: min_tok_s should be a finite number"),
    ],
)
def test_a_bad_option_is_named_as_the_flag_the_user_typed(settings, message):
    assert refusal(with_overrides, DUET, {}, settings) == message


def test_options_sent_to_ollama_are_always_json_numbers():
    options = with_overrides(DUET, {}, [("a", "temperature", 1e308), ("a", "num_ctx", 2**24)])
    assert options.participant("a").options.model_dump_json()  # finite, bounded: JSON as is


def test_turns_and_interjections_from_flags_are_held_to_the_shape_files_limits():
    assert refusal(with_overrides, DUET, {}, [], turns=1_000_000_000) == (
        "--turns 1000000000: a dialogue has at most 500 turns, as in a shape file"
    )
    assert refusal(with_overrides, DUET, {}, [], turns=1) == (
        "--turns 1: a dialogue needs at least 2 turns (an opening and a closing)"
    )
    assert refusal(with_overrides, DUET, {}, [], interject=[0]) == (
        "--interject 0: turn 0 is not a turn to pause before; name one from 2 to 4"
    )
    assert refusal(with_overrides, DUET, {}, [], interject=[99]) == (
        "--interject 99: turn 99 is not a turn to pause before; name one from 2 to 4"
    )
    assert refusal(with_overrides, DUET, {}, [], turns=6, interject=[7]) == (
        "--interject 7: turn 7 is not a turn to pause before; name one from 2 to 6"
    )
    shape = with_overrides(DUET, {}, [], turns=MAX_TURNS, interject=[3, MAX_TURNS])
    assert (shape.turns, shape.interject_before) == (MAX_TURNS, [3, MAX_TURNS])


def test_a_shorter_dialogue_than_the_shapes_interjections_is_refused():
    paused = parse_shape(SHAPE_FILE + "turns: 6\ninterject_before: [5]\n", "shape.yaml")
    assert refusal(with_overrides, paused, {}, [], turns=4) == (
        "--turns 4: the shape's interject_before: turn 5 is not a turn to pause before; name one from 2 to 4"
    )


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            "interject_before: [-5, 1000]\n",
            "shape.yaml: interject_before: turn -5 is not a turn to pause before; name one from 2 to 4",
        ),
        (
            "interject_before: [1]\n",
            "shape.yaml: interject_before: turn 1 is not a turn to pause before; name one from 2 to 4",
        ),
        (
            "framing: {system: ../../../etc/passwd}\n",
            "shape.yaml: framing.system: no prompt template '../../../etc/passwd' in prompts/; known: KNOWN",
        ),
        (
            "framing: {closing: /etc/passwd}\n",
            "shape.yaml: framing.closing: no prompt template '/etc/passwd' in prompts/; known: KNOWN",
        ),
        ("turns: 501\n", "shape.yaml: turns: should be at most 500"),
        ("turns: two\n", "shape.yaml: turns: should be a whole number"),
    ],
)
def test_a_shape_file_is_refused_when_it_is_read(extra: str, message: str):
    known = ", ".join(template_names())  # the templates in prompts/ as the test runs
    assert refusal(parse_shape, SHAPE_FILE + extra, "shape.yaml") == message.replace("KNOWN", known)


def test_a_participants_own_system_template_must_be_one_in_prompts():
    text = SHAPE_FILE.replace("{name: b, model: m}", "{name: b, model: m, system: ../x}")
    assert refusal(parse_shape, text, "shape.yaml").startswith(
        "shape.yaml: participants.1.system: no prompt template '../x' in prompts/; known: closing,"
    )
    assert parse_shape(text.replace("../x", "judge_system"), "s").participants[1].system == "judge_system"


def test_doctor_names_the_flag_of_a_bare_model_too():
    assert refusal(participants_for, None, ["qwen3:32b"], [("a", "num_ctx", "abc")]) == (
        "--set a.num_ctx=abc: num_ctx should be a whole number"
    )
    assert refusal(participants_for, None, ["qwen3:32b"], [("a", "temperature", "nan")]) == (
        "--set a.temperature=nan: temperature should be a finite number"
    )


# -- 7. files that are not what they claim ----------------------------------------------------


def test_a_binary_shape_file_is_one_line(tmp_path: Path):
    binary = tmp_path / "shape.yaml"
    binary.write_bytes(b"name: x\n\xff\xfe\x00\x01")
    assert refusal(load_shape, str(binary)) == (
        f"{binary}: not UTF-8 text (byte 9 is 0xff); give a shape file saved as UTF-8"
    )
    nuls = tmp_path / "nuls.yaml"
    nuls.write_bytes(b"name: x\x00\x00\n")
    assert refusal(load_shape, str(nuls)) == (
        f"{nuls}: it holds NUL bytes, so it is not text (UTF-16? save it as UTF-8); give a shape file"
    )


def test_a_shape_that_is_a_directory_or_a_device_says_so(tmp_path: Path):
    assert refusal(load_shape, str(tmp_path)) == f"{tmp_path}: is a directory, not a shape file"
    assert refusal(load_shape, "/dev/zero") == "/dev/zero: is a character device, not a shape file"


def test_a_topic_file_says_what_it_is_when_it_is_no_file(tmp_path: Path):
    assert refusal(read_topic, None, Path("/dev/zero")) == (
        "--topic-file /dev/zero: is a character device, not a text file"
    )
    assert refusal(read_topic, None, tmp_path) == f"--topic-file {tmp_path}: is a directory, not a text file"
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    assert refusal(read_topic, None, fifo) == f"--topic-file {fifo}: is a named pipe, not a text file"
    assert (
        refusal(read_topic, None, tmp_path / "nope.md")
        == f"--topic-file {tmp_path / 'nope.md'}: no such file"
    )


def test_a_topic_that_is_not_text_is_refused(tmp_path: Path):
    nuls = tmp_path / "nuls.md"
    nuls.write_bytes(b"\x00" * 64)
    assert refusal(read_topic, None, nuls) == (
        f"--topic-file {nuls}: it holds NUL bytes, so it is not text (UTF-16? save it as UTF-8); "
        "give a text file"
    )
    utf16 = tmp_path / "utf16.md"
    utf16.write_bytes("An essay.".encode("utf-16-le"))
    assert refusal(read_topic, None, utf16).startswith(f"--topic-file {utf16}: it holds NUL bytes")
    controls = tmp_path / "controls.md"
    controls.write_bytes(b"\x01\x02\x1b\x07\n")
    assert refusal(read_topic, None, controls) == (
        f"--topic-file {controls}: it holds only control characters, no text; give a text file"
    )
    assert refusal(read_topic, "\x01\x02", None) == (
        "--topic: it holds only control characters, no text; give the topic as text"
    )
    essay = tmp_path / "essay.md"
    essay.write_text("# Inherited memory\n\nAn essay, with a tab\tand UTF-8: café.\n")
    assert read_topic(None, essay) == essay.read_text()


# -- 11. defaults for models that think -------------------------------------------------------


def resolved(participant: Participant, thinks: bool, context_length: int | None = 40960) -> ModelOptions:
    facts = ModelFacts("m", context_length, ["completion", "thinking"] if thinks else ["completion"])
    return resolve_options(participant, facts, "An essay.", 4, "http://127.0.0.1:9")


def test_a_thinking_model_gets_room_for_its_thinking_and_the_context_to_hold_it():
    plain = resolved(Participant(name="a", model="glm-4.7-flash"), thinks=False)
    thinking = resolved(Participant(name="b", model="qwen3:32b"), thinks=True)
    # A turn of 1,546 tokens, thinking included (the reference's turn 3), fits; 1024 cut it.
    assert (plain.num_predict, plain.num_ctx, plain.think) == (1024, 6144, None)
    # The turn being generated may take all 4096; the earlier ones are answers only (thinking is
    # never sent back): 512 + 3 (the topic) + 3 x (1024 + 128) + 4096 + 128 = 8195 -> 9216.
    assert (thinking.num_predict, thinking.num_ctx, thinking.think) == (4096, 9216, True)


def test_a_thinking_model_told_not_to_think_or_given_num_predict_keeps_it():
    off = resolved(Participant(name="b", model="qwen3:32b", options={"think": False}), thinks=True)
    assert (off.num_predict, off.num_ctx, off.think) == (1024, 6144, False)
    given = resolved(Participant(name="b", model="qwen3:32b", options={"num_predict": 2048}), thinks=True)
    assert (given.num_predict, given.num_ctx) == (2048, 7168)
    capped = resolved(Participant(name="b", model="qwen3:32b"), thinks=True, context_length=8192)
    assert (capped.num_predict, capped.num_ctx) == (4096, 8192)


def test_a_model_too_big_for_the_card_is_said_in_sizes_and_layers():
    gib = 2**30
    assert too_big_message("b", 999, 42 * gib, 24 * gib, 64) == (
        "needs ~42.0 GB with num_gpu 999, the GPU has ~24.0 GB free: try --set b.num_gpu=36 "
        "(36 of its 64 layers on the GPU, the rest on the CPU) or a smaller quantization"
    )
    assert too_big_message("b", 999, 42 * gib, 24 * gib, None) == (
        "needs ~42.0 GB with num_gpu 999, the GPU has ~24.0 GB free: try --set b.num_gpu=null "
        "(Ollama puts what fits on the GPU, the rest on the CPU) or a smaller quantization"
    )


# -- 14. a resumed run's flags ---------------------------------------------------------------


def test_a_stopped_attempt_that_a_resume_finished_is_no_flag_of_the_run(tmp_path: Path):
    meta = run_meta("r").model_copy(update={"status": "completed"})
    stopped = trace_record("r", 2, 2).model_copy(
        update={"stopped": True, "error": "stopped by the user before the turn finished"}
    )
    failed = trace_record("r", 5, 3).model_copy(update={"error": "ConnectionError: gone"})
    finished = [trace_record("r", seq, turn) for seq, turn in ((1, 1), (3, 2), (6, 3), (7, 4))]
    slow = finished[-1].model_copy(update={"slow": True})
    run = RunRecord(tmp_path, meta, [finished[0], stopped, finished[1], failed, finished[2], slow])
    assert run.flags == ["slow"]
    interrupted = RunRecord(
        tmp_path, meta.model_copy(update={"status": "interrupted"}), [finished[0], stopped]
    )
    assert interrupted.flags == ["stopped"], "while the stop stands, it is the run's last word on turn 2"
