"""A person's turns in a real browser: `duologue ui` on 127.0.0.1, driven by headless Chromium.

The interview is launched from the page; at the person's turn the live run shows a text box with
Send; the words sent go to the model as typed, and the run goes on to its end. Screenshots go to
the test's temporary folder and to $DUOLOGUE_SHOTS_DIR (when set) as person-*.png.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from support import shots
from support.fakeollama import FakeModel, fake_ollama
from support.pageserver import duologue_ui

from graphs import RunStore

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
REPLIES = ["Memory is inheritance, not storage.", "We agree on inheritance and part on storage."]
FIRST = "Is memory something a model has, or something it does?"
SECOND = "Then what does it inherit?"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not (CHROMIUM.exists() and CHROMEDRIVER.exists()),
        reason="needs Debian's chromium and chromium-driver (make browser)",
    ),
]


@pytest.fixture
def page(tmp_path: Path) -> Iterator[tuple[str, Path, object]]:
    runs_dir = tmp_path / "runs"
    with (
        fake_ollama([FakeModel("qwen3:32b", replies=REPLIES)], token_delay_s=0.05) as (server, backend),
        duologue_ui(runs_dir, tmp_path / "streamlit.log", host=server.url) as ui,
    ):
        yield ui.url, runs_dir, backend


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
    path = tmp_path / f"person-{name}.png"
    driver.save_screenshot(str(path))
    shots.keep(path, path.name)


def test_the_interviewer_writes_their_turns_in_the_box_and_sends_them(page, browser, tmp_path: Path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    url, runs_dir, backend = page
    driver = browser
    wait = WebDriverWait(driver, 90)

    def body() -> str:
        return driver.find_element(By.TAG_NAME, "body").text

    def pick(key: str, value: str) -> None:
        box = wait.until(ec.element_to_be_clickable((By.CSS_SELECTOR, f".st-key-{key} input")))
        box.click()
        box.send_keys(value)
        wait.until(
            ec.presence_of_element_located((By.XPATH, f"//*[@role='option'][normalize-space(.)='{value}']"))
        )
        box.send_keys(Keys.ENTER)

    driver.get(url)
    wait.until(lambda d: "Launch a dialogue" in body(), message="the launch page did not load")
    pick("shape-name", "interview")
    wait.until(lambda d: "A person: you write their turns" in body(), message="the person's column")
    pick("participant-guest", "qwen3:32b")
    shot(driver, tmp_path, "launch")
    wait.until(ec.element_to_be_clickable((By.XPATH, "//button[normalize-space(.)='Launch']"))).click()
    wait.until(lambda d: "run=" in d.current_url, message="the page did not open the run")
    run_id = driver.current_url.split("run=", 1)[1]

    def write(number: int, kind: str, text: str) -> None:
        label = f"Interviewer, your turn {number} ({kind})"
        wait.until(lambda d: label in body(), message=f"no box for turn {number}")
        area = wait.until(ec.element_to_be_clickable((By.CSS_SELECTOR, "[data-testid='stForm'] textarea")))
        area.send_keys(text)
        shot(driver, tmp_path, f"turn-{number}")
        wait.until(ec.element_to_be_clickable((By.XPATH, "//button[normalize-space(.)='Send']"))).click()

    write(1, "opening", FIRST)
    wait.until(lambda d: "Turn 2: qwen3:32b — Response" in body(), message="the model did not respond")
    write(3, "reply", SECOND)
    wait.until(lambda d: "Total: " in body(), message="the run did not complete")
    wait.until(
        lambda d: not d.find_elements(By.CSS_SELECTOR, "[data-testid='stSkeleton']"),
        message="the run's numbers did not load",
    )
    shot(driver, tmp_path, "completed")
    run = RunStore(runs_dir).load(run_id)
    assert run.meta.status == "completed"
    shown = body()
    assert "Turn 1: Interviewer — Opening" in shown and "(person, 10 words, " in shown
    assert "Turn 3: Interviewer — Reply" in shown and "(person, 5 words, " in shown
    assert [m["content"] for m in backend.chat_requests[-1].messages if m["role"] == "user"][::2] == [
        FIRST,
        SECOND,
    ]
