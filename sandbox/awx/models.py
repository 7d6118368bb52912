"""AWX's objects as the emulator keeps them, and their JSON as AWX's serializers render them.

Every URL in a body is a path relative to the server (``/api/v2/jobs/7/``), as AWX writes them; awxkit and other
clients follow ``related`` links. The field sets follow AWX's ``JobTemplateSerializer``, ``JobSerializer``
(``JobDetailSerializer`` for the detail view) and ``JobEventSerializer``.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

import yaml

from sandbox.clock import isoformat
from sandbox.scenario import JobTemplate

AWX_VERSION = "24.6.1"


class JobStatus(StrEnum):
    """AWX's unified job statuses."""

    NEW = "new"
    PENDING = "pending"
    WAITING = "waiting"
    RUNNING = "running"
    SUCCESSFUL = "successful"
    FAILED = "failed"
    ERROR = "error"
    CANCELED = "canceled"

    @property
    def finished(self) -> bool:
        return self in (JobStatus.SUCCESSFUL, JobStatus.FAILED, JobStatus.ERROR, JobStatus.CANCELED)

    @property
    def can_cancel(self) -> bool:
        # AWX: CAN_CANCEL = ('new', 'pending', 'waiting', 'running')
        return not self.finished


@dataclass
class Organization:
    id: int
    name: str

    def summary(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "description": ""}


@dataclass
class Template:
    """A job template: the scenario's declaration plus what AWX tracks about it."""

    id: int
    spec: JobTemplate
    organization: Organization
    created: datetime

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def playbook(self) -> str:
        return f"{self.spec.playbook}.yaml"

    @property
    def extra_vars_text(self) -> str:
        # AWX keeps a template's extra_vars as the text the user typed; the UI writes YAML
        if not self.spec.extra_vars:
            return ""
        return "---\n" + yaml.safe_dump(self.spec.extra_vars, sort_keys=False)

    @property
    def survey_enabled(self) -> bool:
        return bool(self.spec.survey_required)


@dataclass
class JobEvent:
    """One Ansible callback event; ``stdout`` covers lines ``start_line`` (inclusive) to ``end_line``."""

    id: int
    job_id: int
    counter: int
    event: str
    stdout: str
    start_line: int
    end_line: int
    created: datetime
    uuid: str = field(default_factory=lambda: str(uuid.uuid4()))
    parent_uuid: str = ""
    play: str = ""
    task: str = ""
    host_name: str = ""
    failed: bool = False
    changed: bool = False
    event_data: dict[str, Any] = field(default_factory=dict)


EVENT_LEVEL = {
    "playbook_on_start": 0,
    "playbook_on_play_start": 1,
    "playbook_on_task_start": 2,
    "playbook_on_stats": 1,
}

EVENT_DISPLAY = {
    "playbook_on_start": "Playbook Started",
    "playbook_on_play_start": "Play Started",
    "playbook_on_task_start": "Task Started",
    "runner_on_ok": "Host OK",
    "runner_on_failed": "Host Failed",
    "runner_retry": "Host Retry",
    "playbook_on_stats": "Playbook Complete",
    "verbose": "Verbose",
}


@dataclass
class Job:
    id: int
    template: Template
    extra_vars: dict[str, Any]
    created: datetime
    status: JobStatus = JobStatus.PENDING
    modified: datetime | None = None
    started: datetime | None = None
    finished: datetime | None = None
    canceled_on: datetime | None = None
    job_explanation: str = ""
    result_traceback: str = ""
    event_processing_finished: bool = False
    cancel_flag: bool = False
    fault: str | None = None
    """The scenario fault this launch got (failed, error, pending), read at launch time."""
    lines: list[str] = field(default_factory=list)
    events: list[JobEvent] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return self.status in (JobStatus.FAILED, JobStatus.ERROR, JobStatus.CANCELED)

    @property
    def elapsed(self) -> float:
        if self.started is None or self.finished is None:
            return 0.0
        return round((self.finished - self.started).total_seconds(), 3)


# ---------------------------------------------------------------- JSON


