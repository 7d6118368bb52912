"""AWX's objects as the emulator keeps them, and their JSON as AWX's serializers render them.

Every URL in a body is a path relative to the server (``/api/v2/jobs/7/``), as AWX writes them; awxkit and other
clients follow ``related`` links. The field sets follow ``awx/api/serializers.py`` (AWX 24.6.1): a template is a
``JobTemplateSerializer``, a job a ``JobSerializer`` (``JobListSerializer`` in lists, ``JobDetailSerializer`` for
``GET jobs/<id>/``), an event a ``JobEventSerializer``; ``tests/sandbox/test_awx_serializers.py`` pins them.

``summary_fields`` follow ``SUMMARIZABLE_FK_FIELDS``: a related object's summary leaves out the fields whose value is
null (``finished`` of a job still running), and appears only when the foreign key is set (``execution_environment``
of a job that has not started).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal

import yaml

from sandbox.clock import isoformat
from sandbox.scenario import JobTemplate

AWX_VERSION = "24.6.1"
USER_ID = 1
"""The one user: the scenario's admin, who created the templates and launches the jobs."""


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


@dataclass(frozen=True)
class ExecutionEnvironment:
    """An execution environment: the container image a job's playbook runs in."""

    id: int
    name: str
    image: str
    managed: bool = False

    def summary(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "description": "", "image": self.image}


DEFAULT_EE = ExecutionEnvironment(1, f"AWX EE ({AWX_VERSION})", f"quay.io/ansible/awx-ee:{AWX_VERSION}")
"""The install's default EE (``DEFAULT_EXECUTION_ENVIRONMENT``): a job of a template without one runs in it."""
CONTROL_PLANE_EE = ExecutionEnvironment(
    2, "Control Plane Execution Environment", f"quay.io/ansible/awx-ee:{AWX_VERSION}", managed=True
)
EXECUTION_ENVIRONMENTS = (DEFAULT_EE, CONTROL_PLANE_EE)
INSTANCE_GROUP = {"id": 1, "name": "default", "is_container_group": False}
"""The instance group of the one hybrid node (``ping/``'s ``awx-sandbox``) that runs every job."""
NODE = "awx-sandbox"


@dataclass
class Organization:
    """An organisation and what its templates use: one inventory (``localhost``), one project (the playbooks) and
    one Kubernetes credential, each with the organisation's id."""

    id: int
    name: str

    def summary(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "description": ""}

    def inventory_summary(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": "localhost",
            "description": "",
            "has_active_failures": False,
            "total_hosts": 1,
            "hosts_with_active_failures": 0,
            "total_groups": 0,
            "has_inventory_sources": False,
            "total_inventory_sources": 0,
            "inventory_sources_with_failures": 0,
            "organization_id": self.id,
            "kind": "",
        }

    def project_summary(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": "fragalysis-stack-kubernetes",
            "description": "",
            "status": "successful",
            "scm_type": "git",
            "allow_override": False,
        }

    @property
    def scm_revision(self) -> str:
        """The project's last synced commit (a stable made-up SHA-1 per organisation)."""
        return hashlib.sha1(f"fragalysis-stack-kubernetes/{self.name}".encode()).hexdigest()

    def credentials_summary(self) -> list[dict[str, Any]]:
        # JobTemplateSerializer/JobSerializer.get_summary_fields: id, name, description, kind, cloud
        return [
            {
                "id": self.id,
                "name": "fragalysis-kubernetes",
                "description": "",
                "kind": "kubernetes_bearer_token",
                "cloud": False,
            }
        ]


@dataclass
class Template:
    """A job template: the scenario's declaration plus what AWX tracks about it."""

    id: int
    spec: JobTemplate
    organization: Organization
    created: datetime
    created_by: str = "admin"

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


# awx/main/models/events.py: LEVEL_FOR_EVENT (every other event is a host event, level 3)
EVENT_LEVEL = {
    "playbook_on_start": 0,
    "verbose": 0,
    "playbook_on_play_start": 1,
    "playbook_on_stats": 1,
    "playbook_on_task_start": 2,
}

