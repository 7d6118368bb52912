"""The README's demo command, end to end: its own Prefect server, the sandbox, the staging flow, the table."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import free_port

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.prefect

SPEED = 60
"""The demo's default. Whether the run ends within its 15 scaled minutes depends on how loaded the machine is (the
flow's start-up and hand-offs are real seconds, each a modelled minute here), so the test checks that the verdict
agrees with the figures, not which verdict it is: ``benchmarks/staging_redeploy.py`` measures the lead time."""


def seconds(text: str) -> float:
    """``4.2 s`` or ``14m 05s``."""
    if match := re.fullmatch(r"(\d+)m (\d+)s", text):
        return int(match[1]) * 60 + int(match[2])
    return float(text.removesuffix(" s"))


def test_demo_runs_to_completion_and_prints_the_table(tmp_path: Path, prefect_home: Callable[[Path], Path]):
    """From a Prefect home whose database has been migrated before (a second run of the demo): the first run's
    migration is the server's own start-up, which the deployments tests cover."""
    command = [
        sys.executable,
        "-m",
        "deployments.cli",
        "demo",
        "--no-wait",
        "--speed",
        str(SPEED),
        "--port",
        str(free_port()),
        "--home",
        str(prefect_home(tmp_path / "prefect")),
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
            # the staging table comes first; the production tables that follow repeat its stage names
            rows.setdefault(match[1], (seconds(match[2]), seconds(match[3]), match[4], match[5]))
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
    assert budget == pytest.approx(15 * 60 / SPEED)  # 15 minutes
    # what the figures stand for in the modelled world (rounding to a tenth on both sides)
    in_minutes = re.fullmatch(r"([\d.]+) of 15\.0 min", modelled)
    assert in_minutes, modelled
    assert float(in_minutes[1]) == pytest.approx(total * SPEED / 60, abs=0.06)
    assert verdict == ("within budget" if total <= budget else "OVER BUDGET"), output
    assert re.search(
        r"Flow run 'staging <- frontend@[0-9a-f]{7}' ended Completed: http://127\.0\.0\.1:\d+/runs/", output
    )
    assert f"budgets are the real ones divided by {SPEED}" in output
    target = rf"\(target {budget:.1f} s at speed {SPEED} = 15\.0 min\)"
    lead = rf"Lead time {total:.1f} s at speed {SPEED} = [\d.]+ min {target}\."
    assert re.search(lead, output), output
    # then the production flow through a served deployment: a release approved from code, a bad one rolled back
    assert "It waited for approval; approved from code (--no-wait)" in output
    assert re.search(r"Flow run 'production <- 1\.0\.3' ended Completed: http://", output), output
    assert re.search(r"Flow run 'production <- 1\.0\.4' ended Failed: http://", output), output
    rolled_back = (
        r"1\.0\.4 failed at pod stack-1: .*CrashLoopBackOff.*; rolled back to 1\.0\.3 \(sha256:[0-9a-f]{64}\), verified"
    )
    assert re.search(rolled_back, output), output
    assert "rollback verify" in output
    # and ends with each environment's delivery report, fed by the records of the runs above
    assert "staging, last 30 days: 1 deploys (1 succeeded, 0 failed, 0 rolled back)" in output, output
    assert "production, last 30 days: 2 deploys (1 succeeded, 0 failed, 1 rolled back)" in output, output
    assert "change failure rate 50%" in output, output
    assert re.search(r"http://127\.0\.0\.1:\d+/artifacts/artifact/[0-9a-f-]{36}\n", output), output
