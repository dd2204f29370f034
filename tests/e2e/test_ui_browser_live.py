"""The live view in a real browser: `duologue ui` on 127.0.0.1, driven by headless Chromium.

A duet streams from the Ollama-protocol test server at a few tokens a second, so each turn takes
seconds: the turn in progress shows its tokens so far, its live tok/s, its TTFT and where its model
sits; the count grows while it streams; a finished turn folds to its heading and stats line; Stop
says "stopping…", then the page shows the interrupted run; /?run=ID opens the run. Screenshots go
to the test's temporary folder and to $DUOLOGUE_SHOTS_DIR (when set) as live-*.png.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support import shots
from support.fakeollama import FakeModel, fake_ollama
from support.pageserver import duologue_ui

from graphs import RunStore

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
WORDS = " ".join(f"word{index}" for index in range(60))
LIVE_LINE = re.compile(r"(\d+) tokens · \d+\.\d tok/s · TTFT \d+\.\d s · \d+ s · writing…")

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not (CHROMIUM.exists() and CHROMEDRIVER.exists()),
        reason="needs Debian's chromium and chromium-driver (make browser)",
    ),
]


@pytest.fixture
def page(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """`duologue ui` on a test server that sends a token every 0.15 s; the page's URL and runs folder."""
    models = [
        FakeModel("glm-4.7-flash", replies=[f"An opening. {WORDS}"], gpu_tok_s=9.0),
        FakeModel("qwen3:32b", replies=[f"A response. {WORDS}"], gpu_tok_s=1.4),
    ]
    runs_dir = tmp_path / "runs"
    with (
        fake_ollama(models, token_delay_s=0.15) as (server, _backend),
        duologue_ui(runs_dir, tmp_path / "streamlit.log", host=server.url) as ui,
    ):
        yield ui.url, runs_dir


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[object]:
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1400,1400",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def shot(driver, tmp_path: Path, name: str) -> None:
    """One screenshot per state of the page, in tmp_path and, when set, $DUOLOGUE_SHOTS_DIR as live-NAME.png."""
    path = tmp_path / f"live-{name}.png"
    driver.save_screenshot(str(path))
    shots.keep(path, path.name)


def choose_model(driver: Any, participant: str, model: str, attempts: int = 4) -> None:
    """Pick a participant's model. The page reruns when the host's model list arrives, which
    can close an open list under the test's keystrokes, so a closed list is opened again."""
    from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    option = (By.XPATH, f"//*[@role='option'][normalize-space(.)='{model}']")
    picker = (By.CSS_SELECTOR, f".st-key-participant-{participant} input")
    for attempt in range(attempts):
        try:
            box = WebDriverWait(driver, 60).until(ec.element_to_be_clickable(picker))
            box.click()
            box.send_keys(model)
            WebDriverWait(driver, 15).until(ec.presence_of_element_located(option))
            box.send_keys(Keys.ENTER)
            return
        except (TimeoutException, StaleElementReferenceException):
            if attempt == attempts - 1:
                raise
            driver.find_element(By.TAG_NAME, "body").send_keys(Keys.ESCAPE)


def test_a_streaming_turn_shows_live_numbers_then_folds_and_stop_answers(page, browser, tmp_path: Path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    url, runs_dir = page
    driver = browser
    wait = WebDriverWait(driver, 90)

    def body() -> str:
        return driver.find_element(By.TAG_NAME, "body").text

    def tokens_shown() -> int | None:
        found = LIVE_LINE.search(body())
        return int(found.group(1)) if found else None

    driver.get(url)
    wait.until(lambda d: "Launch a dialogue" in body(), message="the launch page did not load")
    for participant, model in (("a", "glm-4.7-flash"), ("b", "qwen3:32b")):
        choose_model(driver, participant, model)
    wait.until(ec.element_to_be_clickable((By.XPATH, "//button[normalize-space(.)='Launch']"))).click()
    wait.until(lambda d: "run=" in d.current_url, message="the page did not open the run")
    run_id = driver.current_url.split("run=", 1)[1]

    # Turn 1 streams: its live line has tokens, tok/s and TTFT, and its model's placement.
    wait.until(lambda d: tokens_shown() is not None, message="no live numbers while turn 1 streamed")
    assert "100% GPU" in body() and "Turn 1: glm-4.7-flash — Opening" in body()
    first = tokens_shown()
    shot(driver, tmp_path, "streaming")
    # The count moves while the same turn streams (the page redraws it as tokens arrive).
    wait.until(
        lambda d: (now := tokens_shown()) is not None and first is not None and now > first,
        message="the token count did not move",
    )

    # Turn 2 streams; turn 1, below it, is folded to its heading and stats line, its words inside.
    wait.until(lambda d: "Turn 2: qwen3:32b — Response" in body() and tokens_shown() is not None)
    [folded] = driver.find_elements(By.CSS_SELECTOR, "[data-testid=stExpander] summary")
    heading = folded.text.splitlines()[-1]  # after the arrow icon's name
    assert re.fullmatch(r"Turn 1: glm-4\.7-flash — Opening · \(\d+ tokens, [\d.]+ tok/s, \d+s\)", heading), (
        heading
    )
    assert "An opening." not in body()  # folded: its words are not on show
    shot(driver, tmp_path, "folded")

    # Stop: "stopping…" or, as the run stops at its next token, the interrupted run's record.
    driver.find_element(By.XPATH, "//button[normalize-space(.)='Stop']").click()
    wait.until(
        lambda d: "stopping…" in body() or "The run was interrupted" in body(),
        message="the Stop click got no answer",
    )
    wait.until(lambda d: "The run was interrupted" in body(), message="the page did not show the stopped run")
    assert RunStore(runs_dir).load(run_id).meta.status == "interrupted"
    shot(driver, tmp_path, "stopped")

    # The root URL with the run opens the run, and the URL the page then shows reloads to it.
    driver.get(f"{url}/?run={run_id}")
    wait.until(lambda d: f"Run {run_id}" in body() and "The run was interrupted" in body())
    assert f"run={run_id}" in driver.current_url
    driver.refresh()
    wait.until(lambda d: f"Run {run_id}" in body(), message="the run's URL did not reload to the run")
