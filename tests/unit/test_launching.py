"""The launch page's rules that are not layout: the models chosen by default, what /api/ps tells of
a model's fit on the GPU, the doctor's verdict, and the page's words for the CLI's flags."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import httpx
import pytest

from graphs import DoctorReport, DuologueError, Participant, Pulled, Resident, load_shape, with_overrides
from graphs.commands.doctor import HostCheck, ModelCheck, too_big_message
from graphs.ollama import api
from graphs.ollama.residency import GpuEstimate, estimate_gpu, resolve_options
from graphs.ui.launching import Choice, default_choices, gpu_fit, in_page_words, verdict

HOST = "http://127.0.0.1:1"
OTHER = "http://127.0.0.1:2"
EMBEDDED = [Choice("smollm2:135m", None), Choice("smollm2:135m-warm", None)]
GB = 2**30


def duet(a: str = "smollm2:135m", b: str = "smollm2:135m-warm") -> list[Participant]:
    return list(with_overrides(load_shape("duet"), {"a": a, "b": b}, []).participants)


def offered(*models: str, host: str = HOST) -> list[Choice]:
    """As the page offers them: the host's models (the most recent first), then the embedded ones."""
    return [Choice(model, host) for model in models] + EMBEDDED


# ---- the defaults -----------------------------------------------------------------------------


def test_a_participant_gets_its_shapes_model_when_the_host_has_it_latest_or_not():
    choices = offered("qwen3:32b", "glm-4.7-flash:latest", "gemma3:12b")
    chosen = default_choices(duet("glm-4.7-flash", "gemma3:12b"), {"a": choices, "b": choices})
    assert chosen == {"a": Choice("glm-4.7-flash:latest", HOST), "b": Choice("gemma3:12b", HOST)}


def test_without_the_shapes_models_the_hosts_most_recent_go_first_one_each():
    choices = offered("qwen3:32b", "glm-4.7-flash", "gemma3:12b")
    chosen = default_choices(duet(), {"a": choices, "b": choices})
    assert chosen == {"a": Choice("qwen3:32b", HOST), "b": Choice("glm-4.7-flash", HOST)}


def test_the_other_participant_gets_a_model_the_first_does_not_have():
    choices = offered("qwen3:32b", "glm-4.7-flash")
    chosen = default_choices(duet("smollm2:135m", "qwen3:32b"), {"a": choices, "b": choices})
    assert chosen == {"a": Choice("glm-4.7-flash", HOST), "b": Choice("qwen3:32b", HOST)}


def test_a_host_with_one_model_gives_it_to_both():
    choices = offered("qwen3:32b")
    chosen = default_choices(duet(), {"a": choices, "b": choices})
    assert chosen == {"a": Choice("qwen3:32b", HOST), "b": Choice("qwen3:32b", HOST)}


def test_participants_on_different_hosts_take_each_hosts_most_recent():
    chosen = default_choices(duet(), {"a": offered("qwen3:32b"), "b": offered("qwen3:32b", host=OTHER)})
    assert chosen == {"a": Choice("qwen3:32b", HOST), "b": Choice("qwen3:32b", OTHER)}


def test_the_embedded_model_only_when_the_host_has_none():
    chosen = default_choices(duet("smollm2:135m-warm", "qwen3:32b"), {"a": EMBEDDED, "b": EMBEDDED})
    assert chosen == {"a": Choice("smollm2:135m-warm", None), "b": Choice("smollm2:135m", None)}
    # The host's own smollm2 is the shape's model on the host, before the embedded one of that name.
    choices = offered("smollm2:135m")
    assert default_choices(duet(), {"a": choices, "b": choices}) == {
        "a": Choice("smollm2:135m", HOST),
        "b": Choice("smollm2:135m", HOST),
    }


# ---- what /api/ps tells of the GPU --------------------------------------------------------------


def resident(name: str, size: int, size_vram: int) -> Resident:
    return Resident(name, size, size_vram, context_length=4096)


