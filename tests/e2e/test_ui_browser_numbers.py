"""A run whose second model spilled to the CPU, in a real browser: it cannot be missed.

qwen3:32b (30 GB) does not fit the test server's emulated 24 GB card, so the engine records
its turns as `CPU 20%`; the finished run's page marks their transcript headings and trace rows
in red and shows each model's own tok/s in the header. Screenshots of the Transcript and Turns
tabs land in the test's temporary folder and, when set, $DUOLOGUE_SHOTS_DIR.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support import shots
from support.duet import A_REPLIES, B_REPLIES
from support.fakeollama import FakeModel, fake_ollama
from support.pageserver import duologue_ui

from graphs import RunRequest, RunStore, load_shape, run_dialogue, with_overrides

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
GB = 2**30

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not (CHROMIUM.exists() and CHROMEDRIVER.exists()),
        reason="needs Debian's chromium and chromium-driver (make browser)",
    ),
]


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
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
        "--window-size=1400,2400",
        "--force-device-scale-factor=1",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.save_screenshot(str(tmp_path / "last.png"))
        driver.quit()


def shot(driver: Any, tmp_path: Path, name: str) -> None:
    driver.save_screenshot(str(tmp_path / f"{name}.png"))
    shots.keep(tmp_path / f"{name}.png", f"numbers-{name}.png")


def is_red(rgb: list[int]) -> bool:
    red, green, blue = rgb[:3]
    return red > 150 and red - green > 60 and red - blue > 60


# What the page draws, read in the browser: a heading's text colour, a grid cell's pixel.
HEADING_COLOUR = """
const heading = [...document.querySelectorAll('h3')].find(h => h.textContent.includes(arguments[0]));
if (!heading) return null;
const holding = [heading, ...heading.querySelectorAll('*')].filter(e => e.textContent.includes(arguments[0]));
const inner = holding[holding.length - 1];  // the innermost element that holds the whole text
return getComputedStyle(inner).color.match(/\\d+/g).map(Number);
"""
CELL_PIXEL = """
const canvas = document.querySelector('[data-testid=stDataFrame] [data-testid=data-grid-canvas]');
const scale = canvas.width / canvas.getBoundingClientRect().width;
const pixel = canvas.getContext('2d').getImageData(arguments[0] * scale, arguments[1] * scale, 1, 1).data;
return [...pixel];
"""
ROW_PX = 35
"""The grid's header and rows are each 35 px high."""


def test_a_model_spilled_to_the_cpu_is_marked_red_on_its_heading_and_row(browser, tmp_path: Path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    runs_dir = tmp_path / "runs"
    models: list[FakeModel | str] = [
        FakeModel("glm-4.7-flash", weights_bytes=10 * GB, gpu_tok_s=90.0, replies=A_REPLIES),
        FakeModel("qwen3:32b", weights_bytes=30 * GB, gpu_tok_s=32.0, thinks=True, replies=B_REPLIES),
    ]
    with fake_ollama(models, vram_bytes=24 * GB, token_delay_s=0.02) as (server, _backend):
        models_of = {"a": "glm-4.7-flash", "b": "qwen3:32b"}
        shape = with_overrides(
            load_shape("duet"), models_of, [("a", "min_tok_s", "50"), ("b", "min_tok_s", "25")]
        )
        hosts = {"a": server.url, "b": server.url}
        request = RunRequest(
            shape, "t", 4, hosts, runs_dir=runs_dir, residency_policy="shared", require_gpu=False
        )
        run_id = run_dialogue(request).run_id
    run = RunStore(runs_dir).load(run_id)
    assert [r.flags[0] if r.flags else "" for r in run.turn_records] == ["", "CPU 20%", "", "CPU 20%"]

    driver = browser
    wait = WebDriverWait(driver, 60)
    with duologue_ui(runs_dir, tmp_path / "streamlit.log") as ui:
        driver.get(f"{ui.url}/run?run={run_id}")

        def body() -> str:
            return driver.find_element(By.TAG_NAME, "body").text

        wait.until(lambda d: "Turn 4: qwen3:32b — Closing" in body(), message="the run did not open")
        wait.until(lambda d: "glm-4.7-flash tok/s\n90.0" in body(), message="no tok/s for glm in the header")
        text = body()
        # The header: each model's own rate, and the CPU badge beside the one that fell back.
        assert "glm-4.7-flash tok/s\n90.0" in text
        assert "qwen3:32b tok/s\n" in text and "Mean tok/s" not in text
        assert "CPU 20%" in text.split("qwen3:32b tok/s", 1)[1].split("Flags:", 1)[0]
        # Its headings in red, the others not.
        for heading, red in (
            ("Turn 1: glm-4.7-flash — Opening", False),
            ("Turn 2: qwen3:32b — Response", True),
            ("Turn 3: glm-4.7-flash — Reply", False),
            ("Turn 4: qwen3:32b — Closing", True),
        ):
            colour = driver.execute_script(HEADING_COLOUR, heading)
            assert colour is not None and is_red(colour) == red, (heading, colour)
        # A finished turn's thinking opens below it.
        [opener, *_] = driver.find_elements(By.XPATH, "//summary[contains(., 'Thinking (')]")
        opener.click()
        thought = run.finished_records[2].thinking or ""
        wait.until(lambda d: thought in body(), message="the thinking did not open")
        shot(driver, tmp_path, "transcript")

        # The Turns tab: the trace table's rows for qwen3:32b in red, its flags whole.
        driver.find_element(
            By.XPATH, "//*[@role='tab'][normalize-space(.)='Turns: trace and charts']"
        ).click()
        [table, *_] = wait.until(
            ec.visibility_of_any_elements_located((By.CSS_SELECTOR, "[data-testid=stDataFrame]"))
        )
        wait.until(
            lambda d: "CPU 20%, slow, thinking" in (table.get_attribute("textContent") or ""),
            message="no flags in the trace table",
        )
        wait.until(
            lambda d: len(d.find_elements(By.CSS_SELECTOR, "[data-testid=stVegaLiteChart] svg")) >= 5,
            message="the charts and the timeline were not drawn",
        )
        driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", table)
        # A pixel near the left edge of each row's turn cell: its background, once the grid is drawn.

        def reddish() -> list[bool]:
            pixels = [
                driver.execute_script(CELL_PIXEL, 4, ROW_PX * row + ROW_PX // 2) for row in (1, 2, 3, 4)
            ]
            return [p[0] - p[1] > 20 and p[0] - p[2] > 20 for p in pixels]

        wait.until(lambda d: reddish() == [False, True, False, True], message="qwen3:32b's rows are not red")
        driver.execute_script("window.scrollTo(0, 0)")
        shot(driver, tmp_path, "turns")
