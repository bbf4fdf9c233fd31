"""OAR's web tools on the test bed (``orpheus testbed up --web``), in a real browser: Debian's
chromium driven by Selenium through Debian's chromedriver. Drawgantt and Monika show a job
the real Orpheus daemon runs; a job submitted through OAR's REST API is executed by Orpheus
and seen Terminated through the API; ADAGE reads a job's nodes from the API.

Screenshots go to the test's tmp path and to ``$ORPHEUS_TEST_ARTIFACTS`` (default
``tests/artifacts/``, ignored by git).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import SUBMITTER, db, submit_array, wait_final, wait_state
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from adage.resources.oar import job_resources
from adage.resources.oarapi import api_job_resources
from oarlib import oarcli, web

pytestmark = pytest.mark.oar

ARTIFACTS = Path(os.environ.get("ORPHEUS_TEST_ARTIFACTS")
                 or Path(__file__).resolve().parents[1] / "artifacts")
CHROMIUM_ARGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--window-size=1400,900")
AUTH = "Basic " + base64.b64encode(f"{SUBMITTER}:{web.API_PASSWORD}".encode()).decode()
# the SVG document Drawgantt loads into its <object>, serialised, once it has rows
SVG_JS = """const o = document.getElementById('svgObj');
const d = o && o.contentDocument;
return d && d.documentElement && d.documentElement.nodeName === 'svg'
       && d.querySelectorAll('text').length > 0
       ? new XMLSerializer().serializeToString(d.documentElement) : null;"""

# Monika: the table cell right after the one holding a node's name (and no table itself)
NODE_CELLS = "//td[.//a[normalize-space()='{}'] and not(.//table)]/following-sibling::td[1]"


@pytest.fixture(scope="module")
def urls() -> dict[str, str]:
    """The web tools up (idempotent: scripts/test starts them with --web, but a test that
    runs ``orpheus testbed up`` without it stops them)."""
    st = web.up(SUBMITTER)
    assert st["running"], st
    return st["urls"]


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[webdriver.Chrome]:
    opts = Options()
    opts.binary_location = "/usr/bin/chromium"
    for arg in (*CHROMIUM_ARGS, f"--user-data-dir={tmp_path / 'chromium'}"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
    driver.set_page_load_timeout(120)
    try:
        yield driver
    finally:
        driver.quit()


def screenshot(driver: webdriver.Chrome, tmp_path: Path, name: str) -> Path:
    """Save a PNG of the window in the test's tmp path and in the artefacts folder."""
    path = tmp_path / name
    assert driver.save_screenshot(str(path)), f"no screenshot {name}"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(path, ARTIFACTS / name)
    return path


def api(method: str, url: str, body: dict[str, Any] | None = None,
        auth: bool = False) -> tuple[int, dict[str, Any]]:
    """One HTTP request to the API, JSON in and out; (status, document)."""
    headers = {"Accept": "application/json"} | ({"Authorization": AUTH} if auth else {})
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    req = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=120) as resp:
            return resp.status, json.loads(resp.read().decode())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read().decode() or "{}")


NODES_OF = ("SELECT DISTINCT r.network_address FROM jobs j JOIN assigned_resources a "
            "ON a.moldable_job_id = j.assigned_moldable_job JOIN resources r "
            "ON r.resource_id = a.resource_id WHERE ")


def job_nodes(job: int) -> list[str]:
    with db() as conn:
        return [r[0] for r in conn.query(NODES_OF + "j.job_id = %s", [job])]


def idle_node() -> str:
    """The last node no active job holds (OAR fills the first resources first)."""
    with db() as conn:
        busy = {r[0] for r in conn.query(NODES_OF + "j.state IN ('toLaunch', 'Launching', "
                                         "'Running', 'Finishing')")}
        names = [r[0] for r in conn.query("SELECT network_address FROM resources "
                                          "ORDER BY resource_id DESC")]
    return next(n for n in names if n not in busy)