# awx/main/models/events.py: EVENT_TYPES' display names
EVENT_DISPLAY = {
    "playbook_on_start": "Playbook Started",
    "playbook_on_play_start": "Play Started",
    "playbook_on_task_start": "Task Started",
    "runner_on_start": "Host Started",
    "runner_on_ok": "Host OK",
    "runner_on_failed": "Host Failed",
    "runner_retry": "Host Retry",
    "playbook_on_stats": "Playbook Complete",
    "verbose": "Verbose",
}

INVENTORY_HOST_ID = 1
"""``localhost``, the one host of each organisation's inventory, as the events name it."""


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
    assigned: bool = False
    """The task manager has given it a node and an instance group (it went ``waiting``)."""
    launched_by: str = "admin"
    fault: str | None = None
    """The scenario fault this launch got (failed, error, pending), read at launch time."""
    lines: list[str] = field(default_factory=list)
    events: list[JobEvent] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return self.status in (JobStatus.FAILED, JobStatus.ERROR, JobStatus.CANCELED)

    @property
    def elapsed(self) -> float:
        """Seconds from start to finish; for a job still running, up to now (as ``UnifiedJobSerializer`` does)."""
        if self.started is None:
            return 0.0
        return round(((self.finished or datetime.now(UTC)) - self.started).total_seconds(), 3)

    @property
    def execution_environment(self) -> ExecutionEnvironment | None:
        # AWX resolves a job's EE when its task starts running (BaseTask.run), not at launch
        return DEFAULT_EE if self.started is not None else None


# ---------------------------------------------------------------- JSON


class Urls:
    """Builds AWX's relative URLs under the configured base path (``/api/v2/`` or ``/api/controller/v2/``)."""

    def __init__(self, base: str) -> None:
        self.base = base if base.endswith("/") else base + "/"

    def __call__(self, *parts: object) -> str:
        return self.base + "".join(f"{part}/" for part in parts)


def _user(username: str) -> dict[str, Any]:
    # SUMMARIZABLE_FK_FIELDS['user']
    return {"id": USER_ID, "username": username, "first_name": "", "last_name": ""}


def _summary(values: dict[str, Any]) -> dict[str, Any]:
    """A related object's summary: BaseSerializer.get_summary_fields leaves out the fields whose value is null."""
    return {key: value for key, value in values.items() if value is not None}


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


def execution_environment_json(ee: ExecutionEnvironment, urls: Urls, created: datetime) -> dict[str, Any]:
    """``ExecutionEnvironmentSerializer``: what ``related.execution_environment`` of a job points at."""
    return {
        "id": ee.id,
        "type": "execution_environment",
        "url": urls("execution_environments", ee.id),
        "related": {
            "activity_stream": urls("execution_environments", ee.id, "activity_stream"),
            "unified_job_templates": urls("execution_environments", ee.id, "unified_job_templates"),
            "copy": urls("execution_environments", ee.id, "copy"),
        },
        "summary_fields": {"user_capabilities": {"edit": not ee.managed, "delete": not ee.managed, "copy": True}},
        "created": isoformat(created),
        "modified": isoformat(created),
        "name": ee.name,
        "description": "",
        "organization": None,
        "image": ee.image,
        "managed": ee.managed,
        "credential": None,
        "pull": "",
    }


def _job_summary(job: Job) -> dict[str, Any]:
    # JobTemplateMixin._recent_jobs
    return {
        "id": job.id,
        "status": job.status.value,
        "finished": isoformat(job.finished),
        "canceled_on": isoformat(job.canceled_on),
        "type": "job",
    }


