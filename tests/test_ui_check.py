"""
``scripts/ui-check`` end to end: Airflow 3.3's UI in headless Chromium adds a RunComfy connection
through the form, tests it, runs the example DAG and follows the RunComfy output link.

It needs Debian's ``chromium`` and ``chromium-driver`` and Selenium (in the 3.3 test environment), and
starts real processes (about two minutes on a 2-core machine). Where any of that is missing the test
skips and says which.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests import airflow_utils as au

ROOT = Path(__file__).resolve().parents[1]
SHOTS = (
    "connection-form.png",
    "connection-form-extra-fields.png",
    "connection-test.png",
    "extra-link.png",
    "extra-link-opened.png",
)


def missing() -> str | None:
    """Why the check cannot run here, or ``None``."""
    if not au.AIRFLOW_3:
        return "scripts/ui-check drives Airflow 3.3's UI (React); Airflow 2.11's UI is not checked"
    if os.environ.get("RUNCOMFY_SKIP_REAL_PROCESSES", "") not in ("", "0"):
        return "real-process tests are skipped (RUNCOMFY_SKIP_REAL_PROCESSES)"
    for binary in ("/usr/bin/chromium", "/usr/bin/chromedriver"):
        if not Path(binary).exists():
            return f"{binary} is not installed (apt-get install -y chromium chromium-driver)"
    if importlib.util.find_spec("selenium") is None:
        return "Selenium is not installed in this environment (scripts/_env.sh installs it for Airflow 3.3)"
    return None


@pytest.mark.skipif(missing() is not None, reason=str(missing()))
def test_ui_check_leaves_the_screenshots(tmp_path: Path) -> None:
    out = tmp_path / "shots"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "RUNCOMFY_"))}
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "ui_check.py"), "--out", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-6000:]
    summary = json.loads(next(line for line in reversed(done.stdout.splitlines()) if line.startswith("{")))
    assert "accepted the API token" in summary["test"], "the Test button reached RunComfy (the emulator)"
    assert "/files/" in summary["extra_link"], "the link opens the edit's first output"

    from PIL import Image

    for name in SHOTS:
        with Image.open(out / name) as image:
            assert image.format == "PNG"
            assert image.width >= 600, (name, image.size)
            assert image.height >= 400, (name, image.size)
    assert not (out / "failure.png").exists()
    shutil.rmtree(out)
