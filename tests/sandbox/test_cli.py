"""``python -m sandbox`` as a user runs it: state files once every emulator answers, the push and faults
commands against the running process, and a clean stop on SIGTERM and Ctrl-C."""

from __future__ import annotations

import json
import signal
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from sandbox.runtime import SERVICES
from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]


def start(state_dir: Path, *extra: str) -> subprocess.Popen[str]:
    ports = [
        arg
        for service in ("github", "awx", "registry", "kubernetes")
        for arg in (f"--{service}-port", str(free_port()))
    ]
    return subprocess.Popen(
        [sys.executable, "-m", "sandbox", "--speed", "600", "--state-dir", str(state_dir), *ports, *extra],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def wait_for_state(process: subprocess.Popen[str], state_dir: Path) -> dict:
    deadline = time.monotonic() + 60
    while not (state_dir / "endpoints.json").is_file():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"the sandbox did not start: {process.communicate()[0]}")
        time.sleep(0.1)
    return json.loads((state_dir / "endpoints.json").read_text())


def cli(state_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sandbox", *args, "--state-dir", str(state_dir)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ("stop_signal", "tls"),
    [(signal.SIGTERM, []), (signal.SIGINT, ["--tls"])],
    ids=["SIGTERM, Kubernetes over HTTPS", "SIGINT, --tls: all over HTTPS"],
)
def test_serve_push_faults_and_stop(tmp_path: Path, stop_signal: signal.Signals, tls: list[str]):
    process = start(tmp_path, *tls)
    try:
        endpoints = wait_for_state(process, tmp_path)
        trusted = ssl.create_default_context(cafile=tmp_path / "ca.pem")
        https = {service for service in SERVICES if endpoints[service]["url"].startswith("https://")}
        assert https == (set(SERVICES) if tls else {"kubernetes"})
        for service in SERVICES:
            assert httpx.get(f"{endpoints[service]['url']}/_sandbox/health", verify=trusted).json()["ok"]
            assert endpoints[service].get("ca_bundle") == (str(tmp_path / "ca.pem") if service in https else None)
        assert (tmp_path / "kubeconfig").read_text().count(endpoints["kubernetes"]["url"]) == 1

        pushed = cli(tmp_path, "push", "xchem/fragalysis-frontend", "staging", "--message", "from the CLI")
        assert pushed.returncode == 0, pushed.stdout + pushed.stderr
        sha = json.loads(pushed.stdout)["sha"]
        headers = {"Authorization": f"Bearer {endpoints['github']['token']}"}
        branch = httpx.get(
            f"{endpoints['github']['url']}/repos/xchem/fragalysis-frontend/branches/staging",
            headers=headers,
            verify=trusted,
        )
        assert branch.json()["commit"]["sha"] == sha
        unknown = cli(tmp_path, "push", "xchem/nothing-here", "staging")
        assert unknown.returncode == 1

        tagged = cli(tmp_path, "push", "xchem/fragalysis-stack", "refs/tags/1.0.3")
        assert tagged.returncode == 0, tagged.stdout + tagged.stderr
        tag = json.loads(tagged.stdout)
        assert len(tag["runs"]) == 1  # build main
        stack = f"{endpoints['github']['url']}/repos/xchem/fragalysis-stack"
        tags = httpx.get(f"{stack}/tags", headers=headers, verify=trusted).json()
        assert {"name": "1.0.3", "sha": tag["sha"]} in [{"name": t["name"], "sha": t["commit"]["sha"]} for t in tags]
        run = httpx.get(f"{stack}/actions/runs/{tag['runs'][0]}", headers=headers, verify=trusted).json()
        assert (run["name"], run["event"], run["head_branch"], run["head_sha"]) == (
            "build main",
            "push",
            "1.0.3",
            tag["sha"],
        )

        changed = cli(tmp_path, "faults", "--set", "awx.error_rate=0.25")
        assert json.loads(changed.stdout)["awx"]["error_rate"] == 0.25
        bad_release = '[{"namespace": "production-stack", "image": "xchem/fragalysis-stack:1.0.4"}]'
        crash = cli(tmp_path, "faults", "--set", f"crashloop={bad_release}")
        assert json.loads(crash.stdout)["crashloop"][0]["image"] == "xchem/fragalysis-stack:1.0.4"
    finally:
        process.send_signal(stop_signal)
        output, _ = process.communicate(timeout=30)
    assert process.returncode == 0, output
    assert endpoints["github"]["token"] in output, "it prints the tokens a user needs"
    assert "stopping the sandbox" in output
    assert "Traceback" not in output


# ---------------------------------------------------------------- bad input, refused before anything starts


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["push", "xchem/fragalysis-frontend", "staging", "--sha", "1234abc"], "40 hexadecimal digits"),
        (["push", "xchem/fragalysis-frontend", "staging", "--sha", "g" * 40], "40 hexadecimal digits"),
        (["push", "xchem/fragalysis-frontend", "staging", "--sha", "a" * 5000], "..."),
        (["--speed", "0"], "must be a positive number"),
        (["--speed", "-60"], "must be a positive number"),
        (["--speed", "fast"], "not a number"),
    ],
)
def test_bad_arguments_are_refused_by_the_parser(argv: list[str], expected: str, capsys: pytest.CaptureFixture[str]):
    from sandbox.cli import main

    with pytest.raises(SystemExit) as exited:
        main([*argv, "--state-dir", "/nonexistent-sandbox-state"])
    assert exited.value.code == 2
    error = capsys.readouterr().err
    assert expected in error, error
    assert len(error) < 2000, "a 5,000-character value is not echoed whole"


def test_a_malformed_scenario_file_is_refused_naming_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    from sandbox.cli import main

    scenario = tmp_path / "broken.yaml"
    scenario.write_text("faults:\n  github:\n    error_rate: -1\n")
    assert main(["--scenario", str(scenario), "--state-dir", str(tmp_path / "state")]) == 2
    error = capsys.readouterr().err
    assert f"scenario {scenario}" in error
    assert "faults.github.error_rate" in error
    assert not (tmp_path / "state").exists(), "nothing was started"
