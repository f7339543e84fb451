"""The dashboard (/ui) in a real headless browser: Debian's chromium driven
through its chromedriver by Selenium, against a live server whose fake LLM
is scripted per test. The page submits a task with a file, shows its events
while it runs, its answer and its files (viewed and downloaded), cancels a
task, lists tasks by status a page at a time, and asks for the API token.

Every connection stays on 127.0.0.1: chromium runs with its background
services off and a resolver rule that makes every other host unresolvable,
and Selenium talks to a chromedriver started here, by path (so Selenium
Manager never runs). The tests save a screenshot of each view (ui-list,
ui-task, ui-submit, ui-token .png) in their tmp_path, and also in
$UI_SCREENSHOTS when set (`UI_SCREENSHOTS=docs` refreshes the README's).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path

import httpx
import pytest

from .fake_llm import Block, Reply
from .polling import wait_until
from .redis_server import free_port

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install -e '.[test]')")
from selenium.common.exceptions import StaleElementReferenceException  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.remote.file_detector import UselessFileDetector  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")

pytestmark = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER),
    reason="needs Debian's chromium and chromedriver (apt-get install chromium chromium-driver)")

CHROMIUM_FLAGS = [
    "--headless=new",
    "--no-sandbox",  # the tests run as root, where chromium's own sandbox cannot start
    "--window-size=1280,900",
    # No traffic of chromium's own: no updates, sync, pings, first-run pages.
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-default-apps",
    "--disable-domain-reliability",
    "--disable-breakpad",
    "--disable-client-side-phishing-detection",
    "--no-proxy-server",
    # And whatever is left cannot reach anything: only 127.0.0.1 resolves.
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
]

#: How long the page may take to show what the server did (seconds).
PATIENCE = 20

CSV = b"city,temp\nOslo,4\nLima,19\n"

#: Reads data.csv, then waits until a file named "go" appears in its
#: workspace (20 s at most), so the test sees the task running; then writes
#: the summary the page will open.
GATED_SUMMARY = """\
import csv, os, time
rows = list(csv.DictReader(open("data.csv")))
print(f"read {len(rows)} cities", flush=True)
for _ in range(2000):
    if os.path.exists("go"):
        os.remove("go")
        break
    time.sleep(0.01)
warmest = max(rows, key=lambda row: int(row["temp"]))
open("summary.txt", "w").write(f"warmest: {warmest['city']}\\n")
print("wrote summary.txt")
"""

#: Runs until a file named "go" appears (30 s at most): a task to cancel.
GATED = """\
import os, time
for _ in range(3000):
    if os.path.exists("go"):
        break
    time.sleep(0.01)
