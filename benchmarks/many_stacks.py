"""Benchmark: many developer stacks deploying at once, on the embedded set-up and on the scaled-out one.

The ``developers`` scenario with K stacks ``stack-devNN-default`` (one replica each), each its own environment, so
their deploys run at the same time: K flow runs of ``deploy-to-staging/staging`` (``source=stack``, the branch
head) are created at once, one per stack's ``StackTarget`` block ``devNN``. Each developer builds into their own
image (``devNN/fragalysis-stack:latest``, from their own ``devNN/fragalysis-stack`` repository), as the Fragalysis
developers do with ``stack_namespace``: with one shared ``latest``, every build would overwrite the digest another
deploy is about to verify.

Two set-ups, the sandbox in this process for both (its GitHub rate limit raised: one token serves every stack):

- **embedded**: ``fragalysis-cd serve`` (Prefect's SQLite, one server process with its services, one runner serving
  every deployment of prefect.yaml, ``--limit`` raised above K, ``--poll 1``);
- **scaled-out** (Prefect's self-hosting guide): a throwaway PostgreSQL cluster (Debian's ``initdb``/``pg_ctl``, as
  the ``postgres`` user when run as root), ``redis-server`` on a free port, ``prefect-redis`` for messaging, the
  events' causal ordering, concurrency leases and Docket; ``prefect server database upgrade``, ``prefect server start
  --no-services``, ``prefect server services start``; the process work pool ``fragalysis`` with ``prefect --no-prompt
  deploy --all`` and two ``prefect worker start`` processes (``PREFECT_WORKER_QUERY_SECONDS=1``).

Per set-up and K: runs Completed, stacks verified independently (every pod Ready and running the digest its build
pushed, read from the sandbox), the overhead per deploy (p50, p95: below), the delay from a run's creation to Running
(its process starting), the makespan, and the peak RSS summed over the server's processes and over the
runner's/workers' processes with their flow runs (sampled every second from /proc). Then the K at which the embedded
set-up's p95 overhead passes twice its one-stack value (or a run failed), and the scaled-out figures at that K.

**Overhead** of a deploy: the flow run's wall time (Prefect's Running -> its end) minus the emulated critical path,
which is the stack build's span (its GitHub run created -> completed) plus the AWX job's span (created -> finished;
the job's playbook waits for the roll-out). What is left is what the pipeline adds: loading the blocks, the
dispatch, the hand-off from the build to the AWX launch, the end of the follow, the verification, the report.
Prefect's start-up before Running is reported apart, as the start delay.

    .venv/bin/python -m benchmarks.many_stacks --stacks 1 20 50 [--speed 5] [--setup embedded] [--json out.json]

The scaled-out set-up needs Debian's ``postgresql`` and ``redis-server`` and the ``scale`` extra
(``pip install -e '.[scale]'``: prefect-redis); the benchmark says what is missing and stops before starting anything.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SETUPS = ("embedded", "scaled")
FINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}

# ---------------------------------------------------------------- the figures (pure)


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) with linear interpolation between the closest ranks (numpy's default)."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def overhead(running: float, end: float, build_completed: float, awx_span: float) -> float:
    """What the pipeline adds to the emulated critical path, in seconds (times in epoch seconds): from the later of
    the flow's start (Running) and its build's end to the flow's end, minus the AWX job's span (which includes the
    roll-out). The build runs from the push, so the part of it that overlaps the flow's start is nobody's cost."""
    return end - max(running, build_completed) - awx_span


def summarise(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One round's figures from its runs (each with ``state``, ``verified``, and, when measured, ``overhead_s``,
    ``start_delay_s``)."""
    overheads = [r["overhead_s"] for r in runs if r.get("overhead_s") is not None]
    delays = [r["start_delay_s"] for r in runs if r.get("start_delay_s") is not None]
    return {
        "runs": len(runs),
        "completed": sum(r["state"] == "COMPLETED" for r in runs),
        "verified": sum(bool(r.get("verified")) for r in runs),
        "errors": sum(r["state"] != "COMPLETED" for r in runs),
        "overhead_p50_s": percentile(overheads, 50) if overheads else None,
        "overhead_p95_s": percentile(overheads, 95) if overheads else None,
        "start_delay_p50_s": percentile(delays, 50) if delays else None,
        "start_delay_p95_s": percentile(delays, 95) if delays else None,
    }


