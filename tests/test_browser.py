"""``mlflow ui`` in a real browser: headless Chromium, driven by selenium, opens what
``resnet-bench ui`` serves over a tiny sweep's store, as a user following its address would.

Chromium and its driver are Debian's ``chromium`` and ``chromium-driver`` packages, which
``.ci/run`` installs; it also sets ``RESNET_BENCH_BROWSER=required`` so that CI fails rather
than skips when they are missing. Screenshots of every page opened are kept in
``build/browser/`` (or ``$RESNET_BENCH_SHOTS``) for a person to look at.
"""

from __future__ import annotations

import os
import re
import shutil
import time
import urllib.request
from pathlib import Path

import pytest

from resnet_bench import cli, schema, trained
from resnet_bench.tracking import Store

from .helpers import ROOT, free_port, spawn

pytestmark = pytest.mark.slow

SHOTS = Path(os.environ.get("RESNET_BENCH_SHOTS", ROOT / "build" / "browser"))
PAGE_SECONDS = 240  # MLflow's pages render in seconds alone, in over a minute beside the rest of the suite


def _missing() -> str | None:
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[test]')"
    for exe in ("chromium", "chromedriver"):
        if not shutil.which(exe):
            return f"{exe} is not on PATH (apt-get install chromium chromium-driver)"
    return None


@pytest.fixture(scope="module")
def browser():
    why = _missing()
    if why:
        if os.environ.get("RESNET_BENCH_BROWSER") == "required":
            pytest.fail(f"the browser test is required here, but {why}")
        pytest.skip(why)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1600,1200"):
        options.add_argument(arg)
    options.binary_location = shutil.which("chromium")
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    driver.set_page_load_timeout(PAGE_SECONDS)
    SHOTS.mkdir(parents=True, exist_ok=True)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def served(tiny_sweep):
    """The tiny sweep plus its report run, served by ``resnet-bench ui``: (the runs address it
    printed, the tracking URI, the report's file)."""
    folder, _, uri = tiny_sweep
    out = folder / "browsed" / "tiny.md"
    assert cli.main(["report", "tiny", "--tracking-uri", uri, "--out", str(out)]) == 0
    port = free_port()
    proc = spawn(["ui", "tiny", "--tracking-uri", uri, "--port", str(port)], cwd=folder)
    try:
        first = proc.stdout.readline().strip()
        address = first.split(": ", 1)[1]
        _wait_for_server(f"http://127.0.0.1:{port}/health", proc)
        yield address, uri, out
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def _wait_for_server(health: str, proc) -> None:
    deadline = time.time() + PAGE_SECONDS
    while True:
        try:
            urllib.request.urlopen(health, timeout=2)
            return
        except OSError:
            assert proc.poll() is None, "resnet-bench ui exited: " + proc.stdout.read()
            assert time.time() < deadline, "mlflow ui did not answer"
            time.sleep(0.5)


def _open(driver, url: str, ready, shot: str):
    """Load ``url`` and wait until ``ready(driver)`` returns something true (returned), then
    keep a screenshot of the page."""
    driver.get(url)
    deadline = time.time() + PAGE_SECONDS
    while not (found := ready(driver)):
        assert time.time() < deadline, f"{url}: not ready after {PAGE_SECONDS} s; page text:\n{_text(driver)}"
        time.sleep(0.5)
    time.sleep(1)  # let the last charts finish drawing before the screenshot
    driver.save_screenshot(str(SHOTS / f"{shot}.png"))
    return found


def _text(driver) -> str:
    return driver.find_element("tag name", "body").text


def _runs(uri: str) -> list:
    from .helpers import all_runs

    return all_runs(uri, "tiny")


def test_the_printed_address_opens_the_runs_with_their_data_set(browser, served):
    address, uri, _ = served
    assert address.endswith("?workflowType=machine_learning") and "/#/experiments/" in address
    runs = _runs(uri)
    names = {r.info.run_name for r in runs}
    assert len(names) == 8 and all(re.fullmatch(r"(resnet|plain)(8|14)-seed[01]", n) for n in names)

    def rows(driver):
        """Each table row's text, the pinned name column joined to the rest (ag-grid draws a
        row in several containers that share its row-index)."""
        cells = driver.find_elements("css selector", "[row-index]")
        joined: dict[str, list[str]] = {}
        for cell in cells:
            joined.setdefault(cell.get_attribute("row-index"), []).append(cell.text)
        table = [" ".join(parts) for parts in joined.values()]
        return table if sum(any(n in row for row in table) for n in names) == len(names) else None

    table = _open(browser, address, rows, "runs_view")
    digest = runs[0].data.params["data_hash"]
    for name in names:
        row = next(row for row in table if re.search(rf"\b{name}\b", row))
        assert f"({digest})" in row, row  # the data set's name and content hash
        assert row.rstrip().endswith(f"\n{trained.MODEL_NAME}"), row  # the Models column: the run's stored net
    assert any("report-tiny" in row for row in table)


def test_a_run_page_opens_on_the_training_loss(browser, served):
    address, uri, _ = served
    run = next(r for r in _runs(uri) if r.info.run_name == "resnet14-seed0")
    page = address.replace("?", f"/runs/{run.info.run_id}/model-metrics?")
    legend = re.compile(rf"^{re.escape(run.info.run_name)} \((.+)\)$", re.M)  # a chart's legend names its metric

    def charts(driver):
        return legend.findall(_text(driver))

    keys = _open(browser, page, charts, "run_page")
    assert keys[0] == schema.stored_key("train_loss"), keys
    layer_kinds = set(schema.LAYER_METRICS)
    assert not {schema.metric_name(k) for k in keys[:4]} & layer_kinds, keys
    assert len(run.data.metrics) <= 25, sorted(run.data.metrics)


def test_a_run_page_lists_its_stored_net(browser, served):
    address, uri, _ = served
    run = next(r for r in _runs(uri) if r.info.run_name == "plain8-seed1")
    page = address.replace("?", f"/runs/{run.info.run_id}?")
    text = _open(browser, page, lambda d: "Logged models (1)" in _text(d) and _text(d), "run_overview")
    listed = text.split("Logged models (1)", 1)[1]
    assert f"\n{trained.MODEL_NAME}\nReady\n" in listed, listed[:400]


def test_the_report_run_holds_the_report_openable_from_the_ui(browser, served):
    address, uri, out = served
    exp = Store(uri).experiment_id("tiny", create=False)
    newest = Store(uri).runs(exp, "tags.bench_report = 'true'")[0]  # newest first: the one `served` wrote
    page = address.replace("?", f"/runs/{newest.info.run_id}/artifacts?")
    _open(browser, page, lambda d: out.name in _text(d) and "figures" in _text(d), "report_artifacts")
    browser.find_element("xpath", f"//*[text()='{out.name}']").click()
    title = out.read_text().splitlines()[0].lstrip("# ")
    deadline = time.time() + PAGE_SECONDS
    while title not in _text(browser):
        assert time.time() < deadline, "the report's preview did not show"
        time.sleep(0.5)
    browser.save_screenshot(str(SHOTS / "report_preview.png"))
