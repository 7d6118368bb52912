"""The README's demo command, end to end: its own Prefect server, the sandbox, the staging flow, the table."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import free_port

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.prefect


def seconds(text: str) -> float:
    """``4.2 s`` or ``14m 05s``."""
    if match := re.fullmatch(r"(\d+)m (\d+)s", text):
        return int(match[1]) * 60 + int(match[2])
    return float(text.removesuffix(" s"))


def test_demo_runs_to_completion_and_prints_the_table(tmp_path: Path):
    command = [
        sys.executable,
        "-m",
        "deployments.cli",
        "demo",
        "--no-wait",
        "--port",
        str(free_port()),
        "--home",
        str(tmp_path / "prefect"),
        "--state-dir",
        str(tmp_path / "sandbox"),
    ]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
    output = result.stdout
    assert result.returncode == 0, output[-4000:] + result.stderr[-4000:]
    rows = {}
    for line in output.splitlines():
        duration = r"([\d.]+ s|\d+m \d+s)"
        if match := re.match(rf"^(\S.*?)\s{{2,}}{duration}\s{{2,}}{duration}\s{{2,}}(.+?)\s{{2,}}(.+)$", line):
            rows[match[1]] = (seconds(match[2]), seconds(match[3]), match[4], match[5])
    for stage in (
        "source build",
        "stack build",
        "image",
        "AWX job",
        "pod stack-1",
        "pod stack-0",
        "verify",
        "commit -> roll-out start",
        "total (lead time)",
    ):
        assert stage in rows, output
    total, budget, modelled, verdict = rows["total (lead time)"]
    assert budget == pytest.approx(15.0)  # 15 minutes at the demo's speed of 60
    assert modelled == f"{total:.1f} of 15.0 min"
    assert total < budget, output
    assert verdict == "within budget"
    assert re.search(
        r"Flow run 'staging <- frontend@[0-9a-f]{7}' ended Completed: http://127\.0\.0\.1:\d+/runs/", output
    )
    assert "budgets are the real ones divided by 60" in output
    assert f"Lead time {total:.1f} s at speed 60 = {total:.1f} min (target 15.0 s at speed 60 = 15.0 min)." in output