def template_json(tpl: Template, urls: Urls, jobs: list[Job], *, detail: bool = True) -> dict[str, Any]:
    """``JobTemplateSerializer``; ``detail`` for ``GET job_templates/<id>/`` (``named_url`` and
    ``resolved_environment`` appear only there)."""
    org = tpl.organization
    mine = [job for job in jobs if job.template is tpl]
    # UnifiedJob._update_parent_instance: current_job is the newest job still active, last_job the newest finished
    current = next((job for job in reversed(mine) if not job.status.finished), None)
    last = next((job for job in reversed(mine) if job.status.finished), None)
    related: dict[str, str] = {}
    if detail:
        related["named_url"] = urls("job_templates", f"{tpl.name}++{org.name}")
    related.update(
        {
            "created_by": urls("users", USER_ID),
            "modified_by": urls("users", USER_ID),
            "labels": urls("job_templates", tpl.id, "labels"),
            "inventory": urls("inventories", org.id),
            "project": urls("projects", org.id),
            "organization": urls("organizations", org.id),
            "credentials": urls("job_templates", tpl.id, "credentials"),
        }
    )
    if current is not None:
        related["current_job"] = urls("jobs", current.id)
    if last is not None:
        related["last_job"] = urls("jobs", last.id)
    related.update(
        {
            name: urls("job_templates", tpl.id, name)
            for name in (
                "jobs",
                "schedules",
                "activity_stream",
                "launch",
                "webhook_key",
                "notification_templates_started",
                "notification_templates_success",
                "notification_templates_error",
                "access_list",
                "survey_spec",
                "object_roles",
                "instance_groups",
                "slice_workflow_jobs",
                "copy",
            )
        }
    )
    related["webhook_receiver"] = ""  # no webhook service
    summary: dict[str, Any] = {
        "organization": org.summary(),
        "inventory": org.inventory_summary(),
        "project": org.project_summary(),
    }
    if last is not None:
        summary["last_job"] = _summary(
            {
                "id": last.id,
                "name": tpl.name,
                "description": "",
                "finished": isoformat(last.finished),
                "status": last.status.value,
                "failed": last.failed,
                "canceled_on": isoformat(last.canceled_on),
            }
        )
    if current is not None:
        summary["current_job"] = {
            "id": current.id,
            "name": tpl.name,
            "description": "",
            "status": current.status.value,
            "failed": current.failed,
        }
    summary.update(
        {
            "created_by": _user(tpl.created_by),
            "modified_by": _user(tpl.created_by),
            "user_capabilities": {"edit": True, "delete": True, "start": True, "schedule": True, "copy": True},
            "labels": {"count": 0, "results": []},
        }
    )
    if tpl.survey_enabled:
        summary["survey"] = {"title": "", "description": ""}
    summary["recent_jobs"] = [_job_summary(job) for job in reversed(mine[-10:])]
    summary["credentials"] = org.credentials_summary()
    if detail:
        summary["resolved_environment"] = DEFAULT_EE.summary()
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
        "inventory": org.id,
        "project": org.id,
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
        "organization": org.id,
        "last_job_run": isoformat(last.finished) if last else None,
        "last_job_failed": last.failed if last else False,
        "next_job_run": None,
        "status": _template_status(current, last),
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


def _template_status(current: Job | None, last: Job | None) -> str:
    # UnifiedJobTemplate._get_current_status: the active job's status, else how the last one ended
    if current is not None:
        return current.status.value
    if last is None:
        return "never updated"
    return "failed" if last.failed else "successful"


def launch_json(tpl: Template) -> dict[str, Any]:
    """GET job_templates/<id>/launch/: what a launch needs (AWX's JobLaunchSerializer)."""
    # the survey's required questions (the scenario's survey_required have no default)
    needed = list(tpl.spec.survey_required)
    org = tpl.organization
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
        # JobLaunchSerializer.get_defaults: one entry per prompt (JobTemplate.get_ask_mapping); labels only when the
        # template has some, execution_environment {} when it names none
        "defaults": {
            "extra_vars": tpl.extra_vars_text,
            "diff_mode": False,
            "limit": "",
            "job_tags": "",
            "skip_tags": "",
            "job_type": "run",
            "verbosity": 0,
            "inventory": {"name": "localhost", "id": org.id},
            "credentials": [
                # 17: the id a fresh install gives the managed "OpenShift or Kubernetes API Bearer Token" type
                {"id": cred["id"], "name": cred["name"], "credential_type": 17, "passwords_needed": []}
                for cred in org.credentials_summary()
            ],
            "scm_branch": "",
            "execution_environment": {},
            "forks": 0,
            "job_slice_count": 1,
            "timeout": int(tpl.spec.timeout_seconds),
            "instance_groups": [],
        },
    }


JobView = Literal["list", "job", "detail"]