@pytest.mark.parametrize(
    ("residents", "estimate", "fits"),
    [
        ([], GpuEstimate(shown=False), [None, None, None]),
        ([resident("m", 2 * GB, 0)], GpuEstimate(shown=False), [None, None, None]),  # a CPU-only host
        ([resident("m", 6 * GB, 6 * GB)], GpuEstimate(True, 6 * GB, False), [True, True, None]),
        ([resident("m", 20 * GB, 8 * GB)], GpuEstimate(True, 8 * GB, True), [True, True, False]),
    ],
)
def test_the_gpu_holds_at_least_what_it_has_shown_and_about_that_once_full(residents, estimate, fits):
    assert estimate_gpu(residents) == estimate
    assert [estimate.fits(size) for size in (1 * GB, 6 * GB, 12 * GB)] == fits


PULLED = {
    HOST: [
        Pulled("qwen3:32b", 20 * GB, datetime(2026, 4, 1, tzinfo=UTC)),
        Pulled("glm-4.7-flash", 5 * GB, None),
        Pulled("tiny:1b", None, None),
    ]
}


def test_no_gpu_shown_says_unknown_with_the_size():
    picked = {"a": Choice("qwen3:32b", HOST), "b": Choice("glm-4.7-flash", HOST)}
    assert gpu_fit("a", picked, PULLED, {HOST: []}) == (
        "20.0 GB on disk (its context adds to that once loaded). Fits the GPU alone or together with "
        "glm-4.7-flash: unknown, the host has shown no GPU (no model sits in its VRAM now)."
    )
    assert "unknown, the host has shown no GPU" in gpu_fit("a", picked, PULLED, {HOST: None})


def test_a_spilled_model_shows_what_fits_alone_and_together():
    picked = {"a": Choice("qwen3:32b", HOST), "b": Choice("glm-4.7-flash", HOST)}
    loaded = {HOST: [resident("qwen3:32b", 21 * GB, 8 * GB)]}  # an 8 GB card, full
    assert gpu_fit("a", picked, PULLED, loaded) == (
        "21.0 GB loaded now, with its context (62%/38% CPU/GPU). Does not fit the GPU alone: 21.0 GB, the "
        "GPU holds about 8.0 GB; part would run on the CPU. Does not fit the GPU together with "
        "glm-4.7-flash: 26.0 GB, the GPU holds about 8.0 GB; part would run on the CPU."
    )
    assert gpu_fit("b", picked, PULLED, loaded) == (
        "5.0 GB on disk (its context adds to that once loaded). Fits the GPU alone (5.0 GB; the GPU "
        "holds about 8.0 GB). Does not fit the GPU together with qwen3:32b: 26.0 GB, the GPU holds "
        "about 8.0 GB; part would run on the CPU."
    )


def test_a_gpu_not_seen_full_fits_what_it_has_held_and_cannot_tell_beyond():
    picked = {"a": Choice("glm-4.7-flash", HOST), "b": Choice("glm-4.7-flash", HOST)}
    loaded = {HOST: [resident("other:7b", 6 * GB, 6 * GB)]}
    assert gpu_fit("a", picked, PULLED, loaded) == (  # the same model twice is loaded once
        "5.0 GB on disk (its context adds to that once loaded). Fits the GPU alone (5.0 GB; the GPU "
        "holds at least 6.0 GB)."
    )
    picked = {"a": Choice("qwen3:32b", HOST), "b": Choice("tiny:1b", HOST)}
    assert gpu_fit("a", picked, PULLED, loaded) == (
        "20.0 GB on disk (its context adds to that once loaded). Fits the GPU alone: unknown (20.0 GB; "
        "the GPU has shown it holds at least 6.0 GB). Together with tiny:1b: unknown (a size is unknown)."
    )
    assert gpu_fit("b", picked, PULLED, loaded).startswith("Size unknown (the host does not say). ")


def test_models_on_other_hosts_or_the_embedded_server_are_not_together():
    picked = {"a": Choice("glm-4.7-flash", HOST), "b": Choice("smollm2:135m", None)}
    loaded = {HOST: [resident("glm-4.7-flash", 5 * GB, 5 * GB)]}
    assert gpu_fit("a", picked, PULLED, loaded) == (
        "5.0 GB loaded now, with its context (100% GPU). Fits the GPU alone (5.0 GB; the GPU holds at "
        "least 5.0 GB)."
    )
    assert gpu_fit("b", picked, PULLED, loaded) == (
        "Runs on this machine's CPU (the embedded server): no GPU to fit."
    )


# ---- the doctor's verdict ------------------------------------------------------------------------


