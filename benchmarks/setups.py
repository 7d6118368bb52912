"""The two Prefect set-ups the scaling benchmark compares, each started in a temporary directory and stopped with
everything it started (``benchmarks/many_stacks.py``; README "Scaling"):

- ``embedded``: ``fragalysis-cd serve`` (Prefect's SQLite, the server's services in its process, one runner serving
  every deployment of prefect.yaml), its runner's ``--limit`` raised;
- ``scaled``: a throwaway PostgreSQL cluster (Debian's binaries, as the ``postgres`` user when run as root),
  ``redis-server`` on a free port, Prefect's Redis messaging, causal ordering, concurrency leases and Docket
  (``prefect-redis``), the migrations once, ``prefect server start --no-services``, ``prefect server services
  start``, the process work pool ``fragalysis`` with ``prefect --no-prompt deploy --all``, and process workers.

Also a sampler of the peak RSS summed over groups of process trees (from /proc: Linux only).
"""

from __future__ import annotations

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
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

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
        # the runner registers prefect.yaml's deployments in order: the poller, the last, means all of them are in
        last = "poll-github/poller"
        wait_for(lambda: deployment_id(api_url, last) or _exited(serve, log), "serve's deployments", 600, 1.0)

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
        # SQLAlchemy's default pool (5 + 10 overflow per process) ran dry at 50 stacks: the API server's requests
        # waited 30 s for a connection and answered 500; 20 + 40 per process stays inside max_connections=300
        "PREFECT_SERVER_DATABASE_SQLALCHEMY_POOL_SIZE": "20",
        "PREFECT_SERVER_DATABASE_SQLALCHEMY_MAX_OVERFLOW": "40",
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
        # a process worker starts each flow run in a session of its own, which stopping the worker's group misses:
        # on the way out (before the workers stop) the runs still going are killed
        stack.callback(_kill_descendants, worker_processes)
        wait_for(lambda: _workers_online(api_url) >= workers, f"{workers} workers online", 180, 1.0)
        groups = {
            "server": trees(lambda: [pg.pid, redis_server.pid, api.pid, services.pid]),
            "workers": trees(lambda: [w.pid for w in worker_processes]),
        }
        logs = [server_log, services_log, *(directory / f"worker-{i}.log" for i in range(workers))]
        yield SetUp("scaled", api_url, groups, logs=logs)


def _kill_descendants(processes: list[subprocess.Popen[bytes]]) -> None:
    children, _, _ = _process_table()
    for process in processes:
        for pid in _tree(process.pid, children)[1:]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _healthy(api_url: str) -> bool:
    try:
        return httpx.get(f"{api_url}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _exited(process: subprocess.Popen[bytes], log: Path) -> bool:
    if process.poll() is not None:
        raise RuntimeError(f"{log.name}: the process exited with {process.returncode}: {log.read_text()[-3000:]}")
    return False


def request(
    method: str, url: str, *, attempts: int = 10, busy: list[int] | None = None, **kwargs: Any
) -> httpx.Response:
    """An API request tried again on 503 and 429 (SQLite answers 503 when its database is locked), on a growing
    pause, as Prefect's own client does; each such answer is counted in ``busy[0]`` when given."""
    for attempt in range(1, attempts + 1):
        response = httpx.request(method, url, timeout=60, **kwargs)
        if response.status_code not in (429, 503) or attempt == attempts:
            return response
        if busy is not None:
            busy[0] += 1
        time.sleep(min(2.0 * attempt, 10.0))
    raise AssertionError("unreachable")


def deployment_id(api_url: str, name: str = "deploy-to-staging/staging") -> str | None:
    """The deployment's id; None while it does not exist (or the server does not answer yet)."""
    try:
        response = request("GET", f"{api_url}/deployments/name/{name}")
    except httpx.HTTPError:
        return None
    return str(response.raise_for_status().json()["id"]) if response.status_code != 404 else None


def _workers_online(api_url: str) -> int:
    response = httpx.post(f"{api_url}/work_pools/fragalysis/workers/filter", json={}, timeout=10)
    return sum(worker.get("status") == "ONLINE" for worker in response.json()) if response.status_code == 200 else 0
