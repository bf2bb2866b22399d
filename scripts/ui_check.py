"""
The provider as a person sees it: Airflow 3.3's UI in a real (headless) Chromium, against the emulator.

Starts a throwaway Airflow deployment (API server with the UI, scheduler, triggerer, DAG processor;
SQLite) and the RunComfy emulator, then, in the browser:

1. adds a RunComfy connection through the Connections form: relabelled fields
   (``connection-form.png``), the retry and timeout knobs as their own fields
   (``connection-form-extra-fields.png``)
2. presses the connection's Test button and waits for "Connection works" -> ``connection-test.png``
3. runs the example DAG ``runcomfy_edit_then_animate`` (triggered through the REST API with the
   emulator's sample images) with the connection the form saved
4. opens the finished ``edit`` task, whose Details show the **RunComfy output** extra link, checks
   that it points at the task's first output                   -> ``extra-link.png``
5. follows the link                                             -> ``extra-link-opened.png``

Every step checks what the page says and fails loudly otherwise (a ``failure.png`` of the page is
left beside the others). The processes come from ``devtools/`` (as in the real-process test) and are
stopped by PID at the end. Run it with ``scripts/ui-check``, which installs what it needs.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any

from devtools.airflow_stack import AirflowStack
from devtools.processes import EmulatorProcess

ROOT = Path(__file__).resolve().parents[1]

if TYPE_CHECKING:
    from collections.abc import Callable

    from selenium.webdriver.remote.webdriver import WebDriver

DAG_ID = "runcomfy_edit_then_animate"
CONN_ID = "runcomfy_default"
TOKEN = "ui-check-emulator-token"
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
#: What Debian's chromium needs to run headless as root in a container, and what keeps it offline:
#: no QUIC, no first-run, background or component-update traffic, a fresh profile every time.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
)


def say(message: str) -> None:
    print(f"ui-check: {message}", flush=True)


def wait_for(what: str, check: Callable[[], Any], timeout: float, interval: float = 0.5) -> Any:
    """Call ``check`` until it returns something truthy; raise naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = check()
        except Exception as err:  # the page is still rendering; try again
            last_error = err
        else:
            if value:
                return value
        time.sleep(interval)
    raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what} (last error: {last_error})")


def require(condition: Any, message: str) -> None:
    """A check that stays on under ``python -O`` (unlike ``assert``)."""
    if not condition:
        raise RuntimeError(message)


