"""The embedded server speaks Ollama's API, and the fake behind it behaves like Ollama's scheduler.

Driven over real HTTP with the clients duologue uses: the `ollama` package, ChatOllama, httpx.
"""

from __future__ import annotations

import functools
import json
import operator
import threading
import time
from datetime import UTC, datetime

import httpx
import ollama
import pytest
from langchain_ollama import ChatOllama
from support.duet import user
from support.fakeollama import FakeBackend, FakeModel, fake_ollama, message_tokens

from graphs.embedded.protocol import OllamaServer, PortInUse

GB = 2**30
METRICS = (
    "total_duration",
    "load_duration",
    "prompt_eval_count",
    "prompt_eval_duration",
    "eval_count",
    "eval_duration",
)


def ps(server: OllamaServer) -> dict[str, dict]:
    """/api/ps as {name: entry}."""
    with httpx.Client(base_url=server.url, timeout=5) as http:
        return {m["name"]: m for m in http.get("/api/ps").json()["models"]}


def chat(server: OllamaServer, model: str, text: str = "hello", **kwargs) -> ollama.ChatResponse:
    with ollama.Client(host=server.url, timeout=10) as client:
        return client.chat(model, [user(text)], **kwargs)


# --- /api/chat: shapes and units ---------------------------------------------------------


def test_streamed_chunks_carry_text_then_one_final_chunk_with_metrics_in_nanoseconds():
    model = FakeModel("m", replies=["one two three four five"], gpu_tok_s=50.0)
    with fake_ollama([model]) as (server, _), ollama.Client(host=server.url, timeout=10) as client:
        parts = list(client.chat("m", [user("hi there")], stream=True))

    *deltas, final = parts
    assert [p.message.content for p in deltas] == ["one ", "two ", "three ", "four ", "five"]
    assert all(p.done is False and p.eval_count is None for p in deltas)
    assert all(p.message.thinking is None for p in deltas)
    assert final.done is True and final.done_reason == "stop"
    assert final.message.content == ""
    assert final.eval_count == 5
    assert final.prompt_eval_count == message_tokens(user("hi there"))
    assert final.eval_duration == pytest.approx(5 / 50.0 * 1e9, rel=1e-6)  # ns, from 50 tok/s
    assert final.load_duration > 0  # the first call loaded the model
    assert final.total_duration >= final.load_duration + final.prompt_eval_duration + (final.eval_duration)


def test_raw_stream_is_ndjson_with_ollama_field_names():
    with (
        fake_ollama([FakeModel("m", replies=["a b"])]) as (server, _),
        httpx.Client(base_url=server.url, timeout=10) as http,
        http.stream("POST", "/api/chat", json={"model": "m", "messages": [user("x")]}) as r,
    ):
        assert r.headers["content-type"] == "application/x-ndjson"
        lines = [json.loads(line) for line in r.iter_lines() if line]

    assert lines[0]["message"] == {"role": "assistant", "content": "a "}
    assert set(lines[0]) == {"model", "created_at", "message", "done"}
    assert lines[-1]["message"] == {"role": "assistant", "content": ""}
    assert set(lines[-1]) == {"model", "created_at", "message", "done", "done_reason", *METRICS}
    assert all(isinstance(lines[-1][k], int) for k in METRICS)


def test_tokens_arrive_as_they_are_generated_not_all_at_the_end():
    words = " ".join(f"w{i}" for i in range(20))
    with (
        fake_ollama([FakeModel("m", replies=[words])], token_delay_s=0.05) as (server, _),
        ollama.Client(host=server.url, timeout=10) as client,
    ):
        start = time.monotonic()
        arrivals = [time.monotonic() - start for _ in client.chat("m", [user("x")], stream=True)]

    assert arrivals[-1] > 0.9  # 20 tokens, 50 ms apart
    assert arrivals[0] < arrivals[-1] / 4


def test_stream_false_answers_one_object_with_the_whole_text_and_thinking():
    model = FakeModel("t", thinks=True, replies=["all of it"])
    with fake_ollama([model]) as (server, _):
        response = chat(server, "t", "cats", stream=False)

    assert response.done is True and response.done_reason == "stop"
    assert response.message.content == "all of it"
    assert response.message.thinking == "Let me think about cats."
    assert response.eval_count == 3 + 5  # reply words + thinking words