class Urls:
    """Builds AWX's relative URLs under the configured base path (``/api/v2/`` or ``/api/controller/v2/``)."""

    def __init__(self, base: str) -> None:
        self.base = base if base.endswith("/") else base + "/"

    def __call__(self, *parts: object) -> str:
        return self.base + "".join(f"{part}/" for part in parts)


def organization_json(org: Organization, urls: Urls) -> dict[str, Any]:
    return {
        "id": org.id,
        "type": "organization",
        "url": urls("organizations", org.id),
        "related": {
            "job_templates": urls("organizations", org.id, "job_templates"),
            "users": urls("organizations", org.id, "users"),
            "teams": urls("organizations", org.id, "teams"),
        },
        "summary_fields": {"user_capabilities": {"edit": True, "delete": True}},
        "name": org.name,
        "description": "",
        "max_hosts": 0,
        "custom_virtualenv": None,
        "default_environment": None,
    }


def template_json(tpl: Template, urls: Urls, jobs: list[Job]) -> dict[str, Any]:
    mine = [job for job in jobs if job.template is tpl]
    last = mine[-1] if mine else None
    finished = [job for job in mine if job.status.finished]
    last_finished = finished[-1] if finished else None
    related = {
        "named_url": urls("job_templates", f"{tpl.name}++{tpl.organization.name}"),
        "labels": urls("job_templates", tpl.id, "labels"),
        "inventory": urls("inventories", 1),
        "project": urls("projects", 1),
        "organization": urls("organizations", tpl.organization.id),
        "credentials": urls("job_templates", tpl.id, "credentials"),
        "jobs": urls("job_templates", tpl.id, "jobs"),
        "launch": urls("job_templates", tpl.id, "launch"),
        "survey_spec": urls("job_templates", tpl.id, "survey_spec"),
    }
    if last is not None:
        related["last_job"] = urls("jobs", last.id)
    summary: dict[str, Any] = {
        "organization": tpl.organization.summary(),
        "inventory": {"id": 1, "name": "localhost", "description": ""},
        "project": {"id": 1, "name": "fragalysis-stack-kubernetes", "description": "", "status": "successful"},
        "user_capabilities": {"edit": True, "delete": True, "start": True, "schedule": True, "copy": True},
        "labels": {"count": 0, "results": []},
        "recent_jobs": [
            {"id": job.id, "status": job.status.value, "finished": isoformat(job.finished), "type": "job"}
            for job in reversed(mine[-10:])
        ],
        "credentials": [],
    }
    if last is not None:
        summary["last_job"] = {
            "id": last.id,
            "name": tpl.name,
            "description": "",
            "finished": isoformat(last.finished),
            "status": last.status.value,
            "failed": last.failed,
        }
    return {
        "id": tpl.id,
        "type": "job_template",
        "url": urls("job_templates", tpl.id),
        "related": related,
        "summary_fields": summary,
        "created": isoformat(tpl.created),
        "modified": isoformat(tpl.created),
        "name": tpl.name,
        "description": "",
        "job_type": "run",
        "inventory": 1,
        "project": 1,
        "playbook": tpl.playbook,
        "scm_branch": "",
        "forks": 0,
        "limit": "",
        "verbosity": 0,
        "extra_vars": tpl.extra_vars_text,
        "job_tags": "",
        "force_handlers": False,
        "skip_tags": "",
        "start_at_task": "",
        "timeout": int(tpl.spec.timeout_seconds),
        "use_fact_cache": False,
        "organization": tpl.organization.id,
        "last_job_run": isoformat(last_finished.finished) if last_finished else None,
        "last_job_failed": last_finished.failed if last_finished else False,
        "next_job_run": None,
        "status": _template_status(last),
        "execution_environment": None,
        "host_config_key": "",
        "ask_scm_branch_on_launch": False,
        "ask_diff_mode_on_launch": False,
        "ask_variables_on_launch": tpl.spec.ask_variables_on_launch,
        "ask_limit_on_launch": False,
        "ask_tags_on_launch": False,
        "ask_skip_tags_on_launch": False,
        "ask_job_type_on_launch": False,
        "ask_verbosity_on_launch": False,
        "ask_inventory_on_launch": False,
        "ask_credential_on_launch": False,
        "ask_execution_environment_on_launch": False,
        "ask_labels_on_launch": False,
        "ask_forks_on_launch": False,
        "ask_job_slice_count_on_launch": False,
        "ask_timeout_on_launch": False,
        "ask_instance_groups_on_launch": False,
        "survey_enabled": tpl.survey_enabled,
        "become_enabled": False,
        "diff_mode": False,
        "allow_simultaneous": tpl.spec.allow_simultaneous,
        "custom_virtualenv": None,
        "job_slice_count": 1,
        "webhook_service": "",
        "webhook_credential": None,
        "prevent_instance_group_fallback": False,
    }