# Fields that AWX's list serializers leave out of list views (UnifiedJobListSerializer).
LIST_EXCLUDED = ("result_traceback", "event_processing_finished", "job_args", "job_cwd", "job_env")


def job_json(job: Job, urls: Urls, *, view: JobView = "detail") -> dict[str, Any]:
    """A job as ``JobListSerializer`` (``list``), ``JobSerializer`` (``job``: the launch answer) or
    ``JobDetailSerializer`` (``detail``: ``GET jobs/<id>/``) renders it."""
    tpl = job.template
    org = tpl.organization
    ee = job.execution_environment
    related: dict[str, str] = {
        "created_by": urls("users", USER_ID),
        "labels": urls("jobs", job.id, "labels"),
        "inventory": urls("inventories", org.id),
        "project": urls("projects", org.id),
        "organization": urls("organizations", org.id),
        "credentials": urls("jobs", job.id, "credentials"),
        "unified_job_template": urls("job_templates", tpl.id),
        "stdout": urls("jobs", job.id, "stdout"),
    }
    if ee is not None:
        related["execution_environment"] = urls("execution_environments", ee.id)
    related.update({name: urls("jobs", job.id, name) for name in ("job_events", "job_host_summaries")})
    related.update({name: urls("jobs", job.id, name) for name in ("activity_stream", "notifications")})
    related["create_schedule"] = urls("jobs", job.id, "create_schedule")
    related["job_template"] = urls("job_templates", tpl.id)
    related["cancel"] = urls("jobs", job.id, "cancel")
    related["relaunch"] = urls("jobs", job.id, "relaunch")
    summary: dict[str, Any] = {"organization": org.summary(), "inventory": org.inventory_summary()}
    if ee is not None:
        summary["execution_environment"] = ee.summary()
    summary["project"] = org.project_summary()
    summary["job_template"] = {"id": tpl.id, "name": tpl.name, "description": ""}
    summary["unified_job_template"] = {"id": tpl.id, "name": tpl.name, "description": "", "unified_job_type": "job"}
    if job.assigned:
        summary["instance_group"] = dict(INSTANCE_GROUP)
    summary.update(
        {
            "created_by": _user(job.launched_by),
            "user_capabilities": {"delete": job.status.finished, "start": True},
            "labels": {"count": 0, "results": []},
            "credentials": org.credentials_summary(),
        }
    )
    ran = job.started is not None
    data: dict[str, Any] = {
        "id": job.id,
        "type": "job",
        "url": urls("jobs", job.id),
        "related": related,
        "summary_fields": summary,
        "created": isoformat(job.created),
        "modified": isoformat(job.modified or job.created),
        "name": tpl.name,
        "description": "",
        "job_type": "run",
        "inventory": org.id,
        "project": org.id,
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
        "organization": org.id,
        "unified_job_template": tpl.id,
        "launch_type": "manual",
        "status": job.status.value,
        "execution_environment": ee.id if ee else None,
        "failed": job.failed,
        "started": isoformat(job.started),
        "finished": isoformat(job.finished),
        "canceled_on": isoformat(job.canceled_on),
        "elapsed": job.elapsed,
        # the task writes the command line, directory and environment when it starts the playbook
        "job_args": json.dumps(_job_args(tpl)) if ran else "",
        "job_cwd": "/runner/project" if ran else "",
        "job_env": _job_env(job) if ran else {},
        "job_explanation": job.job_explanation,
        "execution_node": NODE if job.assigned else "",
        "controller_node": NODE if job.assigned else "",
        "result_traceback": job.result_traceback,
        "event_processing_finished": job.event_processing_finished,
        "launched_by": {"id": USER_ID, "name": job.launched_by, "type": "user", "url": urls("users", USER_ID)},
        "work_unit_id": f"Sb{job.id:06d}" if ran else None,
        "job_template": tpl.id,
        "passwords_needed_to_start": [],
        "allow_simultaneous": tpl.spec.allow_simultaneous,
        "artifacts": {},
        "scm_revision": org.scm_revision if ran else "",
        "instance_group": INSTANCE_GROUP["id"] if job.assigned else None,
        "diff_mode": False,
        "job_slice_number": 0,
        "job_slice_count": 1,
        "webhook_service": "",
        "webhook_credential": None,
        "webhook_guid": "",
    }
    if view == "list":
        for name in LIST_EXCLUDED:
            del data[name]
    if view == "detail":
        tasks = sum(1 for event in job.events if event.event == "playbook_on_task_start")
        plays = sum(1 for event in job.events if event.event == "playbook_on_play_start")
        data.update(
            {
                "host_status_counts": _host_status_counts(job),
                "playbook_counts": {"play_count": plays, "task_count": tasks},
                "custom_virtualenv": None,
            }
        )
    return data


