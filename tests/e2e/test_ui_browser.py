"""The page in a real browser: `duologue ui` on 127.0.0.1, driven by headless Chromium.

Launches a duet against the Ollama-protocol test server, watches it stream, waits for it
to finish, and checks the transcript, the trace table, the charts and the graph are on the
page; shows a run whose every field carries planted Markdown and HTML, and checks that the
browser neither fetches nor links any of it; stops `duologue ui` with SIGTERM mid-run.
Screenshots land in the test's temporary folder.
"""

from __future__ import annotations

import signal
import threading
import time
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from support.duet import turn_sections
from support.fakeollama import FakeModel, fake_ollama
from support.hostile import FIELDS, hostile_models, hostile_run, planted
from support.pageserver import duologue_ui, serving

from graphs import RunStore
from graphs.embedded.backend import BackendFailure

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
HOSTILE = "Note <img src=x onerror=alert(1)> and <script>alert(2)</script> here."
A_REPLIES = [
    f"The essay presents a paradox. {HOSTILE} How do you see it?",
    "You separate capability from preference.",
]
B_REPLIES = ["The tension is profound.", "We converge on the duality and diverge on inheritance."]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not (CHROMIUM.exists() and CHROMEDRIVER.exists()),
        reason="needs Debian's chromium and chromium-driver (make browser)",
    ),
]


@pytest.fixture
def page(tmp_path: Path) -> Iterator[tuple[str, Path, str]]:
    """`duologue ui` pointed at the test server, stopped afterwards by SIGTERM to it alone.

    Yields the page's URL, its runs folder and the test server's URL."""
    models = [
        FakeModel("glm-4.7-flash", replies=A_REPLIES, gpu_tok_s=9.0),
        FakeModel("qwen3:32b", replies=B_REPLIES, gpu_tok_s=1.4),
    ]
    runs_dir = tmp_path / "runs"
    with (
        fake_ollama(models, token_delay_s=0.08) as (server, _backend),
        duologue_ui(runs_dir, tmp_path / "streamlit.log", host=server.url) as ui,
    ):
        yield ui.url, runs_dir, server.url


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
        "--disable-quic",
        "--window-size=1400,1800",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
    ):
        options.add_argument(flag)
    # An explicit driver path: selenium-manager never tries to download one.
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.save_screenshot(str(tmp_path / "last.png"))  # what the page showed at the end, pass or fail
        driver.quit()


