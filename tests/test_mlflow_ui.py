"""The MLflow UI in headless Chromium: two real training runs in a SQLite store, served by `mlflow server`, are
listed on the experiment's runs page with their test metric (and no bookkeeping run), and a run's page counts every
metric it logged and shows the test metric, each value equal to the one in the store, and the run's dataset.
Needs the Debian packages `chromium chromium-driver` (.ci/run installs them)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest
from mlflow.tracking import MlflowClient
from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from fusion.stages.train import train
from fusion.tracking.compare import compare_runs, log_comparison
from tests.helpers.browser import CHROMEDRIVER, CHROMIUM, browser_env, require_chromium
from tests.helpers.config import tiny_config

pytestmark = pytest.mark.slow

# Headless, no sandbox (root in CI), and nothing that talks to Google: no background networking, component
# updates, sync, first-run or default-browser pages, crash or domain-reliability reports, field trials.
CHROMIUM_ARGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-dev-shm-usage",
    "--disable-gpu",
    "--window-size=1600,1200",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-default-apps",
    "--disable-breakpad",
    "--disable-domain-reliability",
    "--disable-client-side-phishing-detection",
    "--disable-field-trial-config",
    "--metrics-recording-only",
    "--disable-features=OptimizationHints,MediaRouter,Translate",
)
# Run name (<modality slug>-<fusion>, as train.py names runs) -> the Hydra overrides that make it.
RUNS = {"text-late": ["modality=text", "fusion=late"], "text_image-late": ["modality=text+image", "fusion=late"]}
ONE_EPOCH = "trainer.max_epochs=1"  # the UI needs finished runs, not good ones
METRIC = "test/acc"
DATASET = "sample-train"  # the training split of data.root=data/sample, as the run logs it
SERVER_START_S = 120  # `mlflow server` imports MLflow and its FastAPI app before it answers
UI_WAIT_S = 60  # the UI's JavaScript bundle loads, then fetches the runs
NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # localhost, whatever *_proxy says
ASSISTANT_CLOSE = "mlflow.assistant.chat_panel.close"
ON_SCREEN_JS = """
const [el, scroll] = arguments;
if (scroll) el.scrollIntoView({block: 'center', inline: 'center'});
const box = el.getBoundingClientRect();
const hit = document.elementFromPoint(box.left + box.width / 2, box.top + box.height / 2);
return hit !== null && (hit === el || el.contains(hit));
"""


@pytest.fixture(scope="session")
def debian_chromium() -> None:
    """Before any training: skip without the browser locally, fail in CI (tests/helpers/browser.py)."""
    require_chromium(CHROMIUM, CHROMEDRIVER)


@pytest.fixture
def store(processed_dir, tmp_path) -> dict:
    """An MLflow SQLite store holding the finished runs of RUNS, trained by the project's own train()."""
    db, artifacts = tmp_path / "mlflow.db", tmp_path / "mlartifacts"
    uri = f"sqlite:///{db}"
    for name, overrides in RUNS.items():
        store_here = [f"logger.tracking_uri={uri}", f"logger.artifact_location={artifacts}"]
        cfg = tiny_config(tmp_path / name, processed_dir, [*overrides, ONE_EPOCH, *store_here])
        train(cfg)
    compare = log_comparison(compare_runs(uri, cfg.logger.experiment_name), "bookkeeping", [])  # not a training run
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name(cfg.logger.experiment_name)
    runs = {run.info.run_name: run for run in client.search_runs([experiment.experiment_id])}
    assert sorted(runs) == sorted(RUNS) and all(run.info.status == "FINISHED" for run in runs.values())
    return {
        "db": db,
        "artifacts": artifacts,
        "experiment_id": experiment.experiment_id,
        "runs": runs,
        "compare": compare,
    }


