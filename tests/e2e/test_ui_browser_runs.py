"""The Runs page and the Shapes page in a real browser: `duologue ui` on 127.0.0.1, headless Chromium.

Runs written by hand fill the runs folder; the browser searches and filters the Runs table,
deletes a run through select mode and its confirming click, and reads the Shapes page's graphs
and files. Screenshots land in the test's temporary folder and, when set, $DUOLOGUE_SHOTS_DIR.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import shots
from support.pageserver import duologue_ui
from support.records import written_run

from graphs import builtin_shape_names

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
DUET = "20261201-101500-duet-0a1b2c3d"
DEBATE = "20261120-093000-debate-1b2c3d4e"
PANEL = "20261110-180000-panel-2c3d4e5f"
OLD_DUET = "20261001-070000-duet-3d4e5f60"
EVERY_RUN = [DUET, DEBATE, PANEL, OLD_DUET]

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
        "--window-size=1400,1800",
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
    """One screenshot in the test's folder, copied where the lead looks at them."""
    driver.save_screenshot(str(tmp_path / f"{name}.png"))
    shots.keep(tmp_path / f"{name}.png", f"{name}.png")


def four_runs(runs_dir: Path) -> None:
    written_run(
        runs_dir, DUET, "duet", ["glm-4.7-flash", "qwen3:32b"], "completed", "2026-12-01T10:15:00.000Z",
        "Inherited memory: who owes what to a predecessor?",
        "# duet\n\n## Turn 1\n\nA keeper of the Lighthouse owes the ships nothing.\n",
        gpu_fraction=0.5,
    )  # fmt: skip
    written_run(
        runs_dir, DEBATE, "debate", ["llama3.1:8b", "qwen3:32b"], "failed", "2026-11-20T09:30:00.000Z",
        "Is free will compatible with physics?", "# debate\n\n## Turn 1\n\nDeterminism is the point.\n",
    )  # fmt: skip
    written_run(
        runs_dir, PANEL, "panel", ["gemma3:12b"], "interrupted", "2026-11-10T18:00:00.000Z",
        "Cities after cars", "# panel\n\n## Turn 1\n\nStreets are for people.\n", truncated=True,
    )  # fmt: skip
    written_run(
        runs_dir, OLD_DUET, "duet", ["glm-4.7-flash"], "completed", "2026-10-01T07:00:00.000Z",
        "An old topic", "# duet\n\n## Turn 1\n\nNothing of note.\n",
    )  # fmt: skip