"""

#: Model text the page must show as text: run as markup, it would set
#: window.pwned or add an image to the timeline.
HOSTILE_TEXT = 'Reading it. <b>bold?</b> <img src=x onerror="window.pwned=1"> <script>window.pwned=2</script>'


class Browser:
    """chromedriver (its own process group, stopped by its PID) and a
    chromium session it drives; downloads go to `downloads`."""

    def __init__(self, tmp_path: Path):
        self.downloads = tmp_path / "downloads"
        self.downloads.mkdir()
        self.port = free_port()
        with open(tmp_path / "chromedriver.log", "w") as log:
            # Without --allowed-ips, chromedriver listens on loopback only.
            self.process = subprocess.Popen([CHROMEDRIVER, f"--port={self.port}"],
                                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.driver = None
        try:
            wait_until(self._ready, timeout=30, what="chromedriver to answer")
            options = webdriver.ChromeOptions()
            options.binary_location = CHROMIUM
            for flag in CHROMIUM_FLAGS:
                options.add_argument(flag)
            options.add_experimental_option("prefs", {
                "download.default_directory": str(self.downloads),
                "download.prompt_for_download": False,
                "safebrowsing.enabled": False,
            })
            self.driver = webdriver.Remote(command_executor=f"http://127.0.0.1:{self.port}", options=options)
            # The browser runs on this machine: a file input is given the
            # path itself, not an upload to a Selenium Grid (which this is not).
            self.driver.file_detector = UselessFileDetector()
        except BaseException:
            self.stop()
            raise

    def _ready(self) -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{self.port}/status", timeout=2).json()["value"]["ready"]
        except (httpx.HTTPError, ValueError, KeyError):
            return False

    def stop(self) -> None:
        if self.driver is not None:
            try:
                self.driver.quit()
            except Exception:  # a driver already gone: its group is stopped below anyway
                pass
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


@pytest.fixture
def browser(tmp_path, monkeypatch):
    # Selenium Manager is not used (the driver is started here), and must
    # neither download nor report anything if some path reached it.
    monkeypatch.setenv("SE_OFFLINE", "true")
    monkeypatch.setenv("SE_AVOID_STATS", "true")
    started = Browser(tmp_path)
    yield started
    started.stop()


# -- helpers ----------------------------------------------------------------------


def wait(driver, condition, what: str, timeout: float = PATIENCE):
    """condition(driver)'s value once it is truthy. The page redraws parts
    of itself as the task moves on: an element found just before a redraw
    is looked up again."""
    return WebDriverWait(driver, timeout, ignored_exceptions=(StaleElementReferenceException,)).until(
        condition, message=f"waiting for {what}")


def shown(driver, selector: str):
    """The element `selector` once it is in the page and visible."""
    def visible(d):
        found = d.find_elements(By.CSS_SELECTOR, selector)
        return found[0] if found and found[0].is_displayed() else None
    return wait(driver, visible, selector)


def click(driver, selector: str) -> None:
    """Click `selector`, found afresh if the page redrew it meanwhile."""
    wait(driver, lambda d: d.find_element(By.CSS_SELECTOR, selector).click() or True, f"a click on {selector}")


def text_of(driver, selector: str) -> str:
    return driver.find_element(By.CSS_SELECTOR, selector).text


def timeline_types(driver) -> list[str]:
    return [item.get_attribute("data-type") for item in driver.find_elements(By.CSS_SELECTOR, "#timeline > li")]


def shown_status(driver) -> str:
    return driver.find_element(By.CSS_SELECTOR, "#task-header .badge").get_attribute("data-status")


def listed_ids(driver) -> list[str]:
    return [row.get_attribute("data-task-id") for row in driver.find_elements(By.CSS_SELECTOR, "#task-table tbody tr")]


def screenshot(driver, tmp_path: Path, view: str) -> None:
    """ui-<view>.png of the whole page, in tmp_path and in $UI_SCREENSHOTS."""
    # A window as tall as the page (the browser's own bars added), from the top.
    height, bars = driver.execute_script("window.scrollTo(0, 0); "
                                         "return [document.documentElement.scrollHeight, "
                                         "window.outerHeight - window.innerHeight]")
    driver.set_window_size(1280, min(max(height, 700), 2400) + bars)
    png = driver.get_screenshot_as_png()
    folders = [tmp_path] + ([Path(os.environ["UI_SCREENSHOTS"])] if os.environ.get("UI_SCREENSHOTS") else [])
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"ui-{view}.png").write_bytes(png)
    driver.set_window_size(1280, 900)


def release(server, task_id: str) -> None:
    """Let a gated block go on."""
    (server.store.workspace(task_id) / "go").touch()


# -- the tests --------------------------------------------------------------------


def test_a_task_submitted_with_a_file_runs_live_and_its_file_opens(start_server, fake_llm, browser, tmp_path):
    server = start_server()
    fake_llm.script(Reply("I'll read data.csv and write the warmest city to summary.txt.",
                          blocks=[Block("python", GATED_SUMMARY, name="summarise.py")]),
                    Reply("The warmest city is Lima, at 19 °C. The summary is in summary.txt."))
    data = tmp_path / "data.csv"
    data.write_bytes(CSV)
    driver = browser.driver

    driver.get(f"{server.url}/ui#/new")
    shown(driver, "#instruction").send_keys("Which city is the warmest in data.csv? Write the answer to summary.txt.")
    driver.find_element(By.CSS_SELECTOR, "#files").send_keys(str(data))
    wait(driver, lambda d: "data.csv" in d.find_element(By.CSS_SELECTOR, "#chosen-files").text, "the chosen file")
    driver.find_element(By.CSS_SELECTOR, "details.options summary").click()
    driver.find_element(By.CSS_SELECTOR, "#metadata").send_keys('{"source": "dashboard"}')
    screenshot(driver, tmp_path, "submit")
    driver.find_element(By.CSS_SELECTOR, "#submit-task").click()

    wait(driver, lambda d: "#/tasks/" in d.current_url, "the task's view")
    task_id = driver.current_url.rsplit("/", 1)[1]
    # The block waits for the test: what the page shows now came live.
    code = wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#timeline [data-type=exec_start] pre.code"),
                "the code block")[0]
    assert "summary.txt" in code.text
    wait(driver, lambda d: shown_status(d) == "running", "the running status")
    assert timeline_types(driver) == ["task_start", "llm_response", "exec_start"]
    assert driver.find_element(By.CSS_SELECTOR, "#stream-state").get_attribute("data-state") == "live"
    release(server, task_id)

    answer = wait(driver, lambda d: d.find_element(By.CSS_SELECTOR, "#answer-text").text, "the answer")
    assert answer == "The warmest city is Lima, at 19 °C. The summary is in summary.txt."
    wait(driver, lambda d: shown_status(d) == "completed", "the completed status")
    assert timeline_types(driver) == ["task_start", "llm_response", "exec_start", "exec_result", "llm_response",
                                      "task_end"]
    output = driver.find_element(By.CSS_SELECTOR, "#timeline [data-type=exec_result]").text
    assert "read 2 cities" in output and "wrote summary.txt" in output

    # Its files: the one handed in and the one its code wrote.
    wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, '#file-list [data-path="summary.txt"]'), "summary.txt")
    paths = [item.get_attribute("data-path") for item in driver.find_elements(By.CSS_SELECTOR, "#file-list .file")]
    assert sorted(paths) == ["data.csv", "summarise.py", "summary.txt"]
    click(driver, '#file-list [data-path="summary.txt"] .file-view')
    wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#preview-text"), "the preview")
    assert text_of(driver, "#preview-text") == "warmest: Lima"
    click(driver, '#file-list [data-path="summary.txt"] .file-download')
    saved = browser.downloads / "summary.txt"
    wait_until(lambda: saved.exists() and saved.read_bytes() == b"warmest: Lima\n", timeout=PATIENCE,
               what="the downloaded summary.txt")
    screenshot(driver, tmp_path, "task")

    result = httpx.get(f"{server.url}/tasks/{task_id}/result", timeout=10).json()
    assert result["status"] == "completed" and result["output"]["metadata"]["source"] == "dashboard"
    assert server.store.get(task_id)["files"] == [{"path": "data.csv", "size": len(CSV)}]


def test_the_page_cancels_a_running_task_and_shows_markup_as_text(start_server, fake_llm, browser):
    server = start_server()
    fake_llm.script(Reply(HOSTILE_TEXT, blocks=[Block("python", GATED)]))
    task_id = server.submit("Wait for a signal that never comes")
    driver = browser.driver

    driver.get(f"{server.url}/ui#/tasks/{task_id}")
    wait(driver, lambda d: "exec_start" in timeline_types(d), "the block to start")
    # The model's markup is text on the page, and ran nowhere.
    reply = driver.find_element(By.CSS_SELECTOR, "#timeline [data-type=llm_response] .model-text")
    assert reply.text == HOSTILE_TEXT
    assert not driver.find_elements(By.CSS_SELECTOR, "#timeline img, #timeline b, #timeline script")
    assert driver.execute_script("return window.pwned === undefined")

    click(driver, "#cancel-task")
    wait(driver, lambda d: shown_status(d) == "cancelled", "the cancelled status")
    assert text_of(driver, "#action-message") == f"Task {task_id} cancelled"
    wait(driver, lambda d: timeline_types(d)[-1:] == ["task_end"], "task_end")
    assert not driver.find_elements(By.CSS_SELECTOR, "#cancel-task")
    assert server.status(task_id)["status"] == "cancelled"


def test_the_list_shows_the_newest_first_by_status_a_page_at_a_time(start_server, fake_llm, browser, tmp_path):
    server = start_server()
    finished = []
    fake_llm.script(Reply("The sales grew 12 % over the year."))
    finished.append(server.submit("Summarise the sales figures for 2023"))
    server.wait_for(finished[-1])
    fake_llm.script(Reply("Plotting.", blocks=[Block("python", "print('plotting')")]))
    finished.append(server.submit("Plot the monthly revenue as a bar chart", max_rounds=1))
    assert server.wait_for(finished[-1])["status"] == "error"
    fake_llm.script(Reply("There are 1,204 words."))
    finished.append(server.submit("Count the words in the report"))
    server.wait_for(finished[-1])
    fake_llm.script(Reply("Training.", blocks=[Block("python", GATED)]))
    cancelled = server.submit("Train a model on the whole archive")
    server.wait_for(cancelled, "running")
    httpx.delete(f"{server.url}/tasks/{cancelled}", timeout=30).raise_for_status()
    fake_llm.script(Reply("Checking the links.", blocks=[Block("python", GATED)]), Reply("All links work."))
    running = server.submit("Check every link on the website")
    server.wait_for(running, "running")
    newest_first = [running, cancelled, *reversed(finished)]
    driver = browser.driver

    driver.get(f"{server.url}/ui")
    wait(driver, lambda d: listed_ids(d) == newest_first, "all five tasks")
    badges = driver.find_elements(By.CSS_SELECTOR, "#task-table .badge")
    assert [badge.get_attribute("data-status") for badge in badges] == ["running", "cancelled", "completed", "error",
                                                                         "completed"]
    screenshot(driver, tmp_path, "list")

    Select(driver.find_element(By.CSS_SELECTOR, "#status-filter")).select_by_value("completed")
    wait(driver, lambda d: listed_ids(d) == [finished[2], finished[0]], "the completed tasks only")
    assert "status=completed" in driver.current_url

    driver.get(f"{server.url}/ui#/tasks?limit=2")
    wait(driver, lambda d: listed_ids(d) == newest_first[:2], "the first page")
    wait(driver, lambda d: text_of(d, "#page-range") == "1–2 of 5", "the page's range")
    click(driver, "#page-older")  # the first page redraws itself while a task on it runs
    wait(driver, lambda d: listed_ids(d) == newest_first[2:4], "the second page")
    click(driver, "#page-older")
    wait(driver, lambda d: listed_ids(d) == newest_first[4:], "the last page")
    assert driver.find_element(By.CSS_SELECTOR, "#page-older").get_attribute("aria-disabled") == "true"

    # A click on a row opens the task.
    driver.get(f"{server.url}/ui")
    wait(driver, lambda d: listed_ids(d) == newest_first, "the list again")
    click(driver, f'tr[data-task-id="{running}"] .task-link')
    wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#task-instruction") and
         text_of(d, "#task-instruction") == "Check every link on the website", "the task's view")
    release(server, running)
    wait(driver, lambda d: shown_status(d) == "completed", "the running task to complete")


def test_with_a_token_the_page_asks_for_it_and_keeps_it_for_the_session(start_server, fake_llm, browser, tmp_path):
    server = start_server(api_token="s3cret-token")
    fake_llm.script(Reply("Hello from behind the token."))
    driver = browser.driver

    driver.get(f"{server.url}/ui")
    token_input = shown(driver, "#token-dialog[open] #token-input")
    assert "needs an API token" in driver.find_element(By.CSS_SELECTOR, "#token-reason").text
    screenshot(driver, tmp_path, "token")
    token_input.send_keys("wrong-token")
    driver.find_element(By.CSS_SELECTOR, "#token-save").click()
    wait(driver, lambda d: "refused this token" in d.find_element(By.CSS_SELECTOR, "#token-reason").text,
         "the dialog to say the token was refused")
    token_input.clear()
    token_input.send_keys("s3cret-token")
    driver.find_element(By.CSS_SELECTOR, "#token-save").click()
    wait(driver, lambda d: "No tasks yet" in d.find_element(By.CSS_SELECTOR, "#view").text, "the empty list")
    assert driver.execute_script("return sessionStorage.getItem('aipython-agent-mode.token')") == "s3cret-token"
    assert driver.find_element(By.CSS_SELECTOR, "#token-button").text == "Token: set"

    driver.get(f"{server.url}/ui#/new")
    shown(driver, "#instruction").send_keys("Say hello")
    driver.find_element(By.CSS_SELECTOR, "#submit-task").click()
    answer = wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#answer-text") and
                  d.find_element(By.CSS_SELECTOR, "#answer-text").text, "the answer")
    assert answer == "Hello from behind the token."

    driver.refresh()  # the same tab: the token is still there, nothing is asked
    wait(driver, lambda d: shown_status(d) == "completed", "the task after a reload")
    assert not driver.find_elements(By.CSS_SELECTOR, "#token-dialog[open]")


def test_the_event_reader_parses_the_stream_and_resumes_where_it_dropped(server, browser):
    """app/ui/events.js in the browser, fed by hand: lines cut anywhere
    (even inside a CRLF), comments, multi-line data; then a stream that
    drops after one event, and a task that is gone."""
    driver = browser.driver
    driver.get(f"{server.url}/ui")
    result = driver.execute_async_script("""
        const done = arguments[arguments.length - 1];
        (async () => {
          const { EventStreamParser, followEvents } = await import("/ui/events.js");
          const { ApiError } = await import("/ui/api.js");
          const parsed = [];
          const parser = new EventStreamParser((message) => parsed.push(message));
          for (const piece of [": keepalive\\r", "\\n\\r\\nid: 7\\r", "\\nevent: exec_result\\ndata: {\\"a\\":",
                               "\\ndata: 1}\\n", "\\n", "data: plain\\r\\r", "id: 8\\ndata: never ended"]) {
            parser.push(piece);
          }

          const event = (seq, type) => `id: ${seq}\\nevent: ${type}\\ndata: {"seq": ${seq}, "type": "${type}"}\\n\\n`;
          const streams = [[event(1, "task_start") + "id: 2\\nevent: llm_", new TypeError("network lost")],
                           [event(2, "llm_response"), event(3, "task_end")]];
          const opened = [], seen = [], states = [];
          const open = async (url, lastEventId) => {
            opened.push(lastEventId);
            const pieces = streams.shift();
            return new Response(new ReadableStream({
              pull(controller) {
                const piece = pieces.shift();
                if (piece === undefined) controller.close();
                else if (piece instanceof Error) controller.error(piece);
                else controller.enqueue(new TextEncoder().encode(piece));
              },
            }));
          };
          await followEvents("/tasks/x/events", { open, retryDelaysMs: [0], onEvent: (e) => seen.push(e.seq),
                                                  onState: (state) => states.push(state) });

          let gone = null;
          const refuse = async () => { throw new ApiError(404, "Task x not found"); };
          await followEvents("/tasks/x/events", { open: refuse, onEvent: () => {} }).catch((e) => { gone = e.status; });
          return { parsed, opened, seen, states, gone };
        })().then(done, (error) => done({ error: String(error) }));
    """)
    assert result.get("error") is None, result
    assert result["parsed"] == [{"id": "7", "event": "exec_result", "data": '{"a":\n1}'},
                                {"id": "7", "event": "message", "data": "plain"}]
    assert result["opened"] == ["", "1"]
    assert result["seen"] == [1, 2, 3]
    assert result["states"] == ["live", "reconnecting", "live", "ended"]
    assert result["gone"] == 404
