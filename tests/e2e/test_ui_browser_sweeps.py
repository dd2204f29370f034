"""The Sweeps page in a real browser: `duologue ui` on 127.0.0.1, headless Chromium.

A sweep written by hand (support.sweeps) has a cell running, held by this test's process; the
page shows it running, then, with no reload, completed once the test finishes it; a click on a
cell's link opens its run. Screenshots land in the test's folder and, when set, $DUOLOGUE_SHOTS_DIR.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import shots
from support.pageserver import duologue_ui
from support.records import trace_record
from support.sweeps import RUNS, written_sweep

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not (CHROMIUM.exists() and CHROMEDRIVER.exists()),
        reason="needs Debian's chromium and chromium-driver (make browser)",
    ),
]


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
        "--window-size=1600,1400",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.save_screenshot(str(tmp_path / "last.png"))
        driver.quit()


def shot(driver, tmp_path: Path, name: str) -> None:
    driver.save_screenshot(str(tmp_path / f"{name}.png"))
    shots.keep(tmp_path / f"{name}.png", f"{name}.png")


def test_the_sweeps_grid_follows_a_running_cell_and_links_into_its_run(browser, tmp_path: Path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    runs_dir = tmp_path / "runs"
    sweep_id, writers = written_sweep(runs_dir, tmp_path)
    running = writers[3]
    driver = browser
    wait = WebDriverWait(driver, 90)

    def body() -> str:
        return driver.find_element(By.TAG_NAME, "body").text

    def grid_text() -> str:
        grids = driver.find_elements(By.CSS_SELECTOR, "[data-testid=stDataFrame]")
        return " ".join(grid.get_attribute("textContent") or "" for grid in grids)

    with running.lock(), duologue_ui(runs_dir, tmp_path / "streamlit.log") as ui:
        driver.get(f"{ui.url}/sweeps")
        wait.until(lambda d: "4 cells: 2 completed, 1 pending, 1 running" in body(), message=body())
        wait.until(lambda d: all(run_id in grid_text() for run_id, *_ in RUNS.values()), message=grid_text())
        picker = driver.find_element(By.CSS_SELECTOR, ".st-key-sweep-picked")
        picker = " ".join(
            [picker.get_attribute("textContent") or ""]
            + [box.get_attribute("value") or "" for box in picker.find_elements(By.TAG_NAME, "input")]
        )
        assert f"{sweep_id} · 3 runs · from 2026-12-01 10:00 UTC" in picker, picker
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "[data-testid=stVegaLiteChart]")) == 2)
        time.sleep(1.5)  # the grid and the charts drawn, for the picture
        shot(driver, tmp_path, "sweeps-live")

        # The running cell finishes in another process (this one): the page shows it with no reload.
        running.append_trace(trace_record(running.run_id, 2, 2).model_copy(update={"completion_tokens": 10}))
        running.save_meta(status="completed")
        url = driver.current_url
        wait.until(lambda d: "4 cells: 3 completed, 1 pending" in body(), message=body())
        wait.until(lambda d: "2/4" in grid_text(), message=grid_text())
        assert driver.current_url == url and f"sweep={sweep_id}" in url
        time.sleep(1.5)
        shot(driver, tmp_path, "sweeps-grid")

        # A click on cell 1's link (the second column, first row) opens its run.
        first = RUNS[1][0]
        canvas = wait.until(
            ec.visibility_of_element_located(
                (By.CSS_SELECTOR, "[data-testid=stDataFrame] [data-testid=data-grid-canvas]")
            )
        )
        box = canvas.rect
        handles = set(driver.window_handles)
        for _attempt in range(5):  # a click before the grid is interactive does nothing
            ActionChains(driver).move_to_element_with_offset(
                canvas, 75 + 40 - box["width"] / 2, 35 + 17 - box["height"] / 2
            ).click().perform()
            try:
                WebDriverWait(driver, 10).until(
                    lambda d: set(d.window_handles) - handles or "/run" in d.current_url
                )
                break
            except Exception:  # noqa: BLE001 - any miss is another try
                continue
        opened = set(driver.window_handles) - handles
        if opened:
            driver.switch_to.window(opened.pop())
        wait.until(lambda d: f"run={first}" in d.current_url, message=driver.current_url)
        wait.until(lambda d: first in body() and "A first turn." in body(), message=body())
        time.sleep(1)
        shot(driver, tmp_path, "sweeps-run")
    print(f"screenshots in {tmp_path}")