def _template_status(last: Job | None) -> str:
    # UnifiedJobTemplate.status: "never updated" until a job ran, then the last job's status
    if last is None:
        return "never updated"
    return last.status.value


def launch_json(tpl: Template) -> dict[str, Any]:
    """GET job_templates/<id>/launch/: what a launch needs (AWX's JobLaunchSerializer)."""
    # the survey's required questions (the scenario's survey_required have no default)
    needed = list(tpl.spec.survey_required)
    return {
        "can_start_without_user_input": not needed,
        "passwords_needed_to_start": [],
        "ask_scm_branch_on_launch": False,
        "ask_variables_on_launch": tpl.spec.ask_variables_on_launch,
        "ask_tags_on_launch": False,
        "ask_diff_mode_on_launch": False,
        "ask_skip_tags_on_launch": False,
        "ask_job_type_on_launch": False,
        "ask_limit_on_launch": False,
        "ask_verbosity_on_launch": False,
        "ask_inventory_on_launch": False,
        "ask_credential_on_launch": False,
        "ask_execution_environment_on_launch": False,
        "ask_labels_on_launch": False,
        "ask_forks_on_launch": False,
        "ask_job_slice_count_on_launch": False,
        "ask_timeout_on_launch": False,
        "ask_instance_groups_on_launch": False,
        "survey_enabled": tpl.survey_enabled,
        "variables_needed_to_start": needed,
        "credential_needed_to_start": False,
        "inventory_needed_to_start": False,
        "job_template_data": {"name": tpl.name, "id": tpl.id, "description": ""},
        "defaults": {
            "extra_vars": tpl.extra_vars_text,
            "diff_mode": False,
            "limit": "",
            "job_tags": "",
            "skip_tags": "",
            "job_type": "run",
            "verbosity": 0,
            "inventory": {"name": "localhost", "id": 1},
            "scm_branch": "",
            "credentials": [],
        },
    }


# Fields that AWX's list serializers leave out of list views (UnifiedJobListSerializer).
LIST_EXCLUDED = ("result_traceback", "event_processing_finished", "job_args", "job_cwd", "job_env")


