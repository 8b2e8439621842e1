"""The contest's pages in a real browser: headless Chromium (Debian's ``chromium`` and
``chromium-driver``, no browser download) driven by Selenium, against a real server process and its
real SQLite database. Levels are evaluated by the TEST DOUBLE ``tests/server/fake_level_runner.py``.

Screenshots of the leaderboard and of a job page, at desktop and phone widths, are written to
``results/screenshots/`` (kept by CI as artifacts).
"""

from __future__ import annotations

import http.server
import os
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.support.commands import subprocess_env
from tests.support.contest import Contest, unique_team
from tests.support.paths import REPO

webdriver = pytest.importorskip("selenium.webdriver", reason="BROWSER TESTS SKIPPED: pip install selenium")
from selenium.common.exceptions import (  # noqa: E402
    NoSuchElementException,
    StaleElementReferenceException,
    TimeoutException,
    WebDriverException,
)
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

LEVELS = [("Fake", "Level1"), ("Fake", "Level2"), ("Fake", "Level3")]
SHOTS = REPO / "results" / "screenshots"
DESKTOP = (1280, 900)
PHONE = (390, 844)
ADMIN = "host@example.org"


def _chromium() -> tuple[str, str]:
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not binary or not driver:
        message = "BROWSER TESTS SKIPPED: Debian's chromium and chromium-driver are not installed"
        if os.environ.get("CI"):
            pytest.fail(message + " (CI installs them: .ci/run)")
        pytest.skip(message + " (apt-get install chromium chromium-driver)")
    return binary, driver


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    binary, driver_path = _chromium()
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     f"--window-size={DESKTOP[0]},{DESKTOP[1]}", "--hide-scrollbars"):  # fmt: skip
        options.add_argument(argument)
    service = webdriver.ChromeService(executable_path=driver_path)
    driver = webdriver.Chrome(options=options, service=service)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def contest(make_module_contest) -> Contest:
    env = subprocess_env(CK_FAKE_SLOW_SECONDS="40")
    return make_module_contest(LEVELS, env=env, extra_config={"parallel_jobs": 8, "admins": [ADMIN]})


def _sign_in(browser: webdriver.Chrome, contest: Contest, email: str, password: str = "correct horse battery") -> None:
    browser.delete_all_cookies()
    browser.get(contest.url + "/signin")
    browser.find_element(By.NAME, "email").send_keys(email)
    browser.find_element(By.NAME, "password").send_keys(password)
    form = browser.find_element(By.CSS_SELECTOR, "form.card")
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    # The sign-in answers after the password check (on the server's hash pool): wait until the
    # browser has replaced the page, or the next look finds the old form.
    WebDriverWait(browser, 30).until(lambda _driver: _gone(form))


def _page_went_away(error: WebDriverException) -> bool:
    """Whether ``error`` says the element looked at belonged to a page the browser has replaced.

    Selenium's own waits know only StaleElementReferenceException; Chromium sometimes answers a
    look at a node of the document being unloaded with "Node with given id does not belong to the
    document" instead (seen once in CI), which means the same thing.
    """
    return isinstance(error, StaleElementReferenceException) or "does not belong to the document" in str(error)


def _gone(element) -> bool:  # type: ignore[no-untyped-def]
    """Whether the page holding ``element`` has been replaced."""
    try:
        element.is_enabled()
    except WebDriverException as error:
        if _page_went_away(error):
            return True
        raise
    return False


def _wait(browser: webdriver.Chrome, condition, timeout: float = 20.0):  # type: ignore[no-untyped-def]
    """Until ``condition()`` holds; an element that went away as the page loaded again counts as "not yet"."""

    def holds(_driver: object) -> bool:
        try:
            return bool(condition())
        except NoSuchElementException:
            return False
        except WebDriverException as error:
            if _page_went_away(error):
                return False
            raise

    return WebDriverWait(browser, timeout, poll_frequency=0.2).until(holds)