# --- other endpoints ----------------------------------------------------------------------


def test_tags_show_and_version_describe_the_models():
    models = [FakeModel("qwen3:8b", thinks=True, context_length=40960), FakeModel("gemma3:4b")]
    with fake_ollama(models) as (server, _), ollama.Client(host=server.url, timeout=5) as client:
        tags = client.list()
        show = client.show("qwen3:8b")
        with httpx.Client(base_url=server.url, timeout=5) as http:
            version = http.get("/api/version").json()
            legacy_show = http.post("/api/show", json={"name": "gemma3:4b"}).json()

    assert [m.model for m in tags.models] == ["qwen3:8b", "gemma3:4b"]
    assert tags.models[0].details.family == "qwen3"
    assert tags.models[0].size == 100_000_000
    assert "thinking" in show.capabilities
    assert show.modelinfo["general.architecture"] == "qwen3"
    assert show.modelinfo["qwen3.context_length"] == 40960
    assert legacy_show["capabilities"] == ["completion"]
    assert version == {"version": FakeBackend.version}


def test_root_says_ollama_is_running_for_get_and_head():
    with fake_ollama(["m"]) as (server, _), httpx.Client(base_url=server.url, timeout=5) as http:
        got, head = http.get("/"), http.head("/")

    assert (got.status_code, got.text) == (200, "Ollama is running")
    assert head.status_code == 200 and head.content == b""


def test_ps_lists_loaded_models_with_vram_context_and_expiry():
    with fake_ollama([FakeModel("m", kv_bytes_per_token=1000)]) as (server, _):
        assert ps(server) == {}
        chat(server, "m", options={"num_ctx": 8192}, keep_alive="10m")
        entry = ps(server)["m"]

    assert entry["size"] == 100_000_000 + 1000 * 8192
    assert entry["size_vram"] == entry["size"]
    assert entry["context_length"] == 8192
    assert entry["details"]["family"] == "m"
    assert 590 < _seconds_until(entry["expires_at"]) <= 600


def _seconds_until(timestamp: str) -> float:
    return (datetime.fromisoformat(timestamp) - datetime.now(UTC)).total_seconds()


# --- errors -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "body", "status", "error"),
    [
        ("/api/chat", {"model": "nope", "messages": [user("x")]}, 404, "model 'nope' not found"),
        (
            "/api/chat",
            {"model": "nope", "messages": [user("x")], "stream": False},
            404,
            "model 'nope' not found",
        ),
        ("/api/show", {"model": "nope"}, 404, "model 'nope' not found"),
        ("/api/chat", {"messages": [user("x")]}, 400, "model is required"),
        ("/api/chat", {"model": "m", "messages": "hi"}, 400, "messages must be a list of objects"),
        (
            "/api/chat",
            {"model": "m", "messages": [user("x")], "keep_alive": "soon"},
            400,
            "invalid keep_alive duration: 'soon'",
        ),
    ],
)
def test_errors_answer_ollamas_json_bodies(path, body, status, error):
    with fake_ollama(["m"]) as (server, _), httpx.Client(base_url=server.url, timeout=5) as http:
        response = http.post(path, json=body)

    assert response.status_code == status
    assert response.json() == {"error": error}


def test_malformed_json_and_unknown_paths_are_rejected_and_the_connection_stays_usable():
    with fake_ollama(["m"]) as (server, _), httpx.Client(base_url=server.url, timeout=5) as http:
        bad = http.post("/api/chat", content=b'{"model": ')
        unknown = http.post("/api/generate-nothing", json={"model": "m", "prompt": "x"})
        after = http.get("/api/version")

    assert bad.status_code == 400 and bad.json()["error"].startswith("invalid JSON")
    assert unknown.status_code == 404
    assert after.status_code == 200  # the unread body did not corrupt the keep-alive connection


def test_ollama_client_reports_unknown_model_as_404():
    with fake_ollama(["m"]) as (server, _), pytest.raises(ollama.ResponseError) as caught:
        chat(server, "nope")

    assert caught.value.status_code == 404
    assert caught.value.error == "model 'nope' not found"