def knee(rounds: dict[int, dict[str, Any]]) -> int | None:
    """The smallest K whose p95 overhead passes twice the one-stack p95, or that had an error; None if none does.

    ``rounds`` maps K to its summary; the smallest K measured stands for one stack when K=1 was not run."""
    if not rounds:
        return None
    base = rounds[min(rounds)]["overhead_p95_s"]
    for k in sorted(rounds):
        summary = rounds[k]
        p95 = summary["overhead_p95_s"]
        if summary["errors"] or p95 is None or (base is not None and p95 > 2 * base):
            return k
    return None


# ---------------------------------------------------------------- processes and memory


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(check: Callable[[], Any], what: str, timeout: float, interval: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")


def _process_table() -> tuple[dict[int, list[int]], dict[int, int], dict[int, str]]:
    """Children by parent, RSS in bytes and command line by pid, read from /proc."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    commands: dict[int, str] = {}
    page = os.sysconf("SC_PAGE_SIZE")
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            statm = Path(f"/proc/{pid}/statm").read_text().split()
            command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # gone meanwhile
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(pid)
        rss[pid] = int(statm[1]) * page
        commands[pid] = command
    return children, rss, commands


def _tree(pid: int, children: dict[int, list[int]]) -> list[int]:
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found


class MemorySampler:
    """Peak RSS, summed per group of process trees, sampled every second in a thread.

    ``groups`` maps a name to a function returning ``(root pids, pids to leave out with their trees)`` at each
    sample, since the groups are known by who started what (a serving runner inside ``serve``'s tree)."""

    def __init__(self, groups: dict[str, Callable[[dict[int, str], dict[int, list[int]]], list[int]]]) -> None:
        self.groups = groups
        self.peaks: dict[str, int] = dict.fromkeys(groups, 0)
        self.peak_processes: dict[str, int] = dict.fromkeys(groups, 0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def sample(self) -> None:
        children, rss, commands = _process_table()
        for name, pids_of in self.groups.items():
            pids = pids_of(commands, children)
            self.peaks[name] = max(self.peaks[name], sum(rss.get(pid, 0) for pid in pids))
            self.peak_processes[name] = max(self.peak_processes[name], len(pids))

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(1.0)

    def figures(self) -> dict[str, Any]:
        return {
            **{f"peak_rss_{name}_mb": round(value / 2**20) for name, value in self.peaks.items()},
            **{f"peak_processes_{name}": value for name, value in self.peak_processes.items()},
        }


def trees(roots: Callable[[], list[int]], leave_out: Callable[[str], bool] = lambda command: False) -> Any:
    """A group for ``MemorySampler``: the trees under ``roots()``, without the subtrees whose command matches."""

    def pids_of(commands: dict[int, str], children: dict[int, list[int]]) -> list[int]:
        kept: list[int] = []
        todo = list(roots())
        while todo:
            pid = todo.pop()
            if pid not in commands or leave_out(commands[pid]):
                continue
            kept.append(pid)
            todo.extend(children.get(pid, []))
        return kept

    return pids_of


def start(command: Sequence[str], log: Path, env: dict[str, str], **kwargs: Any) -> subprocess.Popen[bytes]:
    with log.open("ab") as output:
        return subprocess.Popen(
            list(command),
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            **kwargs,
        )


def stop(process: subprocess.Popen[bytes] | None, grace: float = 20.0) -> None:
    """SIGTERM to the process, then SIGKILL to its whole group (its flow runs, a server's children)."""
    if process is None:
        return
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()


def clean_environment() -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("PREFECT_")}
    env["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    env["PREFECT_LOGGING_EXTRA_LOGGERS"] = "clients.github,clients.awx"
    return env


# ---------------------------------------------------------------- the two set-ups


@dataclass
class SetUp:
    """A running set-up: its API, the memory groups, and how to stop it."""

    name: str
    api_url: str
    memory_groups: dict[str, Any]
    stack: ExitStack = field(default_factory=ExitStack)
    logs: list[Path] = field(default_factory=list)


@contextmanager
def embedded(directory: Path, limit: int) -> Iterator[SetUp]:
    """``fragalysis-cd serve`` against its own SQLite, the runner's limit raised to ``limit``."""
    port = free_port()
    log = directory / "serve.log"
    command = [
        str(BIN / "fragalysis-cd"),
        "serve",
        "--home",
        str(directory / "prefect-home"),
        "--port",
        str(port),
        "--receiver-port",
        "0",
        "--poll",
        "1",
        "--limit",
        str(limit),
    ]
    serve = start(command, log, clean_environment(), cwd=ROOT)
    api_url = f"http://127.0.0.1:{port}/api"
    try:
        wait_for(lambda: _deployment(api_url) or _exited(serve, log), "serve's deployments", 600, 1.0)

        def runner(command: str) -> bool:
            return "deployments.serving" in command

        # the server's side: serve itself and the Prefect server it started; the workers' side: the runner and its runs
        groups = {"server": trees(lambda: [serve.pid], leave_out=runner), "workers": _subtrees(serve.pid, runner)}
        yield SetUp("embedded", api_url, groups, logs=[log, directory / "prefect-home" / "serving.log"])
    finally:
        stop(serve, grace=60)


def _subtrees(root: int, matches: Callable[[str], bool]) -> Any:
    """A group: the subtrees under ``root`` whose top process's command matches."""

    def pids_of(commands: dict[int, str], children: dict[int, list[int]]) -> list[int]:
        tops = [pid for pid in _tree(root, children) if pid in commands and matches(commands[pid])]
        pids: list[int] = []
        for top in tops:
            pids.extend(p for p in _tree(top, children) if p in commands)
        return pids

    return pids_of


def missing_for_scaled() -> list[str]:
    """What the scaled-out set-up needs and this machine lacks, each with how to get it."""
    missing = []
    if _postgres_bin() is None:
        missing.append("PostgreSQL's initdb/pg_ctl (Debian: apt-get install postgresql)")
    if shutil.which("redis-server") is None:
        missing.append("redis-server (Debian: apt-get install redis-server)")
    for module, package in (("prefect_redis", "prefect-redis"), ("asyncpg", "asyncpg")):
        if find_spec(module) is None:
            missing.append(f"the Python package {package} (pip install -e '.[scale]')")
    return missing


def _postgres_bin() -> Path | None:
    """The newest of Debian's PostgreSQL server directories (``/usr/lib/postgresql/<version>/bin``), else the one
    ``initdb`` on the PATH is in."""
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3]))
    if versions:
        return versions[-1].parent
    found = shutil.which("initdb")
    return Path(found).resolve().parent if found else None


