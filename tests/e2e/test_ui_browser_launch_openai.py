"""The Launch page in a real browser with an OpenAI-compatible server beside the Ollama host: its
models are offered, one chosen shows only what such a server is sent and its residency unknown,
and the run it launches goes there.

`duologue ui` on 127.0.0.1 against the Ollama-protocol test server and a scripted OpenAI-compatible
server, driven by headless Chromium (the fixtures of test_ui_browser.py). Screenshots go to the
test's temporary folder and, when set, $DUOLOGUE_SHOTS_DIR.
"""

from __future__ import annotations

from pathlib import Path

from support import shots
from support.fakeollama import FakeModel, fake_ollama
from support.openaiserver import ScriptedReply, scripted_openai
from support.pageserver import duologue_ui

from graphs import RunStore

from . import test_ui_browser as shared

pytestmark = shared.pytestmark  # Chromium and its driver, or skipped
browser = shared.browser  # the headless Chromium fixture


def shot(driver, tmp_path: Path, name: str) -> None:
    path = tmp_path / f"{name}.png"
    driver.save_screenshot(str(path))
    shots.keep(path, f"{name}.png")


def test_a_participant_launched_on_an_openai_compatible_server(browser, tmp_path: Path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    def reply(number: int) -> ScriptedReply:
        return ScriptedReply(
            pieces=["Rivers ", "bend ", "where ", "banks ", "give."],
            usage={"prompt_tokens": 31, "completion_tokens": 5},
        )

    runs_dir = tmp_path / "runs"
    with (
        fake_ollama([FakeModel("glm-4.7-flash")]) as (host, _backend),
        scripted_openai(["smol"], reply) as server,
        duologue_ui(runs_dir, tmp_path / "streamlit.log", host=host.url) as ui,
    ):
        driver = browser
        wait = WebDriverWait(driver, 90)

        def body() -> str:
            return driver.find_element(By.TAG_NAME, "body").text

        def participant(name: str) -> str:
            return driver.find_element(By.CSS_SELECTOR, f".st-key-participant-{name}").text

        driver.get(ui.url)
        wait.until(lambda d: "temperature" in participant("b"), message="the launch page did not load")
        field = wait.until(
            ec.element_to_be_clickable((By.XPATH, "//input[@aria-label='OpenAI-compatible server']"))
        )
        field.send_keys(server.base_url, Keys.ENTER)
        offered = f"smol · OpenAI-compatible ({server.base_url})"
        box = wait.until(ec.element_to_be_clickable((By.CSS_SELECTOR, ".st-key-participant-b input")))
        box.click()
        box.send_keys("OpenAI-compatible")  # "smol" would match the embedded smollm2 first
        wait.until(
            ec.presence_of_element_located(
                (By.XPATH, f"//*[@role='option'][normalize-space(.)='{offered}']")
            ),
            message="the server's model is not offered",
        )
        box.send_keys(Keys.ENTER)
        wait.until(lambda d: "residency unknown" in participant("b"), message="b's box did not change")
        b = participant("b")
        assert "whether it runs on the GPU is the server's own setting" in b
        assert "num_predict" in b and "temperature" in b
        assert "num_ctx" not in b and "num_gpu" not in b and "keep_alive" not in b
        assert "num_ctx" in participant("a")
        shot(driver, tmp_path, "launch-openai")

        wait.until(ec.element_to_be_clickable((By.XPATH, "//button[normalize-space(.)='Launch']"))).click()
        wait.until(lambda d: "completed" in body().lower() and "Rivers bend" in body(), message="no run")
        shot(driver, tmp_path, "run-openai")
    [run] = RunStore(runs_dir).list()
    assert run.meta.status == "completed"
    assert run.meta.participants[1].host == server.base_url
    assert [r.completion_tokens for r in run.turn_records if r.speaker == "b"] == [5, 5]
    assert len(server.requests) == 2