def test_backend_failure_mid_stream_ends_with_an_error_line_and_the_server_carries_on():
    with (
        fake_ollama(["m"], fail_on_call=1) as (server, backend),
        ollama.Client(host=server.url, timeout=10) as client,
    ):
        received = []
        with pytest.raises(ollama.ResponseError, match="fake failure on chat call 1"):
            for part in client.chat("m", [user("x")], stream=True):
                received.append(part.message.content)
        again = client.chat("m", [user("x")])

    assert len(received) == 3  # the tokens before the fault did reach the client
    assert again.done_reason == "stop"
    assert ("fail", "m") in backend.events


def test_failure_in_an_unstreamed_answer_is_a_500():
    with (
        fake_ollama(["m"], fail_on_call=1) as (server, _),
        httpx.Client(base_url=server.url, timeout=5) as http,
    ):
        response = http.post("/api/chat", json={"model": "m", "messages": [user("x")], "stream": False})

    assert response.status_code == 500
    assert response.json() == {"error": "fake failure on chat call 1"}


def test_a_failing_short_answer_still_fails_before_its_final_chunk():
    with (
        fake_ollama([FakeModel("m", replies=["tiny"])], fail_on_call=1) as (server, _),
        ollama.Client(host=server.url, timeout=10) as client,
        pytest.raises(ollama.ResponseError, match="fake failure"),
    ):
        list(client.chat("m", [user("x")], stream=True))


def test_dropped_connection_breaks_the_stream_without_an_error_line():
    with (
        fake_ollama(["m"], fail_on_call=1, fail_mode="drop") as (server, _),
        ollama.Client(host=server.url, timeout=10) as client,
    ):
        with pytest.raises(httpx.RemoteProtocolError):
            for _ in client.chat("m", [user("x")], stream=True):
                pass
        again = client.chat("m", [user("x")])

    assert again.done is True


# --- load and unload through an empty messages list ---------------------------------------


@pytest.mark.parametrize("zero", [0, "0", "0s"])
def test_empty_messages_load_and_keep_alive_zero_unloads(zero):
    with fake_ollama(["m"]) as (server, backend), httpx.Client(base_url=server.url) as http:
        loaded = http.post("/api/chat", json={"model": "m", "messages": []}).json()
        resident = set(ps(server))
        unloaded = http.post("/api/chat", json={"model": "m", "messages": [], "keep_alive": zero}).json()

        assert ps(server) == {}

    assert loaded["done_reason"] == "load" and loaded["done"] is True
    assert loaded["message"] == {"role": "assistant", "content": ""}
    assert resident == {"m"}
    assert unloaded["done_reason"] == "unload"
    assert backend.events == [("load", "m"), ("unload", "m")]


def test_unloading_an_unknown_model_is_a_404():
    with fake_ollama(["m"]) as (server, _), httpx.Client(base_url=server.url, timeout=5) as http:
        response = http.post("/api/chat", json={"model": "x", "messages": [], "keep_alive": 0})

    assert response.status_code == 404


# --- concurrency and disconnects ----------------------------------------------------------


def test_client_leaving_mid_stream_cancels_the_generation_and_frees_the_server():
    long_reply = " ".join(["word"] * 500)  # 5 s at 10 ms a token
    model = FakeModel("m", replies=[long_reply, "short answer"])
    with (
        fake_ollama([model], token_delay_s=0.01) as (server, backend),
        ollama.Client(host=server.url, timeout=10) as client,
    ):
        stream = client.chat("m", [user("x")], stream=True)
        for index, _ in enumerate(stream):
            if index == 2:
                break
        stream.close()  # closes the HTTP response: the connection is dropped
        start = time.monotonic()
        again = client.chat("m", [user("y")])
        waited = time.monotonic() - start

    assert again.message.content == "short answer"
    assert waited < 2  # not stuck behind the rest of the abandoned 5 s answer
    assert backend.events == [("load", "m"), ("cancel", "m")]


