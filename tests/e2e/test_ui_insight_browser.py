"""The page's insight in a real browser: an imported run's Analysis, and the Compare page.

The reference transcript is imported twice into the runs folder `duologue ui` serves; the
browser opens the first run's Analysis tab and the Compare page for both. Screenshots land
in the test's temporary folder.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from support import ROOT
from support.pageserver import duologue_ui

from graphs import import_transcript

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
SEED = ROOT / "tests" / "support" / "data" / "seed-dialogue.md"

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
        "--window-size=1400,2200",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.save_screenshot(str(tmp_path / "last.png"))
        driver.quit()


def test_an_imported_runs_analysis_and_the_compare_page_in_a_browser(browser, tmp_path: Path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    runs_dir = tmp_path / "runs"
    first = import_transcript(SEED, runs_dir).run_id
    second = import_transcript(SEED, runs_dir).run_id
    driver = browser
    wait = WebDriverWait(driver, 60)

    def body() -> str:
        return driver.find_element(By.TAG_NAME, "body").text

    def grids() -> str:
        return " ".join(g.get_attribute("textContent") or "" for g in driver.find_elements(
            By.CSS_SELECTOR, "[data-testid=stDataFrame]"
        ))  # fmt: skip

    with duologue_ui(runs_dir, tmp_path / "streamlit.log") as ui:
        driver.get(f"{ui.url}/run?run={first}")
        tab = wait.until(
            lambda d: next(
                (t for t in d.find_elements(By.CSS_SELECTOR, "[role=tab]") if t.text == "Analysis"), None
            ),
            message="no Analysis tab",
        )
        tab.click()
        wait.until(lambda d: "Converged" in body(), message="no verdict")
        wait.until(lambda d: "Phrases taken up" in body())
        wait.until(lambda d: "fiction of coherence" in grids(), message="no phrase lineage row")
        assert "The closing's account of each position" in body()
        assert "Observer's notes (Nox, Opus 4.6)" in body()
        driver.save_screenshot(str(tmp_path / "analysis.png"))

        driver.get(f"{ui.url}/compare?runs={first},{second}")
        wait.until(lambda d: "verdict" in grids() and "converged" in grids(), message="no Compare table")
        assert first in grids() and second in grids()
        driver.save_screenshot(str(tmp_path / "compare.png"))
    print(f"screenshots in {tmp_path}")