def _screenshot(browser: webdriver.Chrome, name: str, size: tuple[int, int] = DESKTOP) -> Path:
    """A full-page screenshot: the window is made as tall as the page first."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    browser.set_window_size(size[0], 600)
    height = int(browser.execute_script("return document.documentElement.scrollHeight"))
    browser.set_window_size(size[0], min(max(height, 400), 4000))
    path = SHOTS / f"{name}.png"
    assert browser.save_screenshot(str(path)), path
    browser.set_window_size(*DESKTOP)
    return path


def _team_with_jobs(contest: Contest, prefix: str, tags: list[str]) -> tuple[str, str, list[dict]]:
    name, email = unique_team(prefix)
    contest.add_team(name, email)
    http = contest.session(email)
    done = []
    for tag in tags:
        job = http.post(contest.url + "/rest/job/start", json={"tag": tag}).json()
        done.append(contest.wait_job(http, job["id"]))
    return name, email, done


def test_the_leaderboard_shows_the_teams_and_scores_of_the_database(browser, contest):
    teams = [_team_with_jobs(contest, f"board{i}-", [f"score-{score}"]) for i, score in enumerate((320, 95, 150))]
    browser.get(contest.url + "/")
    rows = browser.find_elements(By.CSS_SELECTOR, "table.board tbody tr")
    shown = {row.find_element(By.CSS_SELECTOR, "td.team").text: row for row in rows}
    for name, _email, jobs in teams:
        cells = [td.text for td in shown[name].find_elements(By.TAG_NAME, "td")]
        expected = f"{jobs[0]['score']:,.1f}"
        assert cells[2] == expected and cells[3:6] == [expected] * 3, cells
    ranks = [shown[name].find_element(By.TAG_NAME, "td").text for name, _e, _j in teams]
    assert ranks == ["1", "3", "2"], ranks
    _screenshot(browser, "leaderboard")
    _screenshot(browser, "leaderboard-phone", PHONE)
    browser.find_element(By.LINK_TEXT, "Fake/Level2").click()
    assert browser.find_element(By.TAG_NAME, "h1").text == "Fake/Level2"
    assert browser.find_elements(By.CSS_SELECTOR, "figure.chart svg rect[fill='#36a']")


def test_sign_in_works_and_a_wrong_password_is_refused(browser, contest):
    name, email = unique_team("signin")
    contest.add_team(name, email)
    _sign_in(browser, contest, email, "a wrong password")
    assert "Wrong email or password" in browser.find_element(By.CSS_SELECTOR, ".error").text
    assert browser.get_cookie("contestkit_session") is None
    _sign_in(browser, contest, email)
    _wait(browser, lambda: browser.current_url.endswith("/jobs"))
    assert name in browser.find_element(By.TAG_NAME, "h1").text
    session = browser.get_cookie("contestkit_session")
    assert session and session["httpOnly"] and session["sameSite"] == "Lax"


def test_team_b_opening_team_as_job_page_gets_a_404(browser, contest):
    _a, _ea, jobs = _team_with_jobs(contest, "alpha", ["score-5"])
    b_name, b_email = unique_team("beta")
    contest.add_team(b_name, b_email)
    _sign_in(browser, contest, b_email)
    _wait(browser, lambda: browser.current_url.endswith("/jobs"))
    browser.get(f"{contest.url}/jobs/{jobs[0]['id']}")
    assert browser.find_element(By.TAG_NAME, "h1").text == "No such job"
    assert "monitor.csv" not in browser.page_source
    status = browser.execute_script(
        "return fetch(arguments[0]).then(r => r.status)", f"/jobs/{jobs[0]['id']}/levels/0/monitor.csv"
    )
    assert status == 404


def test_a_running_jobs_progress_moves_on_the_page_without_a_reload(browser, contest):
    name, email = unique_team("live")
    contest.add_team(name, email)
    http = contest.session(email)
    job = http.post(contest.url + "/rest/job/start", json={"tag": "v1-slow"}).json()
    contest.wait_job(http, job["id"], statuses=("running",))
    _sign_in(browser, contest, email)
    _wait(browser, lambda: browser.current_url.endswith("/jobs"))
    browser.get(f"{contest.url}/jobs/{job['id']}")
    browser.execute_script("window.__loadedOnce = true;")  # gone if the page loads again

    def timesteps() -> int:
        text = browser.find_element(By.CSS_SELECTOR, '[data-level="0"] [data-f="timesteps"]').text
        return int(text.replace(",", "")) if text.replace(",", "").isdigit() else 0

    first = timesteps()
    _wait(browser, lambda: timesteps() > first + 5, timeout=20)
    assert browser.execute_script("return window.__loadedOnce === true")
    assert browser.find_element(By.CSS_SELECTOR, '[data-level="0"] [data-f="state"]').text == "running"
    assert browser.find_element(By.CSS_SELECTOR, '[data-level="0"] [data-f="eta"]').text.endswith(("s", "min"))
    assert float(browser.find_element(By.CSS_SELECTOR, '[data-level="0"] progress').get_attribute("value")) > 0
    _screenshot(browser, "job-running")
    http.post(f"{contest.url}/rest/job/kill/{job['id']}")
    contest.wait_job(http, job["id"])


class _ForeignSite:
    """A page on the same host but another port (same-site, other origin) that posts a form to the contest."""

    def __init__(self, target: str) -> None:
        page = (
            "<!doctype html><form id=f method=post action='" + target + "'>"
            "<input type=hidden name=csrf value=guessed></form><script>document.getElementById('f').submit()</script>"
        ).encode()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(page)))
                self.end_headers()
                self.wfile.write(page)

            def log_message(self, *_args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_cancel_works_with_the_pages_token_and_fails_from_a_foreign_origin(browser, contest):
    name, email = unique_team("cancel")
    contest.add_team(name, email)
    http = contest.session(email)
    job = http.post(contest.url + "/rest/job/start", json={"tag": "v1-slow"}).json()
    contest.wait_job(http, job["id"], statuses=("running",))
    _sign_in(browser, contest, email)
    _wait(browser, lambda: browser.current_url.endswith("/jobs"))

    foreign = _ForeignSite(f"{contest.url}/jobs/{job['id']}/cancel")
    try:
        browser.get(foreign.url)  # the browser sends the contest's cookie along: same site
        _wait(browser, lambda: browser.current_url.startswith(contest.url))
        # Refused by the server's origin rule before the page's own token check is reached.
        _wait(browser, lambda: "cross-site request forgery" in browser.find_element(By.TAG_NAME, "body").text)
    finally:
        foreign.close()
    # The refusal page is the server's answer to that POST: it was handled, and cancelled nothing.
    assert http.get(f"{contest.url}/rest/job/status/{job['id']}").json()["status"] == "running"

    browser.get(f"{contest.url}/jobs/{job['id']}")
    browser.find_element(By.ID, "cancel").click()
    _wait(browser, lambda: browser.find_element(By.CSS_SELECTOR, '[data-f="job-status"]').text == "cancelled")
    assert contest.wait_job(http, job["id"])["status"] == "cancelled"


def test_a_log_line_holding_a_script_is_shown_as_text(browser, contest):
    name, email, jobs = _team_with_jobs(contest, "printer", ["score-240"])
    job = jobs[0]
    level_dir = contest.data_dir / "jobs" / str(job["id"]) / "attempt-1" / "00-Fake-Level1"
    line = "<script>document.title='pwned'; window.__pwned = 1</script>"
    (level_dir / "agent-stdout.txt").write_text(f"PPO update 12: loss 0.031\n{line}\nepisode 40 reward 241.0\n")
    (level_dir / "remote-stderr.txt").write_text("env: Fake-Level1 loaded\nenv: budget of 300 timesteps used\n")
    _sign_in(browser, contest, email)
    _wait(browser, lambda: browser.current_url.endswith("/jobs"))
    browser.get(f"{contest.url}/jobs/{job['id']}")
    log = browser.find_element(By.CSS_SELECTOR, '[data-level="0"] pre.log')
    assert line in log.text
    assert browser.title != "pwned" and browser.execute_script("return window.__pwned === undefined")
    assert not browser.find_elements(By.CSS_SELECTOR, "pre.log script")
    _screenshot(browser, "job")
    _screenshot(browser, "job-phone", PHONE)


def test_the_host_sees_the_queue_running_levels_and_failures(browser, contest):
    name, email = unique_team("hosted")
    contest.add_team(name, email)
    http = contest.session(email)
    job = http.post(contest.url + "/rest/job/start", json={"tag": "v1-slow"}).json()
    contest.wait_job(http, job["id"], statuses=("running",))
    contest.add_team("The hosts", ADMIN)
    _sign_in(browser, contest, ADMIN)
    _wait(browser, lambda: browser.current_url.endswith("/jobs"))
    browser.find_element(By.LINK_TEXT, "Host").click()
    assert browser.find_element(By.TAG_NAME, "h1").text == "Host"
    running = browser.find_elements(By.XPATH, "//h2[starts-with(., 'Running')]/following-sibling::div[1]//tbody/tr")
    assert any(name in row.text and "Fake/Level1" in row.text for row in running)
    _screenshot(browser, "host")
    http.post(f"{contest.url}/rest/job/kill/{job['id']}")
    contest.wait_job(http, job["id"])


def test_the_pages_read_without_javascript(contest):
    """Every page is complete as served: the figures are in the HTML, the script only refreshes them."""
    import requests

    _name, email, jobs = _team_with_jobs(contest, "nojs", ["score-3"])
    http = contest.session(email)
    page = http.get(f"{contest.url}/jobs/{jobs[0]['id']}").text
    assert 'data-f="timesteps">300<' in page and 'data-f="score">4.0<' in page
    assert "<script" not in page  # an ended job's page has no script at all
    assert "<script" not in requests.get(contest.url + "/").text


@pytest.fixture(autouse=True)
def _no_browser_errors(request: pytest.FixtureRequest) -> Iterator[None]:
    """A page that breaks its own policy (inline script, a blocked style) shows in the browser's log."""
    yield
    if "browser" not in request.fixturenames:
        return
    browser = request.getfixturevalue("browser")
    try:
        entries = browser.get_log("browser")
    except (WebDriverException, TimeoutException):
        return
    violations = [e["message"] for e in entries if "Content Security Policy" in e.get("message", "")]
    # The foreign page's own inline script is not ours; every other violation is.
    violations = [m for m in violations if "127.0.0.1:" + str(contest_port(request)) in m]
    assert not violations, violations


