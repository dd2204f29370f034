"""The Launch page in a real browser, on a host with models: they are the defaults, each with its
size and GPU fit, and Check shows the doctor's findings before anything is launched.

`duologue ui` on 127.0.0.1 against the Ollama-protocol test server, driven by headless Chromium
(the fixtures of test_ui_browser.py). Screenshots go to the test's temporary folder and, when set, $DUOLOGUE_SHOTS_DIR.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from support import shots
from support.fakeollama import FakeModel, fake_ollama
from support.pageserver import duologue_ui

from graphs import RunStore

from . import test_ui_browser as shared

pytestmark = shared.pytestmark  # Chromium and its driver, or skipped
browser = shared.browser  # the headless Chromium fixture

GB = 2**30


@pytest.fixture
def host_with_models(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """`duologue ui` on a host that has two models, the 20 GB one pulled last."""
    models = [
        FakeModel("glm-4.7-flash", weights_bytes=5 * GB, modified_at="2026-03-01T10:00:00Z"),
        FakeModel("qwen3:32b", weights_bytes=20 * GB, modified_at="2026-04-01T10:00:00Z"),
    ]
    runs_dir = tmp_path / "runs"
    with (
        fake_ollama(models) as (server, _backend),
        duologue_ui(runs_dir, tmp_path / "streamlit.log", host=server.url) as ui,
    ):
        yield ui.url, runs_dir


def shot(driver, tmp_path: Path, name: str) -> None:
    path = tmp_path / f"{name}.png"
    driver.save_screenshot(str(path))
    shots.keep(path, f"{name}.png")


def test_the_launch_page_defaults_to_the_hosts_models_and_checks_them(host_with_models, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    url, runs_dir = host_with_models
    driver = browser
    wait = WebDriverWait(driver, 90)

    def participant(name: str) -> str:
        return driver.find_element(By.CSS_SELECTOR, f".st-key-participant-{name}").text

    def model(name: str) -> str:
        """The model the participant's selectbox shows chosen."""
        box = driver.find_element(By.CSS_SELECTOR, f".st-key-participant-{name} input[aria-label='Model']")
        return box.get_attribute("value") or ""

    driver.get(url)
    wait.until(lambda d: "temperature" in participant("b"), message="the launch page did not load")
    a, b = participant("a"), participant("b")
    # The host's models, the one pulled last first, each with its size and fit; no embedded one.
    assert (model("a"), model("b")) == ("qwen3:32b", "glm-4.7-flash")
    assert "Model\n20.0 GB on disk" in a, a
    assert "Model\n5.0 GB on disk" in b, b
    assert "the host has shown no GPU" in a
    assert driver.find_element(By.XPATH, "//input[@aria-label='num_predict']")
    shot(driver, tmp_path, "launch-defaults")

    wait.until(ec.element_to_be_clickable((By.XPATH, "//button[normalize-space(.)='Check']"))).click()
    body = lambda: driver.find_element(By.TAG_NAME, "body").text  # noqa: E731
    wait.until(lambda d: "together: no" in body(), message="Check showed no findings")
    text = body()
    assert "A run would go, but: " in text and "residency auto swaps them" in text
    assert "loaded alone: 100% GPU, 20.0 GB" in text
    # What the check left loaded is in the fit notes now; no run was started.
    wait.until(lambda d: "loaded now, with its context (100% GPU)" in participant("b"))
    assert RunStore(runs_dir).list() == []
    report = driver.find_element(By.CSS_SELECTOR, "[data-testid=stCode]")
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", report)
    shot(driver, tmp_path, "launch-check")