def _as_postgres_user(command: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: run it as Debian's ``postgres`` user then."""
    if os.geteuid() != 0:
        return command
    return ["runuser", "-u", "postgres", "--", *command]


@contextmanager
def postgres() -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A throwaway cluster in a temporary directory (its own, which the ``postgres`` user owns when this runs as root)
    on a free port, trust auth on loopback only; yields its URL for Prefect. Removed on the way out."""
    bin_dir = _postgres_bin()
    assert bin_dir is not None
    directory = Path(tempfile.mkdtemp(prefix="many-stacks-postgres-"))
    data, sockets = directory / "pgdata", directory / "pgsock"
    sockets.mkdir()
    if os.geteuid() == 0:
        shutil.chown(directory, "postgres")
        shutil.chown(sockets, "postgres")
    log = directory / "postgres.log"
    subprocess.run(
        _as_postgres_user([str(bin_dir / "initdb"), "-D", str(data), "-U", "prefect", "--auth=trust", "-E", "UTF8"]),
        check=True,
        capture_output=True,
    )
    port = free_port()
    server = subprocess.Popen(
        _as_postgres_user(
            [
                str(bin_dir / "postgres"),
                "-D",
                str(data),
                "-p",
                str(port),
                "-k",
                str(sockets),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "max_connections=300",
                "-c",
                "fsync=off",  # a throwaway cluster: durability is not what is measured
            ]
        ),
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        ready = [str(bin_dir / "pg_isready"), "-h", "127.0.0.1", "-p", str(port)]
        wait_for(lambda: subprocess.run(ready, capture_output=True).returncode == 0, "postgres", 60)
        create = [str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "prefect", "prefect"]
        subprocess.run(create, check=True, capture_output=True)
        yield f"postgresql+asyncpg://prefect@127.0.0.1:{port}/prefect", server
    finally:
        stop(server)
        shutil.rmtree(directory, ignore_errors=True)


@contextmanager
def redis(directory: Path) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    port = free_port()
    command = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    server = start(command, directory / "redis.log", dict(os.environ), cwd=directory)
    try:
        wait_for(lambda: _answers(port), "redis", 30)
        yield port, server
    finally:
        stop(server)


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def scaled_environment(database_url: str, redis_port: int, api_url: str, home: Path) -> dict[str, str]:
    """The settings of Prefect's self-hosting guide ("How to scale self-hosted Prefect"), for every process."""
    return {
        **clean_environment(),
        "PREFECT_HOME": str(home),
        "PREFECT_API_URL": api_url,
        "PREFECT_API_DATABASE_CONNECTION_URL": database_url,
        "PREFECT_API_DATABASE_MIGRATE_ON_START": "false",
        "PREFECT_MESSAGING_BROKER": "prefect_redis.messaging",
        "PREFECT_MESSAGING_CACHE": "prefect_redis.messaging",
        "PREFECT_SERVER_EVENTS_CAUSAL_ORDERING": "prefect_redis.ordering",
        "PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE": "prefect_redis.lease_storage",
        "PREFECT_REDIS_MESSAGING_HOST": "127.0.0.1",
        "PREFECT_REDIS_MESSAGING_PORT": str(redis_port),
        "PREFECT_REDIS_MESSAGING_DB": "0",
        "PREFECT_SERVER_DOCKET_URL": f"redis://127.0.0.1:{redis_port}/1",
        "PREFECT_WORKER_QUERY_SECONDS": "1",  # as serve's --poll 1
    }


@contextmanager
def scaled(directory: Path, limit: int, workers: int = 2) -> Iterator[SetUp]:
    """PostgreSQL, Redis, the API server without services, the services, the work pool and ``workers`` workers."""
    prefect = str(BIN / "prefect")
    with ExitStack() as stack:
        database_url, pg = stack.enter_context(postgres())
        redis_port, redis_server = stack.enter_context(redis(directory))
        port = free_port()
        api_url = f"http://127.0.0.1:{port}/api"
        env = scaled_environment(database_url, redis_port, api_url, directory / "prefect-home")
        migrate = subprocess.run([prefect, "server", "database", "upgrade", "-y"], env=env, capture_output=True)
        if migrate.returncode:
            raise RuntimeError(f"prefect server database upgrade failed: {migrate.stdout[-2000:]!r}")
        server_log = directory / "api-server.log"
        api = start([prefect, "server", "start", "--no-services", "--port", str(port)], server_log, env)
        stack.callback(stop, api)
        wait_for(lambda: _healthy(api_url) or _exited(api, server_log), "the API server", 120)
        services_log = directory / "services.log"
        services = start([prefect, "server", "services", "start"], services_log, env)
        stack.callback(stop, services)
        subprocess.run(
            [prefect, "work-pool", "create", "fragalysis", "--type", "process"],
            env=env,
            check=True,
            capture_output=True,
        )
        deployed = subprocess.run(
            [prefect, "--no-prompt", "deploy", "--all"], env=env, cwd=ROOT, capture_output=True, timeout=600
        )
        if deployed.returncode:
            raise RuntimeError(f"prefect deploy --all failed: {deployed.stdout[-3000:]!r}")
        worker_processes = []
        per_worker = math.ceil(limit / workers) + 1
        for index in range(workers):
            log = directory / f"worker-{index}.log"
            command = [prefect, "worker", "start", "--pool", "fragalysis", "--type", "process"]
            worker = start([*command, "--limit", str(per_worker), "--name", f"worker-{index}"], log, env, cwd=ROOT)
            stack.callback(stop, worker, 60)
            worker_processes.append(worker)
        wait_for(lambda: _workers_online(api_url) >= workers, f"{workers} workers online", 180, 1.0)
        groups = {
            "server": trees(lambda: [pg.pid, redis_server.pid, api.pid, services.pid]),
            "workers": trees(lambda: [w.pid for w in worker_processes]),
        }
        logs = [server_log, services_log, *(directory / f"worker-{i}.log" for i in range(workers))]
        yield SetUp("scaled", api_url, groups, logs=logs)


def _healthy(api_url: str) -> bool:
    try:
        return httpx.get(f"{api_url}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _exited(process: subprocess.Popen[bytes], log: Path) -> bool:
    if process.poll() is not None:
        raise RuntimeError(f"{log.name}: the process exited with {process.returncode}: {log.read_text()[-3000:]}")
    return False


def _deployment(api_url: str, name: str = "deploy-to-staging/staging") -> str | None:
    try:
        response = httpx.get(f"{api_url}/deployments/name/{name}", timeout=5)
    except httpx.HTTPError:
        return None
    return str(response.json()["id"]) if response.status_code == 200 else None


def _workers_online(api_url: str) -> int:
    response = httpx.post(f"{api_url}/work_pools/fragalysis/workers/filter", json={}, timeout=10)
    return sum(worker.get("status") == "ONLINE" for worker in response.json()) if response.status_code == 200 else 0


# ---------------------------------------------------------------- the sandbox and the stacks


def user(index: int) -> str:
    return f"dev{index:02d}"


def developers_scenario(count: int) -> Any:
    """The ``developers`` scenario for ``count`` stacks, each built from its own repository into its own image."""
    from sandbox.scenario import RegistryImage, load_scenario

    scenario = load_scenario("developers", developer_stacks={"count": count})
    scenario.github.trigger_downstream = False
    scenario.github.trigger_awx = False
    scenario.github.rate_limit = 1_000_000  # one token for every stack; GitHub's limit is not what is measured
    (shared,) = scenario.github.repositories
    for index in range(count):
        name = user(index)
        image = f"{name}/fragalysis-stack"
        repository = shared.model_copy(deep=True)
        repository.name = image
        for workflow in repository.workflows:
            assert workflow.image is not None
            workflow.image.name = image
        scenario.github.repositories.append(repository)
        scenario.registry.images.append(RegistryImage(name=image, tags=["latest"]))
        namespace = f"stack-{name}-default"
        template = scenario.template(f"User ({name}) Developer Fragalysis Stack (Version Change)")
        assert template is not None
        template.image = image
        for ns in scenario.kubernetes.namespaces:
            if ns.name == namespace:
                for statefulset in ns.statefulsets:
                    statefulset.image = f"{image}:latest"
    return scenario


def save_stack_blocks(endpoints: dict[str, Any], count: int, api_url: str) -> None:
    """The ``devNN`` StackTarget blocks (sharing the sandbox's credentials blocks) on the server at ``api_url``."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from blocks import Source, SourceRepository
    from deployments.sandbox_target import sandbox_target

    with temporary_settings({PREFECT_API_URL: api_url}):
        base = sandbox_target(endpoints)
        base.github.save("sandbox-github", overwrite=True)
        base.awx.save("sandbox-awx", overwrite=True)
        base.cluster.save("sandbox-cluster", overwrite=True)
        base.registry.save("sandbox-registry", overwrite=True)
        for index in range(count):
            name = user(index)
            repository = f"{name}/fragalysis-stack"
            target = base.model_copy(
                update={
                    "environment": f"stack-{name}-default",
                    "namespace": f"stack-{name}-default",
                    "job_template": f"User ({name}) Developer Fragalysis Stack (Version Change)",
                    "first_deploy_template": f"User ({name}) Developer Fragalysis Stack",
                    "stack_image": repository,
                    "stack_repository": repository,
                    "sources": {
                        **base.sources,
                        Source.STACK: SourceRepository(
                            repository=repository, workflow="build-main.yaml", branch="master"
                        ),
                    },
                }
            )
            target.save(name, overwrite=True)


def parse(timestamp: str) -> datetime:
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00"))


def sandbox_facts(sandbox: Any, shas: dict[str, str], since: datetime) -> dict[str, dict[str, Any]]:
    """Per stack, from the sandbox: its push build's end and digest, its AWX job's span, and whether its pods all run
    that digest and are Ready (an independent check of the flow's verification)."""

    def read() -> dict[str, dict[str, Any]]:
        facts: dict[str, dict[str, Any]] = {}
        runs = list(sandbox.github.state.runs.values())
        jobs = sandbox.awx.jobs()
        for name, sha in shas.items():
            builds = [r for r in runs if r.repository == f"{name}/fragalysis-stack" and r.head_sha == sha]
            template = f"User ({name}) Developer Fragalysis Stack (Version Change)"
            launched = [j for j in jobs if j["name"] == template and parse(j["created"]) >= since]
            build = builds[-1] if builds else None
            job = launched[-1] if launched else None
            pods = sandbox.kubernetes.pods(f"stack-{name}-default", {"name": "stack"})
            digest = build.image_digest if build is not None else None
            done = build if build is not None and build.status == "completed" else None
            facts[name] = {
                "builds": len(builds),
                "awx_jobs": len(launched),
                "build_completed": done.updated_at.timestamp() if done is not None else None,
                "build_span_s": (done.updated_at - done.created_at).total_seconds() if done is not None else None,
                "awx_span_s": (parse(job["finished"]) - parse(job["created"])).total_seconds()
                if job is not None and job.get("finished")
                else None,
                "verified_in_sandbox": bool(pods)
                and digest is not None
                and all(_runs_digest(pod, digest) for pod in pods),
            }
        return facts

    result: dict[str, dict[str, Any]] = sandbox.call(read)
    return result


def _runs_digest(pod: dict[str, Any], digest: str) -> bool:
    ready = any(c["type"] == "Ready" and c["status"] == "True" for c in pod.get("status", {}).get("conditions", []))
    statuses = pod.get("status", {}).get("containerStatuses", [])
    return ready and bool(statuses) and all(s.get("imageID", "").endswith(digest) for s in statuses)


# ---------------------------------------------------------------- one round


def run_round(setup: SetUp, sandbox: Any, count: int, timeout: float) -> dict[str, Any]:
    """K deploys at once on ``setup``: their figures and the round's summary."""
    api = httpx.Client(base_url=setup.api_url, timeout=60)
    deployment = _deployment(setup.api_url)
    since = datetime.now().astimezone()
    load_before = os.getloadavg()
    ids: dict[str, str] = {}
    shas: dict[str, str] = {}
    with MemorySampler(setup.memory_groups) as memory:
        started = time.monotonic()
        for index in range(count):
            # a developer pushes to their stack repository: its push build starts, and (as the webhook's trigger
            # would) a deploy of that commit to their stack
            shas[user(index)] = sandbox.push(f"{user(index)}/fragalysis-stack", "master", message="benchmark")
            body = {"parameters": {"source": "stack", "sha": shas[user(index)], "target": user(index)}}
            response = api.post(f"/deployments/{deployment}/create_flow_run", json=body).raise_for_status()
            ids[user(index)] = response.json()["id"]

        def ended() -> list[dict[str, Any]] | None:
            body = {"flow_runs": {"id": {"any_": list(ids.values())}}, "limit": 200}
            runs = api.post("/flow_runs/filter", json=body).raise_for_status().json()
            return runs if len(runs) == count and all(r["state_type"] in FINAL for r in runs) else None

        try:
            final = wait_for(ended, f"{count} deploys to end", timeout, 2.0)
        except TimeoutError:
            final = api.post("/flow_runs/filter", json={"flow_runs": {"id": {"any_": list(ids.values())}}}).json()
        makespan = time.monotonic() - started
        memory.sample()
    load_after = os.getloadavg()
    facts = sandbox_facts(sandbox, shas, since)
    by_id = {run["id"]: run for run in final}
    runs = []
    for name, run_id in ids.items():
        run = by_id.get(run_id, {})
        fact = facts[name]
        wall = start_delay = cost = None
        if run.get("start_time") and run.get("end_time"):
            wall = (parse(run["end_time"]) - parse(run["start_time"])).total_seconds()
            start_delay = (parse(run["start_time"]) - parse(run["created"])).total_seconds()
        if wall is not None and fact["build_completed"] is not None and fact["awx_span_s"] is not None:
            running, end = parse(run["start_time"]).timestamp(), parse(run["end_time"]).timestamp()
            cost = overhead(running, end, fact["build_completed"], fact["awx_span_s"])
        runs.append(
            {
                "stack": name,
                "flow_run": run_id,
                "state": run.get("state_type", "UNKNOWN"),
                "message": (run.get("state") or {}).get("message"),
                "wall_s": wall,
                "start_delay_s": start_delay,
                **fact,
                "verified": run.get("state_type") == "COMPLETED" and fact["verified_in_sandbox"],
                "overhead_s": cost,
            }
        )
    api.close()
    return {
        "stacks": count,
        **summarise(runs),
        "makespan_s": makespan,
        **memory.figures(),
        "load_before": [round(x, 1) for x in load_before],
        "load_after": [round(x, 1) for x in load_after],
        "detail": runs,
    }


def _pause_poller(api_url: str) -> None:
    """The poller's 60-s schedule would add runs (and processes) that are not deploys: paused for the benchmark, and
    the runs the scheduler made ahead deleted."""
    poller = _deployment(api_url, "poll-github/poller")
    if poller is None:
        return
    httpx.patch(f"{api_url}/deployments/{poller}", json={"paused": True}, timeout=30).raise_for_status()
    body = {"deployments": {"id": {"any_": [poller]}}, "flow_runs": {"state": {"type": {"any_": ["SCHEDULED"]}}}}
    for run in httpx.post(f"{api_url}/flow_runs/filter", json=body, timeout=30).raise_for_status().json():
        httpx.delete(f"{api_url}/flow_runs/{run['id']}", timeout=30)


def show(setup: str, row: dict[str, Any]) -> None:
    def seconds(value: float | None) -> str:
        return "-" if value is None else f"{value:.1f}s"

    print(
        f"{setup:>8} K={row['stacks']:<3} completed {row['completed']}/{row['runs']} verified {row['verified']}  "
        f"overhead p50 {seconds(row['overhead_p50_s'])} p95 {seconds(row['overhead_p95_s'])}  "
        f"start delay p50 {seconds(row['start_delay_p50_s'])} p95 {seconds(row['start_delay_p95_s'])}  "
        f"makespan {row['makespan_s']:.0f}s  peak RSS server {row['peak_rss_server_mb']} MB, "
        f"workers {row['peak_rss_workers_mb']} MB ({row['peak_processes_workers']} processes)  "
        f"load {row['load_before'][0]} -> {row['load_after'][0]}",
        flush=True,
    )
    for run in row["detail"]:
        if run["state"] != "COMPLETED":
            print(f"           {run['stack']}: {run['state']}: {(run['message'] or '')[:300]}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stacks", type=int, nargs="+", default=[1, 20, 50], help="K, stacks deploying at once")
    parser.add_argument("--speed", type=float, default=5.0, help="the sandbox's speed (a deploy ~95 s at 5)")
    parser.add_argument("--setup", choices=SETUPS, action="append", help="default: both, embedded first")
    parser.add_argument("--workers", type=int, default=2, help="process workers of the scaled-out set-up")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds a round may take")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--keep", type=Path, help="keep the set-ups' logs in this directory")
    args = parser.parse_args(argv)
    setups: list[str] = args.setup or list(SETUPS)
    if "scaled" in setups and (missing := missing_for_scaled()):
        print("the scaled-out set-up needs what is missing here:\n  " + "\n  ".join(missing), file=sys.stderr)
        return 2
    os.environ.update({"PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_LOGGING_LEVEL": "WARNING"})
    from sandbox.runtime import FREE_PORTS, Sandbox

    largest = max(args.stacks)
    results: dict[str, Any] = {"speed": args.speed, "stacks": args.stacks, "cpus": os.cpu_count(), "setups": {}}
    with tempfile.TemporaryDirectory(prefix="many-stacks-") as temporary:
        directory = args.keep or Path(temporary)
        with Sandbox(developers_scenario(largest), speed=args.speed, ports=FREE_PORTS) as sandbox:
            sandbox.write_state(directory / "sandbox")
            endpoints = sandbox.endpoints((directory / "sandbox").resolve())
            for name in setups:
                place = directory / name
                place.mkdir(parents=True, exist_ok=True)
                print(f"{name}: starting ...", flush=True)
                begun = time.monotonic()
                factory = embedded(place, largest + 2) if name == "embedded" else scaled(place, largest, args.workers)
                rounds: dict[str, Any] = {}
                with factory as setup:
                    print(f"{name}: up in {time.monotonic() - begun:.0f} s ({setup.api_url})", flush=True)
                    _pause_poller(setup.api_url)
                    save_stack_blocks(endpoints, largest, setup.api_url)
                    for count in args.stacks:
                        row = run_round(setup, sandbox, count, args.timeout)
                        show(name, row)
                        rounds[str(count)] = row
                results["setups"][name] = rounds
    report(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str) + "\n")
    return 0


def report(results: dict[str, Any]) -> None:
    """The knee: where the embedded p95 overhead passes twice its one-stack value, and the scaled-out one there."""
    setups = results["setups"]
    if "embedded" not in setups:
        return
    rounds = {int(k): v for k, v in setups["embedded"].items()}
    at = knee(rounds)
    results["knee"] = at
    if at is None:
        print(f"embedded: p95 overhead stayed within twice its {min(rounds)}-stack value up to K={max(rounds)}")
        return
    row = rounds[at]
    base = rounds[min(rounds)]["overhead_p95_s"]
    print(
        f"embedded: at K={at} the p95 overhead is {row['overhead_p95_s']} s against {base} s for K={min(rounds)}, "
        f"errors {row['errors']}"
    )
    other = setups.get("scaled", {}).get(str(at))
    if other:
        print(
            f"scaled-out at K={at}: p95 overhead {other['overhead_p95_s']} s, errors {other['errors']}, "
            f"completed {other['completed']}/{other['runs']}"
        )


if __name__ == "__main__":
    sys.exit(main())