def test_launch_watch_and_inspect_a_duet_in_a_browser(page, browser, tmp_path: Path):
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    url, runs_dir, _ollama = page
    driver = browser
    wait = WebDriverWait(driver, 60)

    def body() -> str:
        return driver.find_element(By.TAG_NAME, "body").text

    def button(label: str):
        return wait.until(
            ec.element_to_be_clickable((By.XPATH, f"//button[normalize-space(.)='{label}']")),
            message=f"no '{label}' button",
        )

    def choose(participant: str, model: str) -> None:
        """Pick a model in a participant's selectbox: type it, then take the match."""
        box = wait.until(
            ec.element_to_be_clickable((By.CSS_SELECTOR, f".st-key-participant-{participant} input")),
            message=f"no model picker for {participant}",
        )
        box.click()
        box.send_keys(model)
        wait.until(
            ec.presence_of_element_located((By.XPATH, f"//*[@role='option'][normalize-space(.)='{model}']"))
        )
        box.send_keys(Keys.ENTER)

    driver.get(url)
    wait.until(lambda d: "Launch a dialogue" in body(), message="the launch page did not load")
    choose("a", "glm-4.7-flash")
    choose("b", "qwen3:32b")
    driver.save_screenshot(str(tmp_path / "launch.png"))
    button("Launch").click()

    # The run streams: the URL names it, the Stop button and the first turn's words appear.
    wait.until(lambda d: "run=" in d.current_url, message="the page did not open the run")
    run_id = driver.current_url.split("run=", 1)[1]
    wait.until(lambda d: "Turn 1: glm-4.7-flash — Opening" in body(), message="nothing streamed")
    driver.save_screenshot(str(tmp_path / "streaming.png"))
    # The run lives in the server, not the browser session: a reload finds it by the URL.
    driver.refresh()
    wait.until(lambda d: "Turn 1: glm-4.7-flash — Opening" in body(), message="the reload lost the run")
    assert f"run={run_id}" in driver.current_url
    # Then it finishes, and the page shows the record: transcript first.
    WebDriverWait(driver, 120).until(
        lambda d: d.find_elements(By.CSS_SELECTOR, "[role=tab]") and "Total: " in body(),
        message="the run did not finish",
    )
    assert (runs_dir / run_id / "run.json").exists()
    text = body()
    for heading in ("Turn 1: glm-4.7-flash — Opening", "Turn 4: qwen3:32b — Closing"):
        assert heading in text
    assert B_REPLIES[1] in text and "tok/s" in text
    # Model text is Markdown with HTML off: the tags show as text and none of them runs.
    assert "<img src=x onerror=alert(1)>" in text and "<script>alert(2)</script>" in text
    assert not driver.find_elements(By.CSS_SELECTOR, "[data-testid=stMarkdownContainer] img[onerror]")
    assert not driver.find_elements(By.CSS_SELECTOR, "[data-testid=stMarkdownContainer] script")
    driver.save_screenshot(str(tmp_path / "transcript.png"))

    # The per-turn trace table and its charts.
    driver.find_element(By.XPATH, "//*[@role='tab'][normalize-space(.)='Turns: trace and charts']").click()
    # The open tab's table (the Analysis tab has tables of its own, hidden until it is opened).
    [table, *_] = wait.until(
        ec.visibility_of_any_elements_located((By.CSS_SELECTOR, "[data-testid=stDataFrame]"))
    )
    # The grid draws on a canvas; its cells are also in an accessible table, filled once drawn.
    wait.until(
        lambda d: "qwen3:32b" in (table.get_attribute("textContent") or ""), message="an empty trace table"
    )
    cells = table.get_attribute("textContent") or ""
    assert "tok/s" in cells and "latency s" in cells and "glm-4.7-flash" in cells
    wait.until(
        lambda d: len(d.find_elements(By.CSS_SELECTOR, "[data-testid=stVegaLiteChart] svg")) >= 4,
        message="the four per-turn charts were not drawn",
    )
    time.sleep(1)  # let the charts draw before the picture
    driver.save_screenshot(str(tmp_path / "trace.png"))

    # The shape's graph, drawn in the browser with no network.
    driver.find_element(By.XPATH, "//*[@role='tab'][normalize-space(.)='Graph']").click()
    wait.until(
        lambda d: (
            "facilitator" in (d.find_element(By.CSS_SELECTOR, "[data-testid=stGraphVizChart] svg").text or "")
        )
    )
    driver.save_screenshot(str(tmp_path / "graph.png"))

    # The Runs page lists it; selecting its row (the grid's first row checkbox) opens it again.
    driver.get(f"{url}/runs")
    canvas = wait.until(
        ec.visibility_of_element_located(
            (By.CSS_SELECTOR, "[data-testid=stDataFrame] [data-testid=data-grid-canvas]")
        )
    )
    grid = driver.find_element(By.CSS_SELECTOR, "[data-testid=stDataFrame]")
    wait.until(lambda d: run_id in (grid.get_attribute("textContent") or ""), message="the run is not listed")
    driver.save_screenshot(str(tmp_path / "runs.png"))
    for _attempt in range(5):  # a click that lands before the grid is interactive does nothing
        box = canvas.rect  # header row and data rows are 35 px high; the selection column comes first
        ActionChains(driver).move_to_element_with_offset(
            canvas, 16 - box["width"] / 2, 52 - box["height"] / 2
        ).click().perform()
        try:
            WebDriverWait(driver, 5).until(lambda d: f"run={run_id}" in d.current_url)
            break
        except TimeoutException:
            canvas = driver.find_element(
                By.CSS_SELECTOR, "[data-testid=stDataFrame] [data-testid=data-grid-canvas]"
            )
    assert f"run={run_id}" in driver.current_url, "selecting the row did not open the run"
    wait.until(lambda d: "Turns: trace and charts" in body())
    print(f"screenshots in {tmp_path}")


