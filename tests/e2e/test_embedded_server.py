"""The embedded server with the real SmolLM2 model, checked through the official `ollama` client.

The client is an independent implementation of Ollama's API, so these tests catch protocol
drift that tests written against our own server code would share. Greedy decoding
(temperature 0) keeps the answers, and so the token counts, reproducible.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import httpx
import ollama
import pytest
from support.fakeollama import record_final_chunks

from graphs.embedded.llama_backend import EmbeddedUnavailable
from graphs.embedded.protocol import OllamaServer
from graphs.embedded.serve import start_embedded

pytest.importorskip("llama_cpp", reason="needs the 'embedded' extra")
pytestmark = pytest.mark.embedded

COOL, WARM = "smollm2:135m", "smollm2:135m-warm"
GREEDY = {"temperature": 0, "seed": 1}


@pytest.fixture(scope="module")
def server() -> Iterator[OllamaServer]:
    try:
        server = start_embedded()
    except EmbeddedUnavailable as exc:  # llama_cpp is there but the model wheel is not
        pytest.skip(str(exc))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def url(server: OllamaServer) -> str:
    return server.url


@pytest.fixture
def client(url: str) -> Iterator[ollama.Client]:
    with ollama.Client(host=url, timeout=300) as client:
        yield client


def ask(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def unload_all(client: ollama.Client) -> None:
    for name in (COOL, WARM):
        client.chat(model=name, messages=[], keep_alive=0)


def test_streams_real_tokens_until_num_predict(client: ollama.Client) -> None:
    chunks = list(
        client.chat(
            model=COOL,
            messages=ask("Name three colours."),
            options={**GREEDY, "num_predict": 8},
            stream=True,
        )
    )
    *pieces, final = chunks
    assert all(not chunk.done for chunk in pieces) and final.done
    text = "".join(chunk.message.content for chunk in pieces)
    assert text.strip()
    assert final.done_reason == "length"
    assert final.eval_count == 8 == len(pieces)  # one streamed piece per token
    assert final.prompt_eval_count > 0
    for duration in ("total_duration", "prompt_eval_duration", "eval_duration"):
        assert getattr(final, duration) > 0
    assert final.total_duration > final.eval_duration + final.prompt_eval_duration


def test_whole_answer_ends_at_end_of_turn(client: ollama.Client) -> None:
    response = client.chat(
        model=WARM,
        messages=ask("Reply with the single word: yes"),
        options={**GREEDY, "num_predict": 40},
        stream=False,
    )
    assert response.done_reason == "stop"
    assert response.message.content.strip()
    assert "<|im_end|>" not in response.message.content
    assert 0 < response.eval_count < 40


def test_stop_string_ends_the_answer_without_showing_it(client: ollama.Client) -> None:
    response = client.chat(
        model=COOL,
        messages=ask("List the days of the week, one per line."),
        options={**GREEDY, "num_predict": 40, "stop": ["Wednesday"]},
    )
    assert response.done_reason == "stop"
    assert "Tuesday" in response.message.content
    assert "Wed" not in response.message.content


def test_second_turn_reuses_the_cached_prompt(client: ollama.Client, url: str) -> None:
    unload_all(client)
    system = {
        "role": "system",
        "content": "You are one side of a friendly debate about cities and the countryside. "
        "Answer in one short sentence, then ask your partner a question in return. " * 3,
    }
    first = [system, *ask("Is life better in a city?")]
    options = {**GREEDY, "num_predict": 24}
    turn1 = client.chat(model=WARM, messages=first, options=options)
    second = [
        *first,
        {"role": "assistant", "content": turn1.message.content},
        *ask("Why do you think so?"),
    ]
    # Raw JSON: the ollama client (0.6.3) has no field for prompt_eval_cached_count yet.
    body = {"model": WARM, "messages": second, "options": options, "stream": False}
    turn2 = httpx.post(f"{url}/api/chat", json=body, timeout=300).json()
    cold = httpx.post(f"{url}/api/chat", json=body | {"model": COOL}, timeout=300).json()

    assert turn1.prompt_eval_count > 100
    # Ollama's semantics: the whole prompt is counted, the cached part reported apart.
    assert turn2["prompt_eval_count"] == cold["prompt_eval_count"] > turn1.prompt_eval_count
    assert "prompt_eval_cached_count" not in cold
    evaluated = turn2["prompt_eval_count"] - turn2["prompt_eval_cached_count"]
    assert 0 < evaluated < cold["prompt_eval_count"] / 3
    assert turn2["prompt_eval_duration"] < cold["prompt_eval_duration"]


def test_seed_makes_sampling_repeatable(client: ollama.Client) -> None:
    options = {"temperature": 1.0, "seed": 7, "num_predict": 12}
    answers = {
        client.chat(model=WARM, messages=ask("Invent a word."), options=options).message.content
        for _ in range(2)
    }
    assert len(answers) == 1


def test_version_tags_and_show(url: str, client: ollama.Client) -> None:
    assert httpx.get(f"{url}/api/version").json()["version"]
    tags = {model.model: model for model in client.list().models}
    assert set(tags) == {COOL, WARM}
    assert tags[COOL].digest != tags[WARM].digest
    for model in tags.values():
        assert model.size > 50_000_000
        assert model.details.family == "llama"
        assert model.details.parameter_size == "135M"
        assert model.details.quantization_level == "Q4_1"
    shown = client.show(WARM)
    assert shown.capabilities == ["completion"]
    assert shown.modelinfo["llama.context_length"] == 8192


def test_unknown_model_is_404(client: ollama.Client) -> None:
    with pytest.raises(ollama.ResponseError) as caught:
        client.chat(model="smollm2:7b", messages=ask("hi"))
    assert caught.value.status_code == 404
    assert "not found" in caught.value.error


def test_load_and_unload_with_empty_messages(client: ollama.Client) -> None:
    unload_all(client)
    assert client.ps().models == []

    loaded = client.chat(model=COOL, messages=[], keep_alive="10m")
    assert loaded.done_reason == "load"
    (running,) = client.ps().models
    assert running.model == COOL
    assert running.size_vram == 0  # all CPU, honestly reported
    assert running.size > running.size_vram
    assert running.context_length == 4096
    remaining = running.expires_at.timestamp() - time.time()
    assert 9 * 60 < remaining <= 10 * 60

    client.chat(model=COOL, messages=[], options={"num_ctx": 2048})
    assert client.ps().models[0].context_length == 2048  # a num_ctx change reloads

    assert client.chat(model=COOL, messages=[], keep_alive=0).done_reason == "unload"
    assert client.ps().models == []


def test_keep_alive_zero_unloads_after_the_answer(client: ollama.Client) -> None:
    unload_all(client)
    client.chat(model=COOL, messages=ask("Hi"), options={"num_predict": 2}, keep_alive=0)
    assert client.ps().models == []


def test_model_unloads_when_keep_alive_runs_out(client: ollama.Client) -> None:
    unload_all(client)
    client.chat(model=WARM, messages=[], keep_alive="1s")
    assert [model.model for model in client.ps().models] == [WARM]
    deadline = time.monotonic() + 30  # the timer fires after 1 s; a busy machine may be late
    while client.ps().models and time.monotonic() < deadline:
        time.sleep(0.1)
    assert client.ps().models == []


def test_a_load_neither_chatters_nor_mutes_other_threads(
    client: ollama.Client, capfd: pytest.CaptureFixture[str]
) -> None:
    unload_all(client)
    capfd.readouterr()
    loader = threading.Thread(target=client.chat, kwargs={"model": COOL, "messages": []})
    loader.start()
    ticks = 0
    while loader.is_alive():  # e.g. the CLI printing while the server thread loads a model
        print("tick", flush=True)
        ticks += 1
        time.sleep(0.001)
    out, err = capfd.readouterr()
    assert (out.count("tick\n"), err) == (ticks, "")


def test_client_gone_mid_stream_leaves_the_server_usable(server: OllamaServer, monkeypatch) -> None:
    """The abandoned answer is cut short at once (done_reason "cancelled"), not run to its end."""
    url = server.url
    finished, recording_chat = record_final_chunks(server.backend)
    monkeypatch.setattr(server.backend, "chat", recording_chat)
    with ollama.Client(host=url, timeout=300) as leaving:
        stream = leaving.chat(  # uncut, this greedy count runs to num_predict: about 13 s
            model=COOL,
            messages=ask("Count from 1 to 1000, separated by commas."),
            options={**GREEDY, "repeat_penalty": 1.0, "num_predict": 1500},
            stream=True,
        )
        next(stream), next(stream)
        stream.close()  # closes the HTTP response mid-answer

    with ollama.Client(host=url, timeout=300) as staying:
        response = staying.chat(model=COOL, messages=ask("Hi"), options={"num_predict": 4})
    assert response.done and response.eval_count > 0
    abandoned, answered = finished
    assert abandoned.done_reason == "cancelled" and abandoned.eval_count < 100
    assert answered.done_reason in ("stop", "length")


def test_the_embedded_server_embeds_texts_so_that_close_ones_are_close(url: str):
    from graphs.ollama import api

    river, stream, market = api.embed(
        url, "smollm2:135m", ["memory is a river", "memory is a stream", "the stock market fell"]
    )
    assert len(river) == len(stream) == len(market) > 100

    def cosine(a: list[float], b: list[float]) -> float:
        dot = sum(x * y for x, y in zip(a, b, strict=True))
        return dot / (sum(x * x for x in a) ** 0.5 * sum(y * y for y in b) ** 0.5)

    assert cosine(river, stream) > cosine(river, market)