def api(base: str, path: str, body: dict[str, Any] | None = None) -> Any:
    """One call to Airflow's REST API (the simple auth manager lets everyone in as admin here)."""
    request = urllib.request.Request(
        f"{base}{path}",
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Content-Type": "application/json"},
        method="POST" if body is not None else "GET",
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def shrink(path: Path) -> None:
    """Keep committed screenshots small: 256 colours are plenty for a UI."""
    from PIL import Image

    with Image.open(path) as image:
        small = image.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    small.save(path, optimize=True)


def browser(profile: Path) -> WebDriver:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--window-size=1280,900"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


class Check:
    """The browser steps; each leaves one screenshot in ``out``."""

    def __init__(self, driver: WebDriver, base: str, emulator_url: str, out: Path) -> None:
        self.driver, self.base, self.emulator_url, self.out = driver, base, emulator_url, out

    def shot(self, name: str, element: Any = None) -> Path:
        path = self.out / name
        if element is not None:
            element.screenshot(str(path))
        else:
            self.driver.save_screenshot(str(path))
        shrink(path)
        say(f"saved {path}")
        return path

    def find(self, by: str, value: str, timeout: float = 30) -> Any:
        return wait_for(f"{value!r}", lambda: self.driver.find_element(by, value), timeout)

    def add_connection(self) -> None:
        from selenium.webdriver.common.by import By
        from selenium.webdriver.common.keys import Keys

        host, _, port = self.emulator_url.rpartition(":")
        self.driver.get(f"{self.base}/connections")
        self.find(By.XPATH, "//button[contains(., 'Add Connection')]").click()
        self.find(By.NAME, "connection_id").send_keys(CONN_ID)
        kind = self.find(By.CSS_SELECTOR, "[role=dialog] input[role=combobox]")
        kind.click()
        kind.send_keys("RunComfy")
        option = self.find(By.XPATH, "//*[@role='option'][normalize-space()='RunComfy']")
        option.click()

        # The provider's form: relabelled fields with its placeholders, schema and login hidden.
        def relabelled() -> bool:
            labels = {e.text.strip() for e in self.driver.find_elements(By.TAG_NAME, "label")}
            return {"API base URL", "API token"} <= labels

        wait_for("the RunComfy form (relabelled fields)", relabelled, 30)
        self.find(By.NAME, "host").send_keys(host)
        # Airflow 3.3.2's Test button sends port 0 for a connection without one, and the API then
        # refuses to test it; a port makes Test work (docs/connection.md).
        self.find(By.NAME, "port").send_keys(port)
        self.find(By.NAME, "password").send_keys(TOKEN)
        self.shot("connection-form.png", self.find(By.CSS_SELECTOR, "[role=dialog]"))
        self.find(By.XPATH, "//button[contains(., 'Extra Fields') and not(contains(., 'JSON'))]").click()
        retries = self.find(By.NAME, "element_max_retries")
        retries.send_keys(Keys.CONTROL, "a")
        retries.send_keys("3")
        wait_for(
            "the retry knobs",
            lambda: self.driver.find_element(By.NAME, "element_read_timeout").is_displayed(),
            10,
        )
        self.driver.set_window_size(1280, 1250)  # the whole dialog, extra fields included
        self.shot("connection-form-extra-fields.png", self.find(By.CSS_SELECTOR, "[role=dialog]"))
        self.driver.set_window_size(1280, 900)
        self.find(By.XPATH, "//button[normalize-space()='Save']").click()
        wait_for(
            "the saved connection in the list",
            lambda: CONN_ID in self.driver.find_element(By.TAG_NAME, "table").text,
            30,
        )
        saved = api(self.base, f"/api/v2/connections/{CONN_ID}")
        require(saved["conn_type"] == "runcomfy", f"saved as {saved}")
        require(json.loads(saved["extra"])["max_retries"] == 3, f"the form's knob was not saved: {saved}")
        require(saved["port"] == int(port), f"the form's port was not saved: {saved}")
        require(saved["password"] != TOKEN, "the API showed the token")

    def press_test(self) -> str:
        from selenium.webdriver.common.by import By

        self.driver.get(f"{self.base}/connections")
        self.find(By.CSS_SELECTOR, "button[aria-label='Test Connection']").click()

        def outcome() -> str | None:
            text = str(self.driver.find_element(By.TAG_NAME, "body").text)
            return text if "accepted the API token" in text or "Test Connection Failed" in text else None

        message = wait_for("the Test result", outcome, 60)
        if "accepted the API token" not in message:
            raise RuntimeError(f"the Test button did not succeed: {message[-300:]}")
        self.shot("connection-test.png")
        return next(line for line in message.splitlines() if "accepted the API token" in line)

    def run_dag(self, destination: Path, timeout: float) -> str:
        wait_for("the example DAG to be parsed", lambda: api(self.base, f"/api/v2/dags/{DAG_ID}"), 180, 2)
        run_id = f"ui_check__{int(time.time())}"
        conf = {
            "images": [
                f"{self.emulator_url}/samples/portrait.png",
                f"{self.emulator_url}/samples/landscape.jpg",
            ],
            "destination": destination.as_uri(),
        }
        api(
            self.base,
            f"/api/v2/dags/{DAG_ID}/dagRuns",
            {"dag_run_id": run_id, "logical_date": None, "conf": conf},
        )
        say(f"triggered {DAG_ID} run {run_id}")

        def finished() -> str | None:
            state = api(self.base, f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}")["state"]
            return state if state in ("success", "failed") else None

        state = wait_for(f"run {run_id} to finish", finished, timeout, 2)
        if state != "success":
            tis = api(self.base, f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances")["task_instances"]
            raise RuntimeError(f"run {run_id} {state}: {[(t['task_id'], t['state']) for t in tis]}")
        return run_id

    def open_extra_link(self, run_id: str) -> str:
        from selenium.webdriver.common.by import By

        links = api(self.base, f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/edit/links")
        expected = links["extra_links"]["RunComfy output"]
        require(str(expected).startswith(f"{self.emulator_url}/files/"), f"unexpected links {links}")
        self.driver.get(f"{self.base}/dags/{DAG_ID}/runs/{run_id}/tasks/edit/details")
        button = self.find(By.XPATH, "//a[normalize-space()='RunComfy output']", 60)
        if button.get_attribute("href") != expected:
            raise RuntimeError(f"the link opens {button.get_attribute('href')}, not {expected}")
        self.shot("extra-link.png")
        before = set(self.driver.window_handles)
        button.click()
        tab = wait_for("the link's new tab", lambda: set(self.driver.window_handles) - before, 30)
        self.driver.switch_to.window(tab.pop())
        wait_for("the output image", lambda: self.driver.current_url == expected, 30)
        self.shot("extra-link-opened.png")
        return expected


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "ui-check", help="where the screenshots go")
    parser.add_argument("--run-timeout", type=float, default=300, help="longest wait for the DAG run (s)")
    parser.add_argument(
        "--keep-workdir", action="store_true", help="keep the throwaway AIRFLOW_HOME and logs"
    )
    args = parser.parse_args()
    for binary in (CHROMIUM, CHROMEDRIVER):
        if not Path(binary).exists():
            say(
                f"{binary} is missing: apt-get install -y chromium chromium-driver"
                " (scripts/ui-check does it when run as root)"
            )
            return 2
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "failure.png").unlink(missing_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="runcomfy-ui-check-"))
    dags = workdir / "dags"
    dags.mkdir()
    shutil.copy(ROOT / "example_dags" / f"{DAG_ID}.py", dags)
    emulator = EmulatorProcess(workdir, run_seconds=2.0, token=TOKEN)
    stack = AirflowStack(
        workdir,
        dags,
        {
            "AIRFLOW__CORE__TEST_CONNECTION": "Enabled",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
            "AIRFLOW__CORE__PARALLELISM": "2",
        },
    )
    driver = None
    started = time.monotonic()
    try:
        emulator.start()
        say(f"emulator at {emulator.base_url}; starting Airflow in {workdir}")
        stack.cli("db", "migrate")
        stack.spawn("api-server", "api-server", "--port", str(stack.api_port))
        stack.spawn("dag-processor", "dag-processor")
        stack.spawn("scheduler", "scheduler")
        stack.spawn("triggerer", "triggerer")
        stack._wait_for_port(stack.api_port)
        base = f"http://127.0.0.1:{stack.api_port}"
        wait_for("the API server", lambda: api(base, "/api/v2/monitor/health"), 120, 1)
        say(f"Airflow UI at {base}")
        driver = browser(workdir / "chromium-profile")
        check = Check(driver, base, emulator.base_url, args.out)
        check.add_connection()
        message = check.press_test()
        say(f"Test: {message}")
        run_id = check.run_dag(workdir / "outputs", args.run_timeout)
        link = check.open_extra_link(run_id)
        summary = {
            "test": message,
            "run_id": run_id,
            "extra_link": link,
            "seconds": round(time.monotonic() - started),
        }
        (workdir / "summary.json").write_text(json.dumps(summary), encoding="utf-8")
        print(json.dumps(summary), flush=True)
        return 0
    except BaseException:
        if driver is not None:
            try:
                driver.save_screenshot(str(args.out / "failure.png"))
                say(f"the page at the failure: {args.out / 'failure.png'}")
            except Exception:
                say("no screenshot of the failure (the browser is gone)")
        print(stack.tails(40), file=sys.stderr)
        raise
    finally:
        if driver is not None:
            driver.quit()
        stack.stop()
        emulator.stop()
        if args.keep_workdir:
            say(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