def test_status_endpoints_answer_while_a_generation_runs():
    words = " ".join(["w"] * 100)  # 2 s at 20 ms a token
    with (
        fake_ollama([FakeModel("m", replies=[words])], token_delay_s=0.02) as (server, _),
        ollama.Client(host=server.url, timeout=10) as client,
    ):
        stream = client.chat("m", [user("x")], stream=True)
        next(stream)
        start = time.monotonic()
        resident = ps(server)
        with httpx.Client(base_url=server.url, timeout=5) as http:
            tags = http.get("/api/tags").json()
        elapsed = time.monotonic() - start
        stream.close()

    assert elapsed < 0.5  # not after the answer's 2 s
    assert set(resident) == {"m"} and tags["models"][0]["name"] == "m"


def test_generations_run_one_at_a_time():
    words = " ".join(["w"] * 10)
    spans: list[tuple[float, float]] = []

    def run(server: OllamaServer) -> None:
        with ollama.Client(host=server.url, timeout=10) as client:
            times = [time.monotonic() for _ in client.chat("m", [user("x")], stream=True)]
        spans.append((times[0], times[-1]))

    with fake_ollama([FakeModel("m", replies=[words])], token_delay_s=0.02) as (server, _):
        threads = [threading.Thread(target=run, args=(server,)) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    (_, first_end), (second_start, _) = sorted(spans)
    assert second_start > first_end - 0.05  # interleaved answers would overlap by ~0.2 s


# --- server lifecycle ---------------------------------------------------------------------


def test_a_taken_port_is_reported_clearly():
    with fake_ollama(["m"]) as (server, backend), pytest.raises(PortInUse) as caught:
        OllamaServer(backend, port=server.port)

    assert str(caught.value) == (
        f"port {server.port} on 127.0.0.1 is already in use; pick another with --port"
    )
    assert isinstance(caught.value, OSError)


def test_stop_returns_promptly_with_an_idle_keep_alive_connection_open():
    server = OllamaServer(FakeBackend(["m"])).start()
    with httpx.Client(base_url=server.url, timeout=5) as http:
        assert http.get("/api/version").status_code == 200  # leaves a pooled connection open
        start = time.monotonic()
        server.stop()
        assert time.monotonic() - start < 2
        with pytest.raises(httpx.TransportError):
            http.get("/api/version")


# --- the emulated scheduler ---------------------------------------------------------------


def test_first_model_too_big_for_vram_spills_to_the_cpu_and_decodes_slower():
    model = FakeModel("big", weights_bytes=12 * GB, gpu_tok_s=90.0, cpu_tok_s=9.0)
    with fake_ollama([model], vram_bytes=8 * GB) as (server, _):
        response = chat(server, "big")
        entry = ps(server)["big"]

    assert entry["size"] == 12 * GB and entry["size_vram"] == 8 * GB
    speed = response.eval_count / (response.eval_duration / 1e9)
    assert 9.0 < speed < 90.0


def test_a_second_model_that_does_not_fit_evicts_the_least_recently_used():
    models = [FakeModel(n, weights_bytes=10 * GB) for n in ("a", "b", "c")]
    with fake_ollama(models, vram_bytes=24 * GB) as (server, backend):
        chat(server, "a")
        chat(server, "b")  # both fit: 20 of 24 GB
        chat(server, "a")  # a is now the most recently used
        chat(server, "c")
        resident = ps(server)

    assert set(resident) == {"a", "c"}
    assert all(m["size_vram"] == m["size"] for m in resident.values())
    assert backend.events == [("load", "a"), ("load", "b"), ("evict", "b"), ("load", "c")]


def test_unload_lag_makes_the_next_model_fall_back_to_the_cpu():
    """The reference run: after the first model was evicted, the second ran at 0 VRAM."""
    models = [
        FakeModel("gemma", weights_bytes=20 * GB),
        FakeModel("qwen", weights_bytes=14 * GB, gpu_tok_s=70.0, cpu_tok_s=10.0),
    ]
    with fake_ollama(models, vram_bytes=20 * GB, unload_lag_loads=1) as (server, backend):
        chat(server, "gemma")
        on_cpu = chat(server, "qwen")
        qwen = ps(server)["qwen"]
        chat(server, "gemma")  # the lag is over: gemma is back on the GPU, next to qwen
        gemma = ps(server)["gemma"]

    assert qwen["size_vram"] == 0
    assert on_cpu.eval_count / (on_cpu.eval_duration / 1e9) == pytest.approx(10.0)
    assert gemma["size_vram"] == gemma["size"]
    assert backend.events == [
        ("load", "gemma"),
        ("evict", "gemma"),
        ("load", "qwen"),
        ("load", "gemma"),
    ]


def test_without_unload_lag_the_evicting_model_gets_the_gpu():
    models = [FakeModel("gemma", weights_bytes=20 * GB), FakeModel("qwen", weights_bytes=14 * GB)]
    with fake_ollama(models, vram_bytes=20 * GB) as (server, _):
        chat(server, "gemma")
        chat(server, "qwen")
        qwen = ps(server)["qwen"]

    assert qwen["size_vram"] == qwen["size"]


def test_unload_lag_follows_keep_alive_zero_and_ends_after_one_load():
    models = [FakeModel("a", weights_bytes=10 * GB), FakeModel("b", weights_bytes=10 * GB)]
    with fake_ollama(models, vram_bytes=10 * GB, unload_lag_loads=1) as (server, backend):
        chat(server, "a", keep_alive=0)  # unloaded after answering: the lag starts
        chat(server, "b")  # this load still sees a's memory as used
        first = ps(server)["b"]["size_vram"]
        chat(server, "b", options={"num_ctx": 2048})  # a reload, and the lag is over
        second = ps(server)["b"]["size_vram"]

    assert backend.events[:2] == [("load", "a"), ("unload", "a")]
    assert (first, second) == (0, 10 * GB)


def test_changing_a_load_option_reloads_but_sampling_options_do_not():
    model = FakeModel("m", kv_bytes_per_token=10_000)
    with fake_ollama([model]) as (server, backend):
        first = chat(server, "m", options={"num_ctx": 4096, "temperature": 0.2})
        same = chat(server, "m", options={"num_ctx": 4096, "temperature": 0.9})
        bigger = chat(server, "m", options={"num_ctx": 8192})
        resized = ps(server)["m"]
        threads = chat(server, "m", options={"num_ctx": 8192, "num_thread": 4})

    assert first.load_duration > 0 and same.load_duration == 0
    assert bigger.load_duration > 0 and threads.load_duration > 0
    assert resized["context_length"] == 8192
    assert resized["size"] == 100_000_000 + 10_000 * 8192
    assert backend.events == [("load", "m"), ("reload", "m"), ("reload", "m")]


def test_omitting_num_ctx_after_setting_it_reloads_at_the_default():
    with fake_ollama(["m"], default_num_ctx=2048) as (server, backend):
        chat(server, "m", options={"num_ctx": 8192})
        chat(server, "m")
        context = ps(server)["m"]["context_length"]

    assert context == 2048
    assert backend.events == [("load", "m"), ("reload", "m")]


def test_num_ctx_is_capped_at_the_trained_context():
    with fake_ollama([FakeModel("m", context_length=8192)]) as (server, _):
        chat(server, "m", options={"num_ctx": 131072})
        context = ps(server)["m"]["context_length"]

    assert context == 8192


@pytest.mark.parametrize(("num_gpu", "share"), [(0, 0.0), (24, 0.5), (48, 1.0), (999, 1.0)])
def test_num_gpu_sets_the_share_of_layers_on_the_gpu(num_gpu, share):
    with fake_ollama([FakeModel("m", weights_bytes=48 * 10**6)]) as (server, _):
        chat(server, "m", options={"num_gpu": num_gpu})
        entry = ps(server)["m"]

    assert entry["size_vram"] == share * entry["size"]


def test_keep_alive_zero_on_a_chat_unloads_after_answering():
    with fake_ollama(["m"]) as (server, backend):
        response = chat(server, "m", keep_alive=0)
        resident = ps(server)

    assert response.message.content
    assert resident == {}
    assert backend.events == [("load", "m"), ("unload", "m")]


def test_a_prompt_longer_than_num_ctx_loses_its_oldest_messages_silently():
    system = {"role": "system", "content": "be brief"}
    history = [user(" ".join(["old"] * 40)), user(" ".join(["mid"] * 40)), user("newest")]
    messages = [system, *history]
    with fake_ollama(["m"]) as (server, backend), ollama.Client(host=server.url) as client:
        full = client.chat("m", messages, options={"num_ctx": 4096})
        cut = client.chat("m", messages, options={"num_ctx": 60})

    assert full.prompt_eval_count == sum(message_tokens(m) for m in messages)
    kept = [system, history[1], history[2]]  # 6 + 44 + 5 = 55 tokens fit in 60
    assert cut.prompt_eval_count == sum(message_tokens(m) for m in kept)
    assert cut.done_reason == "stop"
    assert backend.chat_requests[1].messages == messages  # the request itself was whole


def test_thinking_streams_before_the_answer_and_counts_as_output():
    model = FakeModel("t", thinks=True, replies=["the answer"])
    with fake_ollama([model]) as (server, _), ollama.Client(host=server.url) as client:
        parts = list(client.chat("t", [user("why")], stream=True))
        silent = client.chat("t", [user("why")], think=False)

    thinking = [p.message.thinking for p in parts if p.message.thinking]
    content = [p.message.content for p in parts if p.message.content]
    assert "".join(thinking) == "Let me think about why."
    assert "".join(content) == "the answer"
    assert parts.index(next(p for p in parts if p.message.content)) == len(thinking)
    assert parts[-1].eval_count == 5 + 2
    assert silent.message.thinking is None and silent.eval_count == 2


def test_asking_a_model_without_thinking_to_think_is_a_400():
    with fake_ollama(["plain"]) as (server, _), pytest.raises(ollama.ResponseError) as caught:
        chat(server, "plain", think=True)

    assert caught.value.status_code == 400
    assert "does not support thinking" in caught.value.error


def test_num_predict_cuts_the_answer_with_done_reason_length():
    with fake_ollama([FakeModel("m", replies=["a b c d e f g h"])]) as (server, _):
        response = chat(server, "m", options={"num_predict": 3})

    assert response.message.content == "a b c "
    assert (response.done_reason, response.eval_count) == ("length", 3)


def test_scripted_replies_cycle_per_model_and_functions_see_the_request():
    models = [
        FakeModel("a", replies=["first", "second"]),
        FakeModel("b", replies=lambda request, n: f"{n}: {request.messages[-1]['content']}"),
    ]
    with fake_ollama(models) as (server, _):
        texts = [
            chat(server, name, text).message.content
            for name, text in [("a", "x"), ("b", "hey"), ("a", "x"), ("a", "x"), ("b", "ho")]
        ]

    assert texts == ["first", "1: hey", "second", "first", "2: ho"]


# --- ChatOllama end to end ----------------------------------------------------------------


def test_chat_ollama_invoke_and_stream_carry_text_usage_and_nanosecond_metadata():
    model = FakeModel("m", replies=["hello from the fake"])
    with fake_ollama([model]) as (server, _):
        llm = ChatOllama(base_url=server.url, model="m", client_kwargs={"timeout": 10})
        try:
            message = llm.invoke("hi")
            chunks = list(llm.stream("hi"))
        finally:
            llm._client.close()  # ChatOllama never closes its httpx client itself

    assert message.content == "hello from the fake"
    assert message.usage_metadata["output_tokens"] == 4
    assert message.usage_metadata["input_tokens"] == message.response_metadata["prompt_eval_count"]
    metadata = message.response_metadata
    assert metadata["done_reason"] == "stop"
    assert metadata["eval_duration"] == pytest.approx(4 / 90.0 * 1e9, rel=1e-6)
    assert all(isinstance(metadata[k], int) for k in METRICS)
    assert "".join(c.content for c in chunks) == "hello from the fake"
    assert len([c for c in chunks if c.content]) == 4
    merged = functools.reduce(operator.add, chunks)  # the usage sits on the done chunk
    assert merged.usage_metadata["output_tokens"] == 4
    assert merged.response_metadata["eval_count"] == 4


def test_chat_ollama_with_reasoning_gets_the_thinking_text():
    model = FakeModel("t", thinks=True, replies=["done"])
    with fake_ollama([model]) as (server, _):
        llm = ChatOllama(base_url=server.url, model="t", reasoning=True, client_kwargs={"timeout": 10})
        try:
            message = llm.invoke("ponder")
        finally:
            llm._client.close()

    assert message.content == "done"
    assert message.additional_kwargs["reasoning_content"] == "Let me think about ponder."
    assert message.usage_metadata["output_tokens"] == 5 + 1  # thinking words count too