def test_drawgantt_and_monika_show_a_simulated_job(daemon_factory: Any, urls: dict[str, str],
                                                   browser: webdriver.Chrome,
                                                   tmp_path: Path) -> None:
    daemon_factory("--mode", "event")
    [job] = submit_array(["{exec_time=600}"], "nodes=2,walltime=2:0:0")
    try:
        wait_state([job], "Running", 120)
        nodes = job_nodes(job)
        assert len(nodes) == 2

        browser.get(urls["drawgantt"])
        svg = WebDriverWait(browser, 120, 0.5).until(lambda d: d.execute_script(SVG_JS))
        assert f"Jobid: {job}|User: {SUBMITTER}|" in svg  # the job's pop-up text
        assert "State: Running" in svg
        for node in nodes:
            assert f">{node}</text>" in svg  # the node's row label
        screenshot(browser, tmp_path, "drawgantt.png")

        browser.get(urls["monika"])
        text = browser.find_element("tag name", "body").text
        assert "Orpheus test bed" in text
        for node in nodes:  # the cell after the node's name: a cell per core, the job's id
            cores = browser.find_element(By.XPATH, NODE_CELLS.format(node)).text.split()
            assert str(job) in cores, (node, cores)
        idle = browser.find_element(By.XPATH, NODE_CELLS.format(idle_node())).text.split()
        assert set(idle) == {"Free"}, idle  # every core of a node no job holds
        screenshot(browser, tmp_path, "monika.png")
    finally:
        oarcli.oardel([job], user=SUBMITTER)
        wait_final([job], 120)


def test_a_job_submitted_through_the_rest_api_is_executed_by_orpheus(
        daemon_factory: Any, urls: dict[str, str]) -> None:
    daemon_factory("--mode", "event")
    with db() as conn:
        total = int(conn.scalar("SELECT COUNT(*) FROM resources"))
    code, res = api("GET", urls["api"] + "resources.json")
    assert code == 200 and res["total"] == total
    assert res["items"][0]["network_address"].startswith("node")

    code, refused = api("POST", urls["api"] + "jobs.json",
                        {"resource": "core=1", "command": "sim {exec_time=3}"})
    assert code == 401, refused  # no credentials, no job
    code, made = api("POST", urls["api_auth"] + "jobs.json",
                     {"resource": "core=1", "command": "sim {exec_time=3}"}, auth=True)
    assert code in (200, 201, 202), made
    job = int(made["id"])

    code, listed = api("GET", urls["api"] + f"jobs.json?ids={job}&state="
                       "Waiting,toLaunch,Launching,Running,Finishing,Terminated,Error")
    assert code == 200 and [int(i["id"]) for i in listed["items"]] == [job]
    assert listed["items"][0]["owner"] == SUBMITTER

    deadline = time.time() + 120
    while True:
        code, info = api("GET", urls["api_auth"] + f"jobs/{job}.json", auth=True)
        assert code == 200, info
        if info["state"] in ("Terminated", "Error") or time.time() > deadline:
            break
        time.sleep(1)
    assert info["state"] == "Terminated", info
    assert info["exit_code"] == 0 and info["owner"] == SUBMITTER
    assert info["command"] == "sim {exec_time=3}"


def test_adage_reads_a_job_s_nodes_from_the_rest_api(daemon_factory: Any,
                                                     urls: dict[str, str]) -> None:
    daemon_factory("--mode", "event")
    [job] = submit_array(["{exec_time=600}"], "nodes=2")
    try:
        wait_state([job], "Running", 120)
        through_api = api_job_resources([job], urls["api"]).nodes
        through_oarstat = job_resources([job]).nodes
        assert [(n.name, n.cores, dict(n.properties)) for n in through_api] == \
               [(n.name, n.cores, dict(n.properties)) for n in through_oarstat]
        assert sorted(n.name for n in through_api) == sorted(job_nodes(job))
        authed = urls["api_auth"].replace("://", f"://{SUBMITTER}:{web.API_PASSWORD}@")
        assert api_job_resources([job], authed).nodes == through_api
    finally:
        oarcli.oardel([job], user=SUBMITTER)
        wait_final([job], 120)