def contest_port(request: pytest.FixtureRequest) -> int:
    contest = request.getfixturevalue("contest")
    return contest.server.port


# -- the contest site from open to published (issue 24); its screenshots go under docs/img/ -------

DOC_SHOTS = REPO / "docs" / "img"


def _doc_screenshot(browser: webdriver.Chrome, name: str) -> Path:
    """A screenshot for the docs (docs/host-contest-site.md shows them): in results/screenshots/ as
    the others, and copied over docs/img/ when CONTESTKIT_UPDATE_DOC_SCREENSHOTS=1 (so that a test run
    leaves the checkout clean)."""
    made = _screenshot(browser, name)
    if os.environ.get("CONTESTKIT_UPDATE_DOC_SCREENSHOTS") == "1":
        DOC_SHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(made, DOC_SHOTS / f"{name}.png")
    return made


def test_the_contest_site_from_open_to_published_final(browser, make_contest, tmp_path: Path, free_port):
    from datetime import UTC, datetime

    final_levels = tmp_path / "final-levels.csv"
    final_levels.write_text("game,state\nFake,HiddenLevel1\nFake,HiddenLevel2\n")
    contest = make_contest(
        LEVELS,
        env=subprocess_env(),
        registry=f"127.0.0.1:{free_port()}",  # nothing listens there: the host page must say "down"
        extra_config={
            "admins": [ADMIN],
            "parallel_jobs": 4,
            "name": "Sonic Retro Contest",
            "description": "Train an agent that plays **Sonic the Hedgehog** on levels it has never seen.\n\n"
            "Submissions are evaluated on the leaderboard levels below; the final runs on hidden ones.",
            "rules_url": "https://example.org/rules",
            "baselines": ["jerk@example.org"],
            "phases": {"final": {"levels": str(final_levels)}},
        },
    )
    contest.add_team("The hosts", ADMIN)
    contest.add_team("JERK baseline", "jerk@example.org")
    jerk = contest.session("jerk@example.org")
    jerk_job = jerk.post(contest.url + "/rest/job/start", json={"tag": "score-60"}).json()
    teams = [_team_with_jobs(contest, "team", [f"score-{score}"]) for score in (120, 40)]
    assert contest.wait_job(jerk, jerk_job["id"])["status"] == "finished"

    # Open: the name, the phase, the description, the baseline marked on the board.
    browser.delete_all_cookies()
    browser.get(contest.url + "/")
    assert browser.find_element(By.TAG_NAME, "h1").text == "Sonic Retro Contest"
    assert browser.find_element(By.ID, "phase").text == "Open until the host closes submissions."
    assert browser.find_element(By.CSS_SELECTOR, ".description strong").text == "Sonic the Hedgehog"
    baseline = browser.find_element(By.CSS_SELECTOR, "tr.baseline td.team")
    assert baseline.text == "JERK baseline baseline"
    assert "HiddenLevel" not in browser.page_source
    _doc_screenshot(browser, "contest-open")

    # The host's page: the phase, the registry's health (nobody runs one here), baselines, quota.
    _sign_in(browser, contest, ADMIN)
    browser.get(contest.url + "/host")
    assert browser.find_element(By.ID, "phase").text.startswith("Open until the host closes submissions.")
    assert "down" in browser.find_element(By.ID, "registry").text
    assert browser.find_element(By.ID, "baselines").text == "Baselines: JERK baseline."
    assert browser.find_element(By.ID, "quota").text == "No submission quota."
    _doc_screenshot(browser, "host")

    # The host freezes the board now (freeze_at in server.yaml, then a restart): it keeps its standings
    # and says since when; a job that finishes later does not count.
    config_path = contest.data_dir / "server.yaml"
    settings = yaml.safe_load(config_path.read_text())
    settings["freeze_at"] = datetime.fromtimestamp(time.time(), UTC).isoformat()
    config_path.write_text(yaml.safe_dump(settings))
    contest.server.kill()
    contest.server.start()
    browser.delete_all_cookies()
    late_name, _email, http = teams[1][0], teams[1][1], contest.session(teams[1][1])
    late = http.post(contest.url + "/rest/job/start", json={"tag": "score-500"}).json()
    assert contest.wait_job(http, late["id"])["status"] == "finished"
    browser.get(contest.url + "/")
    assert "the leaderboard is frozen since" in browser.find_element(By.ID, "phase").text
    row = browser.find_element(By.CSS_SELECTOR, f'tr[data-team="{late_name}"]')
    assert row.find_elements(By.TAG_NAME, "td")[2].text == "41.0"  # its frozen score, not 501.0
    assert "No job has finished" not in browser.page_source
    _doc_screenshot(browser, "leaderboard-frozen")

    # Close, run the final; before publishing /final says only that.
    host = contest.session(ADMIN)
    assert host.post(contest.url + "/rest/admin/close").status_code == 200
    assert host.post(contest.url + "/rest/admin/final/start").status_code == 200
    browser.get(contest.url + "/final")
    assert browser.find_element(By.ID, "final-status").text == "The final results are not published yet."
    assert not browser.find_elements(By.TAG_NAME, "table")

    def final_done() -> bool:
        jobs = host.get(contest.url + "/rest/admin/final").json()["jobs"]
        return bool(jobs) and not jobs.get("queued") and not jobs.get("running")

    _wait(browser, final_done, 120)
    assert host.post(contest.url + "/rest/admin/final/publish").status_code == 200
    browser.get(contest.url + "/")
    assert browser.find_element(By.ID, "phase").text.startswith("Final results published at ")
    browser.find_element(By.LINK_TEXT, "The final results are published: see the final ranking.").click()
    _wait(browser, lambda: browser.current_url.endswith("/final"))
    rows = browser.find_elements(By.CSS_SELECTOR, "table.board tbody tr")
    names = [r.get_attribute("data-team") for r in rows]
    # The final evaluates each team's latest finished submission: the late score-500 one counts there.
    assert names == [late_name, teams[0][0], "JERK baseline"], names
    assert "Fake/HiddenLevel1" in browser.page_source
    assert browser.find_element(By.CSS_SELECTOR, "tr.baseline .badge").text == "baseline"
    _doc_screenshot(browser, "final")
