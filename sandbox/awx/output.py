"""Ansible-like output, written as the job runs: job events (what awxkit ``--monitor`` reads) and the stdout
lines they cover (``stdout/?format=txt|ansi|json``).

AWX builds a job's stdout from its events: each event's ``stdout`` covers lines ``start_line`` to ``end_line``
(exclusive), events ordered by ``counter``. Banner lines are padded with ``*`` as Ansible's default callback does.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from sandbox.awx.models import Job, JobEvent

BANNER_WIDTH = 80

_GREEN, _YELLOW, _RED, _CYAN, _RESET = "\x1b[0;32m", "\x1b[0;33m", "\x1b[0;31m", "\x1b[0;36m", "\x1b[0m"


def banner(text: str) -> str:
    """``TASK [name] *****...`` padded to Ansible's banner width."""
    return f"{text} " + "*" * max(3, BANNER_WIDTH - len(text) - 1)


class PlaybookOutput:
    """Appends events and lines to a job, counting ok/changed/failed for the recap.

    Each event's ``event_data`` carries what Ansible's callback gives AWX: the playbook, play and task (names and
    uuids), the task's module, the host and the module's result; an event's ``parent_uuid`` is its task's, a task's
    is its play's and a play's is the playbook's.
    """

    def __init__(self, job: Job, next_event_id: Callable[[], int], now: Callable[[], Any]) -> None:
        self.job = job
        self._next_id = next_event_id
        self._now = now
        self.play = ""
        self.task = ""
        self._playbook_uuid = ""
        self._play_uuid = ""
        self._task_uuid = ""
        self._task_action = ""
        self._task_started: Any = None
        self.ok = 0
        self.changed = 0
        self.failed = 0

    def _emit(self, event: str, lines: list[str], **fields: Any) -> JobEvent:
        job = self.job
        start = len(job.lines)
        job.lines.extend(lines)
        record = JobEvent(
            id=self._next_id(),
            job_id=job.id,
            counter=len(job.events) + 1,
            event=event,
            stdout="\r\n".join(lines),
            start_line=start,
            end_line=len(job.lines),
            created=self._now(),
            play=self.play,
            task=self.task,
            **fields,
        )
        record.event_data = {**self._context(), **record.event_data, "uuid": record.uuid}
        job.events.append(record)
        return record

    def _context(self) -> dict[str, Any]:
        data: dict[str, Any] = {"playbook": self.job.template.playbook, "playbook_uuid": self._playbook_uuid}
        if self.play:
            data.update({"play": self.play, "play_uuid": self._play_uuid, "play_pattern": "localhost"})
        if self.task:
            data.update(
                {
                    "task": self.task,
                    "task_uuid": self._task_uuid,
                    "task_action": self._task_action,
                    "resolved_action": self._task_action,
                    "task_args": "",
                    "task_path": f"/runner/project/{self.job.template.playbook}",
                }
            )
        return data

    def _host_data(self, res: dict[str, Any]) -> dict[str, Any]:
        end = self._now()
        started = self._task_started or end
        return {
            "host": "localhost",
            "remote_addr": "localhost",
            "res": res,
            "start": started.isoformat(),
            "end": end.isoformat(),
            "duration": round((end - started).total_seconds(), 6),
            "event_loop": None,
        }

    def playbook_start(self) -> None:
        self._playbook_uuid = self._emit("playbook_on_start", []).uuid

    def play_start(self, name: str) -> None:
        self.play = name
        self._play_uuid = ""
        record = self._emit(
            "playbook_on_play_start",
            ["", banner(f"PLAY [{name}]")],
            parent_uuid=self._playbook_uuid,
            event_data={"name": name, "pattern": "localhost"},
        )
        self._play_uuid = record.event_data["play_uuid"] = record.uuid

    def task_start(self, name: str, action: str) -> None:
        """A task starts (``playbook_on_task_start``) and runs on the host (``runner_on_start``, no output)."""
        self.task = name
        self._task_action = action
        self._task_uuid = ""
        self._task_started = self._now()
        record = self._emit(
            "playbook_on_task_start",
            ["", banner(f"TASK [{name}]")],
            parent_uuid=self._play_uuid,
            event_data={"name": name, "is_conditional": False},
        )
        self._task_uuid = record.event_data["task_uuid"] = record.uuid
        self._emit(
            "runner_on_start", [], host_name="localhost", parent_uuid=self._task_uuid, event_data={"host": "localhost"}
        )

    def host_ok(self, *, changed: bool = False) -> None:
        self.ok += 1
        self.changed += int(changed)
        word = "changed" if changed else "ok"
        self._emit(
            "runner_on_ok",
            [f"{word}: [localhost]"],
            host_name="localhost",
            changed=changed,
            parent_uuid=self._task_uuid,
            event_data=self._host_data({"changed": changed}),
        )

    def host_retry(self, retries_left: int) -> None:
        self._emit(
            "runner_retry",
            [f"FAILED - RETRYING: [localhost]: {self.task} ({retries_left} retries left)."],
            host_name="localhost",
            parent_uuid=self._task_uuid,
            event_data=self._host_data({"changed": False, "retries": retries_left + 1, "attempts": 1}),
        )

    def host_failed(self, msg: str, **result: Any) -> None:
        self.failed += 1
        res = {"changed": False, **result, "msg": msg}
        self._emit(
            "runner_on_failed",
            [f"fatal: [localhost]: FAILED! => {json.dumps(res)}"],
            host_name="localhost",
            failed=True,
            parent_uuid=self._task_uuid,
            event_data={**self._host_data(res), "ignore_errors": None},
        )

    def recap(self) -> None:
        self.play = ""
        self.task = ""
        counts = (
            f"ok={self.ok:<4} changed={self.changed:<4} unreachable=0    failed={self.failed:<4} "
            f"skipped=0    rescued=0    ignored=0   "
        )
        self._emit(
            "playbook_on_stats",
            ["", banner("PLAY RECAP"), f"{'localhost':<26} : {counts}", ""],
            failed=bool(self.failed),
            changed=bool(self.changed),
            parent_uuid=self._playbook_uuid,
            event_data={
                "ok": {"localhost": self.ok},
                "changed": {"localhost": self.changed} if self.changed else {},
                "failures": {"localhost": self.failed} if self.failed else {},
                "dark": {},
                "ignored": {},
                "processed": {"localhost": 1},
                "rescued": {},
                "skipped": {},
                "artifact_data": {},
            },
        )


def colour(line: str) -> str:
    """The line as Ansible's coloured terminal output (``format=ansi``)."""
    if line.startswith("ok:"):
        return f"{_GREEN}{line}{_RESET}"
    if line.startswith("changed:") or line.startswith("FAILED - RETRYING"):
        return f"{_YELLOW}{line}{_RESET}"
    if line.startswith("fatal:"):
        return f"{_RED}{line}{_RESET}"
    if line.startswith("localhost "):
        return f"{_CYAN}{line}{_RESET}"
    return line


def stdout_range(lines: list[str], start_line: int | None, end_line: int | None) -> tuple[str, int, int, int]:
    """AWX's ``result_stdout_raw_limited``: the lines ``[start, end)``, each ending in a newline, and the range."""
    absolute_end = len(lines)
    start = max(0, min(start_line or 0, absolute_end))
    end = absolute_end if end_line is None else max(start, min(end_line, absolute_end))
    content = "".join(line + "\n" for line in lines[start:end])
    return content, start, end, absolute_end