@pytest.fixture
def ui_url(store, tmp_path) -> Iterator[str]:
    """`mlflow server` on a free localhost port reading the store, once it answers; stopped (with its workers)
    afterwards."""
    port, log = _free_port(), tmp_path / "mlflow-server.log"
    args = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--backend-store-uri",
        f"sqlite:///{store['db']}",
        "--default-artifact-root",
        str(store["artifacts"]),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    # No telemetry; no background job runner (GenAI judges), which would only slow the start on a small machine.
    env = dict(
        os.environ, MLFLOW_DISABLE_TELEMETRY="true", DO_NOT_TRACK="true", MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false"
    )
    with log.open("w") as out:
        server = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_until_healthy(url, server, log)
        yield url
    finally:
        _stop(server)


@pytest.fixture
def browser(debian_chromium) -> Iterator[webdriver.Chrome]:
    """Headless Debian Chromium driven by the Debian chromedriver (its temporary folders removed afterwards)."""
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in CHROMIUM_ARGS:
        options.add_argument(arg)
    with browser_env() as env:
        driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER), env=env), options=options)
        try:
            yield driver
        finally:
            driver.quit()


def test_mlflow_ui_lists_the_runs_and_their_metrics(browser, ui_url, store, tmp_path):
    runs, experiment_id = store["runs"], store["experiment_id"]
    wait = Wait(browser)
    with evidence_on_failure(browser, tmp_path, "runs_page"):
        # The experiment's runs page (MLflow 3's `#/experiments/<id>` opens its GenAI overview instead).
        browser.get(f"{ui_url}/#/experiments/{experiment_id}/runs")
        links = {
            name: wait.until(
                ec.visibility_of_element_located(_run_link(run.info.run_id)),
                f"the runs table's link to run {name} ({run.info.run_id})",
            )
            for name, run in runs.items()
        }
        assert {name: link.text for name, link in links.items()} == {name: name for name in runs}
        # only training runs: the compare run went to the experiment's -reports experiment
        assert not browser.find_elements(*_run_link(store["compare"]))
        rows = {row.get_attribute("row-id") for row in browser.find_elements(By.CSS_SELECTOR, "[role=row][row-id]")}
        assert rows == {run.info.run_id for run in runs.values()}  # the grid repeats a row per pinned section
        _close_assistant(browser, wait)
        # Show the metric column as a person does: Columns, tick the metric, close the menu.
        browser.find_element(By.CSS_SELECTOR, "[data-testid=column-selection-dropdown]").click()
        wait.until(
            ec.element_to_be_clickable((By.CSS_SELECTOR, f"[role=dialog] span[title='{METRIC}']")),
            f"{METRIC} in the Columns menu",
        ).click()
        browser.find_element(By.TAG_NAME, "body").send_keys(Keys.ESCAPE)
        wait.until(ec.invisibility_of_element_located((By.CSS_SELECTOR, "[role=dialog]")), "the menu to close")
        shown = {
            name: wait.until(_on_screen(_metric_cell(run.info.run_id)), f"the {METRIC} cell of run {name}")
            for name, run in runs.items()
        }
        # The grid scrolls its header along with the body: scrolling the header itself would misalign them.
        wait.until(
            _on_screen((By.CSS_SELECTOR, f"[data-testid='sort-header-{METRIC}']"), scroll=False),
            f"the {METRIC} column header",
        )
        assert {name: float(cell.text) for name, cell in shown.items()} == {
            name: run.data.metrics[METRIC] for name, run in runs.items()
        }
        browser.save_screenshot(str(tmp_path / "runs_page.png"))

    name, run = "text_image-late", runs["text_image-late"]
    with evidence_on_failure(browser, tmp_path, "run_page"):
        links[name].click()  # the run's own page lists all its metrics
        wait.until(ec.url_contains(f"/runs/{run.info.run_id}"), f"the page of run {name}")
        count = f"Metrics ({len(run.data.metrics)})"
        wait.until(
            ec.visibility_of_element_located((By.XPATH, f"//*[normalize-space()='{count}']")),
            f"'{count}', the number of metrics in the store",
        )
        search = wait.until(
            ec.element_to_be_clickable((By.CSS_SELECTOR, "input[placeholder='Search metrics']")),
            "the Search metrics box",
        )
        search.send_keys(METRIC)
        value = wait.until(
            _on_screen((By.XPATH, f"//*[@role='row'][.//*[normalize-space()='{METRIC}']]/*[last()]")),
            f"the {METRIC} row of the metrics table",
        )
        assert float(value.text) == run.data.metrics[METRIC]
        # the run's dataset (fusion.tracking.datasets: one input per split, named <data folder>-<split>)
        wait.until(
            ec.visibility_of_element_located((By.XPATH, f"//*[contains(text(), '{DATASET}')]")),
            f"the run's dataset {DATASET}",
        )
        browser.save_screenshot(str(tmp_path / "run_page.png"))