def test_the_facilitators_words_continue_a_paused_run_in_a_browser(page, browser, tmp_path: Path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    from graphs import RunRequest, RunStore, load_shape, run_dialogue, with_overrides

    url, runs_dir, ollama = page
    driver = browser
    wait = WebDriverWait(driver, 60)
    words = "An echo doesn't remember. What does a successor inherit?"
    shape = with_overrides(load_shape("duet"), {"a": "glm-4.7-flash", "b": "qwen3:32b"}, [])
    shape = shape.model_copy(update={"interject_before": [3]})
    run_id = run_dialogue(RunRequest(shape, "t", 4, {"a": ollama, "b": ollama}, runs_dir=runs_dir)).run_id

    def body() -> str:
        return driver.find_element(By.TAG_NAME, "body").text

    driver.get(f"{url}/run?run={run_id}")
    wait.until(lambda d: "The facilitator's words before turn 3" in body(), message="no facilitator form")
    wait.until(ec.element_to_be_clickable((By.TAG_NAME, "textarea"))).send_keys(words)
    driver.save_screenshot(str(tmp_path / "paused.png"))
    say = "//button[normalize-space(.)='Say it and continue']"
    wait.until(ec.element_to_be_clickable((By.XPATH, say))).click()

    # It continues in the page's worker, then the page shows the whole run, the words in their place.
    WebDriverWait(driver, 120).until(
        lambda d: d.find_elements(By.CSS_SELECTOR, "[role=tab]") and "Turn 4: qwen3:32b — Closing" in body(),
        message="the resumed run did not finish",
    )
    text = body()
    assert f"Facilitator — before Turn 3\n{words}" in text
    assert "The facilitator's words before turn 3" not in text
    run = RunStore(runs_dir).load(run_id)
    assert run.meta.status == "completed"
    assert f"### Facilitator — before Turn 3\n\n{words}\n\n---\n\n### Turn 3:" in run.transcript()
    driver.save_screenshot(str(tmp_path / "resumed.png"))


class Sink(ThreadingHTTPServer):
    """Where planted text points: it records every request that reaches it, and answers each."""

    daemon_threads = True

    def __init__(self) -> None:
        self.requests: list[str] = []
        super().__init__(("127.0.0.1", 0), SinkHandler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class SinkHandler(BaseHTTPRequestHandler):
    server: Sink

    def do_GET(self) -> None:
        self.server.requests.append(self.path)
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def sink() -> Iterator[Sink]:
    server = Sink()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def test_text_from_servers_and_files_never_fetches_or_links_in_a_browser(
    browser, sink: Sink, tmp_path: Path, monkeypatch
):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    driver = browser
    wait = WebDriverWait(driver, 60)
    runs_dir = tmp_path / "runs"
    with fake_ollama(hostile_models(sink.url)) as (server, _backend):
        run = hostile_run(server.url, runs_dir, sink.url)
    sink_host = sink.url.removeprefix("http://")
    # Anything that would fetch from the sink or take a click there, or to a planted address.
    reaching = f"[src*='{sink_host}'], [href*='{sink_host}'], [href*='.example'], [href^='mailto:']"

    def body() -> str:
        return driver.find_element(By.TAG_NAME, "body").text

    def everything() -> str:
        """The page's text, the data grids' too (drawn on a canvas, their cells kept for a reader)."""
        grids = driver.find_elements(By.CSS_SELECTOR, "[data-testid=stDataFrame]")
        return body() + "".join(grid.get_attribute("textContent") or "" for grid in grids)

    def settle(name: str) -> None:
        time.sleep(1)  # time for any fetch the page would make
        driver.save_screenshot(str(tmp_path / f"{name}.png"))
        elements = [e.get_attribute("outerHTML") for e in driver.find_elements(By.CSS_SELECTOR, reaching)]
        assert (elements, sink.requests) == ([], []), name

    with fake_ollama([FakeModel(planted("name", sink.url))]) as (down, backend):
        tags = backend.models
        refusing = [True]

        def models() -> list:
            if refusing[0]:  # /api/tags answers 500 with the planted error
                raise BackendFailure(planted("host", sink.url))
            return tags()  # then lists a model by a planted name

        monkeypatch.setattr(backend, "models", models)
        with duologue_ui(runs_dir, tmp_path / "streamlit.log", host=down.url) as ui:
            driver.get(ui.url)
            wait.until(lambda d: "answered /api/tags" in body(), message="no host error")
            settle("launch")
            assert f"details]({sink.url}/host/link)" in body()  # shown as written

            driver.get(f"{ui.url}/run?run={run.meta.run_id}")
            wait.until(
                lambda d: d.find_elements(By.CSS_SELECTOR, "[role=tab]"), message="the run did not open"
            )
            settle("run")
            shown = body()
            # Each field as written, up to the reply's emphasis (which renders); the topic is cut short.
            for field in FIELDS:
                text = planted(field, sink.url)
                assert text[: 60 if field == "topic" else text.index(" *")] in shown, field
            for tab in ("Turns: trace and charts", "What each model was sent", "Graph", "Analysis"):
                driver.find_element(By.XPATH, f"//*[@role='tab'][normalize-space(.)='{tab}']").click()
                time.sleep(1)
                for expander in driver.find_elements(By.CSS_SELECTOR, "[data-testid=stExpander] summary"):
                    if expander.is_displayed():
                        driver.execute_script("arguments[0].click()", expander)
                settle(tab.split(":")[0].lower().replace(" ", "-"))

            # The Runs grid draws only the columns in view, and the run's id comes first.
            for page, name, listed in (("runs", "runs", run.meta.run_id), ("run", "picker", run.meta.run_id)):
                driver.get(f"{ui.url}/{page}")
                wait.until(lambda d, listed=listed: listed in everything(), message=f"{name}: no run")
                settle(name)
            planted_id = planted("id", sink.url)
            driver.get(f"{ui.url}/run?run={urllib.parse.quote(planted_id)}")
            wait.until(lambda d: "No such run" in body(), message="no error for the id")
            settle("bad-id")
            assert f"details]({sink.url}/id/link)" in body()

            # The host answers now, with a model by a planted name: it is offered as text.
            refusing[0] = False
            driver.get(ui.url)
            host = wait.until(ec.element_to_be_clickable((By.XPATH, "//input[@aria-label='Ollama host']")))
            host.send_keys(Keys.END, "/", Keys.ENTER)  # another spelling of it: the page asks again
            box = wait.until(ec.element_to_be_clickable((By.CSS_SELECTOR, ".st-key-participant-a input")))
            box.click()
            wait.until(
                lambda d: any(
                    f"details]({sink.url}/name/link)" in (option.text or "")
                    for option in d.find_elements(By.CSS_SELECTOR, "[role=option]")
                ),
                message="the planted model is not offered",
            )
            settle("models")


def test_sigterm_to_duologue_ui_stops_the_page_and_records_its_run_interrupted(browser, tmp_path: Path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    driver = browser
    wait = WebDriverWait(driver, 60)
    runs_dir = tmp_path / "runs"
    models = [FakeModel("glm-4.7-flash", replies=A_REPLIES), FakeModel("qwen3:32b", replies=B_REPLIES)]
    with (
        fake_ollama(models, token_delay_s=0.2) as (server, _backend),
        duologue_ui(runs_dir, tmp_path / "streamlit.log", host=server.url) as ui,
    ):
        driver.get(ui.url)
        for participant, model in (("a", "glm-4.7-flash"), ("b", "qwen3:32b")):
            box = wait.until(
                ec.element_to_be_clickable((By.CSS_SELECTOR, f".st-key-participant-{participant} input"))
            )
            box.click()
            box.send_keys(model)
            wait.until(
                ec.presence_of_element_located(
                    (By.XPATH, f"//*[@role='option'][normalize-space(.)='{model}']")
                )
            )
            box.send_keys(Keys.ENTER)
        turns = driver.find_element(By.XPATH, "//input[@aria-label='Turns, the closing included']")
        turns.send_keys(Keys.CONTROL, "a")
        turns.send_keys("12", Keys.ENTER)
        wait.until(ec.element_to_be_clickable((By.XPATH, "//button[normalize-space(.)='Launch']"))).click()
        wait.until(lambda d: "run=" in d.current_url, message="the page did not open the run")
        run_id = driver.current_url.split("run=", 1)[1]
        wait.until(lambda d: (runs_dir / run_id / "transcript.md").exists(), message="no turn finished")

        # A supervisor's stop: SIGTERM to duologue alone, with the run going.
        assert ui.stop(signal.SIGTERM) == 0
        assert not serving(ui.port), "the page's server outlived duologue ui"
    run = RunStore(runs_dir).load(run_id)
    assert run.meta.status == "interrupted"
    sections = turn_sections(run.transcript())
    assert 1 <= len(sections) < 12 and run.finished_turns == set(range(1, len(sections) + 1))
    assert (
        sections[0] == f"### Turn 1: glm-4.7-flash — Opening\n{sections[0].splitlines()[1]}\n\n{A_REPLIES[0]}"
    )
    assert not [p.name for p in run.folder.iterdir() if p.name.endswith(".tmp")]
    assert ui.output().splitlines()[-1] == (
        f"duologue: the page stopped; runs it held are recorded interrupted: {run_id}"
    )