def test_the_runs_filters_narrow_the_list_and_a_run_is_deleted_in_a_browser(browser, tmp_path: Path):
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    runs_dir = tmp_path / "runs"
    four_runs(runs_dir)
    driver = browser
    wait = WebDriverWait(driver, 60)

    def body() -> str:
        return driver.find_element(By.TAG_NAME, "body").text

    def listed() -> list[str]:
        """The run ids the grid holds (its cells are also in an accessible table, filled once drawn)."""
        grids = driver.find_elements(By.CSS_SELECTOR, "[data-testid=stDataFrame]")
        text = " ".join(grid.get_attribute("textContent") or "" for grid in grids)
        return [run_id for run_id in EVERY_RUN if run_id in text]

    def until_listed(expected: list[str], what: str) -> None:
        wait.until(lambda d: listed() == expected, message=f"{what}: the grid lists {listed()}")

    def pick(key: str, option: str) -> None:
        """Choose an option in a multiselect: type it, then take the match."""
        box = wait.until(ec.element_to_be_clickable((By.CSS_SELECTOR, f".st-key-{key} input")))
        box.click()
        box.send_keys(option)
        wait.until(
            ec.presence_of_element_located((By.XPATH, f"//*[@role='option'][normalize-space(.)='{option}']"))
        )
        box.send_keys(Keys.ENTER)
        box.send_keys(Keys.ESCAPE)

    with duologue_ui(runs_dir, tmp_path / "streamlit.log") as ui:
        driver.get(f"{ui.url}/runs")
        until_listed(EVERY_RUN, "the Runs page")
        wait.until(lambda d: "Showing 4 of 4 runs" in body())
        time.sleep(1)  # let the grid draw before the picture
        shot(driver, tmp_path, "runs-all")

        # A search: the word is in one transcript only, in another case.
        def search():
            return driver.find_element(By.CSS_SELECTOR, ".st-key-runs-search input")

        search().send_keys("LIGHTHOUSE", Keys.ENTER)
        until_listed([DUET], "the search")
        wait.until(lambda d: "Showing 1 of 4 runs" in body())
        time.sleep(1)
        shot(driver, tmp_path, "runs-search")
        search().send_keys(Keys.CONTROL, "a")
        search().send_keys(Keys.DELETE, Keys.ENTER)
        until_listed(EVERY_RUN, "the search cleared")

        # Filters: a shape, then a flag as well.
        pick("runs-shape", "duet")
        until_listed([DUET, OLD_DUET], "the shape filter")
        pick("runs-flag", "CPU")
        until_listed([DUET], "the shape and flag filters")
        wait.until(lambda d: "Showing 1 of 4 runs" in body())
        time.sleep(1)
        shot(driver, tmp_path, "runs-filtered")

        # Delete: select mode, the row's checkbox, Delete, then the confirming click.
        driver.get(f"{ui.url}/runs")
        until_listed(EVERY_RUN, "the Runs page again")
        driver.find_element(By.CSS_SELECTOR, ".st-key-compare-mode label").click()
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, ".st-key-delete-selected button"))

        def delete_button():
            buttons = driver.find_elements(By.CSS_SELECTOR, ".st-key-delete-selected button")
            return buttons[0] if buttons and buttons[0].text.strip().endswith("Delete 1 run…") else None

        for _attempt in range(5):  # a click that lands before the grid is interactive does nothing
            canvas = wait.until(
                ec.visibility_of_element_located(
                    (By.CSS_SELECTOR, "[data-testid=stDataFrame] [data-testid=data-grid-canvas]")
                )
            )
            box = canvas.rect  # rows are 35 px high under a 35 px header; PANEL is the third row
            ActionChains(driver).move_to_element_with_offset(
                canvas, 16 - box["width"] / 2, 35 * 3 + 17 - box["height"] / 2
            ).click().perform()
            try:
                WebDriverWait(driver, 15).until(lambda d: delete_button())
                break
            except TimeoutException:
                continue
        wait.until(lambda d: delete_button(), message="selecting the row did not arm Delete").click()
        wait.until(lambda d: f"Delete run {PANEL} for good?" in body(), message="no confirmation")
        assert (runs_dir / PANEL).is_dir()
        shot(driver, tmp_path, "runs-delete-confirm")
        driver.find_element(By.CSS_SELECTOR, ".st-key-delete-confirm button").click()
        wait.until(lambda d: f"Deleted 1 run: {PANEL}" in body(), message="no word of the deletion")
        until_listed([DUET, DEBATE, OLD_DUET], "after the deletion")
        assert not (runs_dir / PANEL).exists()
        time.sleep(1)
        shot(driver, tmp_path, "runs-deleted")
    print(f"screenshots in {tmp_path}")


def test_the_shapes_page_draws_readable_graphs_and_wraps_files_in_a_browser(browser, tmp_path: Path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver = browser
    wait = WebDriverWait(driver, 60)
    persona = "You argue " + "and then argue again, " * 20 + "until the end."
    own = tmp_path / "long-lines.yaml"
    own.write_text(
        f"name: mine\nparticipants:\n  - name: a\n    model: m\n    persona: {persona}\n"
        "  - name: b\n    model: n\norder: [a, b]\nturns: 4\nclosing: {speaker: next}\n"
    )

    def graphs() -> list:
        return driver.find_elements(By.CSS_SELECTOR, "[data-testid=stGraphVizChart] svg")

    with duologue_ui(tmp_path / "runs", tmp_path / "streamlit.log") as ui:
        driver.get(f"{ui.url}/shapes")
        wait.until(
            lambda d: (
                len(graphs()) == len(builtin_shape_names()) and all("facilitator" in g.text for g in graphs())
            )
        )
        time.sleep(1)
        # Every label is drawn at least as tall as the page's own small text (about 14 px).
        heights = driver.execute_script(
            "return [...document.querySelectorAll('[data-testid=stGraphVizChart] svg text')]"
            ".map(t => t.getBoundingClientRect().height)"
        )
        assert heights and min(heights) >= 14, sorted(heights)[:5]
        shot(driver, tmp_path, "shapes")
        driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", graphs()[2])  # the panel
        time.sleep(1)
        shot(driver, tmp_path, "shapes-panel")

        driver.find_element(By.CSS_SELECTOR, ".st-key-own-shape input[type=file]").send_keys(str(own))
        wait.until(lambda d: "long-lines.yaml is a valid shape: mine, 2 participants." in d.page_source)
        [code] = wait.until(
            lambda d: [c for c in d.find_elements(By.CSS_SELECTOR, "pre code") if "until the end." in c.text]
        )
        # The whole persona line is on the page, wrapped: nothing scrolls sideways.
        assert "and then argue again, " * 20 in " ".join(code.text.split("\n")) + " "
        overflow = driver.execute_script("return arguments[0].scrollWidth - arguments[0].clientWidth", code)
        assert overflow <= 1, overflow
        driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", code)
        time.sleep(1)
        shot(driver, tmp_path, "shapes-own-file")
    print(f"screenshots in {tmp_path}")