class Wait(WebDriverWait):
    """WebDriverWait for UI_WAIT_S whose timeout names what it waited for."""

    def __init__(self, driver: webdriver.Chrome):
        super().__init__(driver, UI_WAIT_S)

    def until(self, condition, what: str = "the page"):
        return super().until(condition, f"waited {UI_WAIT_S} s for {what}")


def _close_assistant(driver: webdriver.Chrome, wait: WebDriverWait) -> None:
    """Close the MLflow Assistant side panel (open on a first visit): it takes a third of the window."""
    close = (By.CSS_SELECTOR, f"button[data-component-id='{ASSISTANT_CLOSE}']")
    for button in driver.find_elements(*close)[:1]:
        button.click()
        wait.until(ec.invisibility_of_element_located(close), "the Assistant panel to close")


@contextmanager
def evidence_on_failure(driver: webdriver.Chrome, tmp_path: Path, step: str) -> Iterator[None]:
    """On a failed check or a wait that timed out: a screenshot and the page source, named in the error."""
    try:
        yield
    except (AssertionError, ValueError, WebDriverException) as error:
        screenshot, source = tmp_path / f"{step}-failure.png", tmp_path / f"{step}-failure.html"
        try:
            driver.save_screenshot(str(screenshot))
            source.write_text(driver.page_source, encoding="utf-8")
        except WebDriverException as lost:  # the browser itself went away
            screenshot = source = f"not saved ({type(lost).__name__})"
        detail = error.msg if isinstance(error, WebDriverException) else error  # without the driver's stack
        raise AssertionError(
            f"MLflow UI check failed on the {step.replace('_', ' ')} at {driver.current_url}: "
            f"{type(error).__name__}: {detail}\nscreenshot: {screenshot}\npage source: {source}"
        ) from error


def _run_link(run_id: str) -> tuple[str, str]:
    return By.CSS_SELECTOR, f"a[href$='/runs/{run_id}']"


def _metric_cell(run_id: str) -> tuple[str, str]:
    return By.CSS_SELECTOR, f"[role=row][row-id='{run_id}'] [role=gridcell][col-id='metrics.`{METRIC}`']"


def _on_screen(locator: tuple[str, str], scroll: bool = True):
    """Wait condition: the element (scrolled into view unless `scroll` is false) is what a person sees at its
    centre (not hidden behind another element or clipped by a scrolled table viewport) and has text; returns it."""

    def visible(driver):
        found = driver.find_elements(*locator)
        if not found or not found[0].text.strip():
            return False
        return driver.execute_script(ON_SCREEN_JS, found[0], scroll) and found[0]

    return visible


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_until_healthy(url: str, server: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + SERVER_START_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(
                f"mlflow server exited with {server.returncode} before answering; its log ({log}):\n{_tail(log)}"
            )
        try:
            with NO_PROXY.open(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.25)
    pytest.fail(f"mlflow server did not answer {url}/health within {SERVER_START_S} s; its log ({log}):\n{_tail(log)}")


def _tail(log: Path, chars: int = 4000) -> str:
    return log.read_text(encoding="utf-8", errors="replace")[-chars:]


def _stop(server: subprocess.Popen) -> None:
    """SIGTERM the server's own process group (uvicorn and its workers), SIGKILL it if it lingers."""
    if server.poll() is None:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=60)
    try:  # a worker that outlived the server
        os.killpg(server.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
