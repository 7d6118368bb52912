"""Benchmark: webhook -> flow Running, through ``fragalysis-cd serve --sandbox``.

For each runner poll setting (Prefect's default 10 s, and serve's 1 s) it starts ``fragalysis-cd serve --sandbox``,
pushes N frontend commits to staging one after another (each deploy finishes before the next push), and splits each
push's way to a Running staging run, from the timestamps the parts record themselves:

- push -> received: the sandbox's GitHub delivers the signed webhook and the receiver takes it (the event's
  ``occurred``, set by the receiver on arrival), measured from just before the push request;
- received -> created: the event reaches Prefect, the trigger's automation creates the flow run (its ``created``);
- created -> Pending: the runner's next poll picks the run up (``PREFECT_RUNNER_POLL_FREQUENCY``);
- Pending -> Running: the runner starts a Python process for the run, which imports Prefect and the flow.

All on one machine, one clock. The machine is shared and noisy: compare the settings within one run.

    .venv/bin/python -m benchmarks.webhook_latency --pushes 5 [--poll 10 --poll 1] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
PHASES = ["push -> received", "received -> created", "created -> Pending", "Pending -> Running", "push -> Running"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait(check: Any, what: str, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise TimeoutError(f"timed out waiting for {what}")


def parse(timestamp: str) -> datetime:
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00"))


class Served:
    """``fragalysis-cd serve --sandbox`` in a temporary directory, with the runner polling every ``poll`` s."""

    def __init__(self, poll: float, speed: float, directory: Path) -> None:
        self.directory = directory
        self.state = directory / "state"
        self.log = directory / "serve.log"
        env = {key: value for key, value in os.environ.items() if not key.startswith("PREFECT_")}
        command = [
            str(Path(sys.executable).with_name("fragalysis-cd")),
            "serve",
            "--sandbox",
            "--state-dir",
            str(self.state),
            "--home",
            str(directory / "prefect-home"),
            "--port",
            str(free_port()),
            "--receiver-port",
            "0",
            "--speed",
            f"{speed:g}",
            "--poll",
            f"{poll:g}",
        ]
        with self.log.open("wb") as output:
            self.process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT)
        self.endpoints: dict[str, Any] = wait(self._ready, "serve to start", 600)
        self.api = httpx.Client(base_url=self.endpoints["prefect"]["api_url"], timeout=30)
        self.github = httpx.Client(base_url=self.endpoints["github"]["url"], timeout=30)
        self.staging = self.api.get("/deployments/name/deploy-to-staging/staging").raise_for_status().json()["id"]

    def _ready(self) -> dict[str, Any] | None:
        if self.process.poll() is not None:
            raise RuntimeError(f"serve exited: {self.log.read_text()[-3000:]}")
        path = self.state / "endpoints.json"
        endpoints = json.loads(path.read_text()) if path.is_file() else {}
        return endpoints if "receiver" in endpoints else None

    def stop(self) -> None:
        self.api.close()
        self.github.close()
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(120)

    def push(self) -> dict[str, Any]:
        """One frontend commit to staging, followed to its run's end; the phases of its way to Running."""
        pushed = datetime.now(UTC)
        body = {"repository": "xchem/fragalysis-frontend", "ref": "staging", "message": "benchmark"}
        sha = self.github.post("/_sandbox/push", json=body).raise_for_status().json()["sha"]
        run = wait(lambda: self._run_of(sha), f"a staging run for {sha[:7]}", 120)
        final = wait(lambda: self._final(run["id"]), f"the run for {sha[:7]} to end", 600)
        states: dict[str, datetime] = {}
        for state in self.api.get("/flow_run_states/", params={"flow_run_id": run["id"]}).raise_for_status().json():
            states.setdefault(state["type"], parse(state["timestamp"]))
        received = self._received(sha)
        created = parse(run["created"])
        points = [pushed, received, created, states["PENDING"], states["RUNNING"]]
        figures = {name: (b - a).total_seconds() for name, a, b in zip(PHASES, points, points[1:], strict=False)}
        figures["push -> Running"] = (states["RUNNING"] - pushed).total_seconds()
        return {"sha": sha, "outcome": final, **figures}

    def _run_of(self, sha: str) -> dict[str, Any] | None:
        body = {"deployments": {"id": {"any_": [self.staging]}}}
        runs = self.api.post("/flow_runs/filter", json=body).raise_for_status().json()
        return next((r for r in runs if r["parameters"].get("sha") == sha), None)

    def _final(self, run_id: str) -> str | None:
        state = self.api.get(f"/flow_runs/{run_id}").raise_for_status().json()["state"]
        return str(state["name"]) if state["type"] in {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"} else None

    def _received(self, sha: str) -> datetime:
        body = {"filter": {"event": {"name": ["fragalysis.github.push"]}}, "limit": 50}
        events = self.api.post("/events/filter", json=body).raise_for_status().json()["events"]
        (event,) = [e for e in events if e["payload"].get("sha") == sha]
        return parse(event["occurred"])


def measure(poll: float, pushes: int, speed: float) -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory(prefix="webhook-latency-") as directory:
        print(f"poll {poll:g} s: starting fragalysis-cd serve --sandbox ...", flush=True)
        served = Served(poll, speed, Path(directory))
        try:
            results = []
            for i in range(pushes):
                result = served.push()
                results.append(result)
                print(f"  push {i}: " + "  ".join(f"{k} {result[k]:.2f}s" for k in PHASES) + f"  {result['outcome']}")
            return results
        finally:
            served.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pushes", type=int, default=5)
    parser.add_argument("--poll", type=float, action="append", help="runner poll seconds (default: 10 and 1)")
    parser.add_argument("--speed", type=float, default=200.0, help="the sandbox's speed (a deploy takes ~15 min/speed)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    polls = args.poll or [10.0, 1.0]
    everything = {f"{poll:g}": measure(poll, args.pushes, args.speed) for poll in polls}
    print()
    print(f"{'runner poll':>12}  " + "  ".join(f"{name:>20}" for name in PHASES) + "   (medians of each phase)")
    for poll, results in everything.items():
        medians = [statistics.median(r[name] for r in results) for name in PHASES]
        print(f"{poll + ' s':>12}  " + "  ".join(f"{m:>19.2f}s" for m in medians))
    if args.json:
        args.json.write_text(json.dumps(everything, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