def job_json(job: Job, urls: Urls, *, detail: bool = True) -> dict[str, Any]:
    tpl = job.template
    data: dict[str, Any] = {
        "id": job.id,
        "type": "job",
        "url": urls("jobs", job.id),
        "related": {
            "created_by": urls("users", 1),
            "labels": urls("jobs", job.id, "labels"),
            "inventory": urls("inventories", 1),
            "project": urls("projects", 1),
            "organization": urls("organizations", tpl.organization.id),
            "credentials": urls("jobs", job.id, "credentials"),
            "unified_job_template": urls("job_templates", tpl.id),
            "stdout": urls("jobs", job.id, "stdout"),
            "job_events": urls("jobs", job.id, "job_events"),
            "job_host_summaries": urls("jobs", job.id, "job_host_summaries"),
            "activity_stream": urls("jobs", job.id, "activity_stream"),
            "notifications": urls("jobs", job.id, "notifications"),
            "job_template": urls("job_templates", tpl.id),
            "cancel": urls("jobs", job.id, "cancel"),
            "relaunch": urls("jobs", job.id, "relaunch"),
        },
        "summary_fields": {
            "organization": tpl.organization.summary(),
            "inventory": {"id": 1, "name": "localhost", "description": ""},
            "project": {"id": 1, "name": "fragalysis-stack-kubernetes", "description": "", "status": "successful"},
            "job_template": {"id": tpl.id, "name": tpl.name, "description": ""},
            "unified_job_template": {"id": tpl.id, "name": tpl.name, "description": "", "unified_job_type": "job"},
            "created_by": {"id": 1, "username": "admin", "first_name": "", "last_name": ""},
            "user_capabilities": {"delete": job.status.finished, "start": True},
            "labels": {"count": 0, "results": []},
            "credentials": [],
        },
        "created": isoformat(job.created),
        "modified": isoformat(job.modified or job.created),
        "name": tpl.name,
        "description": "",
        "job_type": "run",
        "inventory": 1,
        "project": 1,
        "playbook": tpl.playbook,
        "scm_branch": "",
        "forks": 0,
        "limit": "",
        "verbosity": 0,
        # a job's extra_vars are the merged variables, stored as JSON text
        "extra_vars": json.dumps(job.extra_vars),
        "job_tags": "",
        "force_handlers": False,
        "skip_tags": "",
        "start_at_task": "",
        "timeout": int(tpl.spec.timeout_seconds),
        "use_fact_cache": False,
        "organization": tpl.organization.id,
        "unified_job_template": tpl.id,
        "launch_type": "manual",
        "status": job.status.value,
        "execution_environment": None,
        "failed": job.failed,
        "started": isoformat(job.started),
        "finished": isoformat(job.finished),
        "canceled_on": isoformat(job.canceled_on),
        "elapsed": job.elapsed,
        "job_explanation": job.job_explanation,
        "execution_node": "awx-sandbox-ee" if job.started else "",
        "controller_node": "awx-sandbox" if job.started else "",
        "launched_by": {"id": 1, "name": "admin", "type": "user", "url": urls("users", 1)},
        "work_unit_id": f"sandbox{job.id:06d}" if job.started else None,
        "job_template": tpl.id,
        "passwords_needed_to_start": [],
        "allow_simultaneous": tpl.spec.allow_simultaneous,
        "artifacts": {},
        "scm_revision": "",
        "instance_group": 1,
        "diff_mode": False,
        "job_slice_number": 0,
        "job_slice_count": 1,
        "webhook_service": "",
        "webhook_credential": None,
        "webhook_guid": "",
    }
    if detail:
        tasks = sum(1 for event in job.events if event.event == "playbook_on_task_start")
        plays = sum(1 for event in job.events if event.event == "playbook_on_play_start")
        data.update(
            {
                "job_args": json.dumps(["ansible-playbook", "-i", "/runner/inventory/hosts", tpl.playbook]),
                "job_cwd": "/runner/project",
                "job_env": {},
                "result_traceback": job.result_traceback,
                "event_processing_finished": job.event_processing_finished,
                "host_status_counts": _host_status_counts(job),
                "playbook_counts": {"play_count": plays, "task_count": tasks},
                "custom_virtualenv": None,
            }
        )
    return data


def _host_status_counts(job: Job) -> dict[str, int]:
    if not job.status.finished or not job.events:
        return {}
    if job.status == JobStatus.SUCCESSFUL:
        changed = any(event.changed for event in job.events)
        return {"changed": 1} if changed else {"ok": 1}
    return {"failures": 1} if any(event.failed for event in job.events) else {}


def event_json(event: JobEvent, job: Job, urls: Urls) -> dict[str, Any]:
    return {
        "id": event.id,
        "type": "job_event",
        "url": urls("job_events", event.id),
        "related": {
            "job": urls("jobs", job.id),
            "children": urls("job_events", event.id, "children"),
        },
        "summary_fields": {
            "job": {"id": job.id, "name": job.template.name, "status": job.status.value, "failed": job.failed}
        },
        "created": isoformat(event.created),
        "modified": isoformat(event.created),
        "job": job.id,
        "event": event.event,
        "counter": event.counter,
        "event_display": EVENT_DISPLAY.get(event.event, event.event),
        "event_data": event.event_data,
        "event_level": EVENT_LEVEL.get(event.event, 3),
        "failed": event.failed,
        "changed": event.changed,
        "uuid": event.uuid,
        "parent_uuid": event.parent_uuid,
        "host": None,
        "host_name": event.host_name,
        "playbook": job.template.playbook,
        "play": event.play,
        "task": event.task,
        "role": "",
        "stdout": event.stdout,
        "start_line": event.start_line,
        "end_line": event.end_line,
        "verbosity": 0,
    }