def check(**fields) -> ModelCheck:
    return ModelCheck("a", "qwen3:32b", HOST, present=True, **fields)


@pytest.mark.parametrize(
    ("report", "kind", "line"),
    [
        (
            DoctorReport([HostCheck(HOST, True)], [check(gpu_fraction=1.0, processor="100% GPU")]),
            "success",
            "Every model is there and runs as required.",
        ),
        (
            DoctorReport(
                [HostCheck(HOST, True)],
                [check(gpu_fraction=0.4, processor="60%/40% CPU/GPU", context_length=8192)],
            ),
            "warning",
            "A run would go, but: a (qwen3:32b) would run 60% on the CPU (60%/40% CPU/GPU) even loaded alone",
        ),
        (
            DoctorReport(
                [HostCheck(HOST, True)],
                [check(gpu_fraction=0.4, processor="60%/40% CPU/GPU", context_length=8192, require_gpu=True)],
            ),
            "error",
            "A run would fail or stop: a (qwen3:32b) would run 60% on the CPU (60%/40% CPU/GPU) even loaded "
            "alone; try a smaller context (num_ctx 4096 for a) or OLLAMA_MAX_LOADED_MODELS=1 on the server",
        ),
        (
            DoctorReport([HostCheck(HOST, error="cannot reach Ollama")], [check()]),
            "error",
            f"A run would fail or stop: {HOST}: cannot reach Ollama",
        ),
    ],
)
def test_the_doctors_exit_meaning_is_success_warning_or_error(report, kind, line):
    assert verdict(report) == (kind, line)


# ---- the page's words ------------------------------------------------------------------------------


def raised(action) -> str:
    with pytest.raises(DuologueError) as caught:
        action()
    return str(caught.value)


FLAG = re.compile(r"--[a-z]")


def sources() -> list[str]:
    """Messages the launch path can show, from where they are made."""
    shape = load_shape("duet")
    thinker = Participant(name="a", model="m", options={"think": True})
    doctor_cpu = DoctorReport(
        [HostCheck(HOST, True)],
        [check(gpu_fraction=0.5, processor="50%/50% CPU/GPU", context_length=8192, require_gpu=True)],
    )
    return [
        raised(lambda: with_overrides(shape, {}, [("a", "num_ctx", "abc")])),
        raised(lambda: with_overrides(shape, {}, [("a", "colour", "red")])),
        raised(lambda: with_overrides(shape, {"a": ""}, [])),
        raised(lambda: resolve_options(thinker, api.ModelFacts("m", 4096, []), "t", 4, HOST)),
        api.unreachable_message(HOST),
        api.describe_failure(httpx.ReadTimeout("slow"), HOST) or "",
        too_big_message("a", 999, 40 * GB, 20 * GB, 48),
        too_big_message("a", None, 40 * GB, 0, None),
        *doctor_cpu.problems,
    ]


@pytest.mark.parametrize("index", range(len(sources())))
def test_messages_name_the_pages_fields_not_the_clis_flags(index):
    message = sources()[index]
    assert FLAG.search(message), f"the source no longer names a flag; drop it here: {message}"
    assert not FLAG.search(in_page_words(message)), in_page_words(message)


def test_the_pages_words_for_each_flag():
    first, unknown, _empty, thinks, unreachable = sources()[:5]
    assert [in_page_words(message) for message in (first, unknown, thinks, unreachable)] == [
        "num_ctx abc for a: num_ctx should be a whole number",
        "a's colour: unknown key 'colour'; known keys: " + unknown.split("known keys: ")[1],
        f"a: model 'm' at {HOST} does not think (its capabilities: none); drop think from its options "
        "(think set to model's default for a)",
        f"cannot reach Ollama at {HOST}; start it with `ollama serve`, give a running server's address "
        "as the Ollama host, or choose an embedded model",
    ]
    assert in_page_words("try --set a.num_gpu=20 (20 of its 48 layers) or --residency exclusive") == (
        "try num_gpu 20 for a (20 of its 48 layers) or Residency policy exclusive"
    )
    assert in_page_words(
        "or leave out --strict-context, or --no-require-gpu to run it on the CPU anyway"
    ) == ("or untick Stop on a truncated prompt, or Require the GPU: no, to run it on the CPU anyway")