def launched_json(job: Job, ignored: dict[str, Any], urls: Urls) -> dict[str, Any]:
    """The answer to ``POST job_templates/<id>/launch/`` (``JobTemplateLaunch.post``): ``job`` and
    ``ignored_fields``, then the new job as ``JobSerializer`` renders it."""
    return {"job": job.id, "ignored_fields": ignored, **job_json(job, urls, view="job")}


def _job_args(tpl: Template) -> list[str]:
    return ["ansible-playbook", "-u", "root", "-i", "/runner/inventory", "-e", "@/runner/env/extravars", tpl.playbook]


def _job_env(job: Job) -> dict[str, str]:
    # a few of the variables AWX sets for ansible-runner (secrets are never shown)
    org = job.template.organization
    return {
        "JOB_ID": str(job.id),
        "INVENTORY_ID": str(org.id),
        "PROJECT_REVISION": org.scm_revision,
        "ANSIBLE_FORCE_COLOR": "True",
        "ANSIBLE_RETRY_FILES_ENABLED": "False",
        "AWX_HOST": "https://awx-sandbox",
        "RUNNER_OMIT_EVENTS": "False",
        "RUNNER_ONLY_FAILED_EVENTS": "False",
    }


def _host_status_counts(job: Job) -> dict[str, int]:
    if not job.status.finished or not job.events:
        return {}
    if job.status == JobStatus.SUCCESSFUL:
        changed = any(event.changed for event in job.events)
        return {"changed": 1} if changed else {"ok": 1}
    return {"failures": 1} if any(event.failed for event in job.events) else {}


def event_display(event: JobEvent) -> str:
    """``JobEvent.get_event_display2``: play and task starts name their play or task."""
    display = EVENT_DISPLAY.get(event.event, event.event)
    if event.event == "playbook_on_play_start" and event.play:
        return f"{display} ({event.play})"
    if event.event == "playbook_on_task_start" and event.task:
        return f"{display} ({event.task})"
    return display


def event_json(event: JobEvent, job: Job, urls: Urls) -> dict[str, Any]:
    """``JobEventSerializer``."""
    host = INVENTORY_HOST_ID if event.host_name else None
    related = {"job": urls("jobs", job.id), "children": urls("job_events", event.id, "children")}
    summary: dict[str, Any] = {}
    if host is not None:
        related["host"] = urls("hosts", host)
        summary["host"] = {"id": host, "name": event.host_name, "description": ""}
    # SUMMARIZABLE_FK_FIELDS['job'] (null canceled_on left out) plus the template's id and name
    summary["job"] = _summary(
        {
            "id": job.id,
            "name": job.template.name,
            "description": "",
            "status": job.status.value,
            "failed": job.failed,
            "elapsed": job.elapsed if job.finished else 0.0,
            "type": "job",
            "canceled_on": isoformat(job.canceled_on),
            "job_template_id": job.template.id,
            "job_template_name": job.template.name,
        }
    )
    # an event's role is a text field that also matches SUMMARIZABLE_FK_FIELDS['role']: AWX renders it as {}
    summary["role"] = {}
    return {
        "id": event.id,
        "type": "job_event",
        "url": urls("job_events", event.id),
        "related": related,
        "summary_fields": summary,
        "created": isoformat(event.created),
        "modified": isoformat(event.created),
        "job": job.id,
        "event": event.event,
        "counter": event.counter,
        "event_display": event_display(event),
        "event_data": event.event_data,
        "event_level": EVENT_LEVEL.get(event.event, 3),
        "failed": event.failed,
        "changed": event.changed,
        "uuid": event.uuid,
        "parent_uuid": event.parent_uuid,
        "host": host,
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
