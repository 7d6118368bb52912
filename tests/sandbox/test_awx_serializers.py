"""The AWX emulator's answers, field by field, against AWX's own serializers and what awxkit and the AWX UI read.

Reference: ``awx/api/serializers.py`` of ansible/awx as stored in the public index: the devel branch after 24.6.1
(read through the fork ``redhat-chai-bot/ansible_awx`` at 11c964f8e64efa07293746c19229a42da324a374), checked against
an older stored copy (the 21.x era: the same job, event and cancel fields, fewer ``ask_*_on_launch``); the launch
answer from ``awx/api/views/__init__.py`` ``JobTemplateLaunch.post``. The emulator says it is AWX 24.6.1, so
``opa_query_path`` (a template field added on devel after 24.6.1) is not pinned. awxkit is the 24.6.1 release on
PyPI; the UI reads are from ``awx/ui/src/screens/Job`` (``JobDetail.js``, ``JobOutput/*``) and
``components/DetailList/LaunchedByDetail.js``.

Each serializer's field set is pinned exactly (every field, no invented ones) with its JSON type and, for a choice,
AWX's choices; ``related`` and ``summary_fields`` keys are pinned as "always there" plus "there in this state".
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
import pytest
import yaml

from sandbox.runtime import Sandbox
from tests.conftest import wait_for

STAGING_VC = "Staging Fragalysis Stack (Version Change)"
NULL = type(None)


# ---------------------------------------------------------------- kinds of values


@dataclass(frozen=True)
class Choice:
    """A model field with choices: the value is one of AWX's."""

    values: frozenset[Any]
    nullable: bool = False

    def accepts(self, value: Any) -> bool:
        return (value is None and self.nullable) or (not isinstance(value, dict | list) and value in self.values)


@dataclass(frozen=True)
class Timestamp:
    """DRF's DateTimeField: ISO 8601 text in UTC ending in Z (awxkit parses ``%Y-%m-%dT%H:%M:%S.%fZ``)."""

    nullable: bool = False

    def accepts(self, value: Any) -> bool:
        if value is None:
            return self.nullable
        if not isinstance(value, str) or not value.endswith("Z"):
            return False
        try:
            datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%fZ")
        except ValueError:
            return False
        return True


Kind = type | tuple[type, ...] | Choice | Timestamp


def accepts(kind: Kind, value: Any) -> bool:
    if isinstance(kind, Choice | Timestamp):
        return kind.accepts(value)
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool):
        return bool in kinds  # a JSON true is not an integer field
    return isinstance(value, kinds)


def assert_fields(obj: Mapping[str, Any], spec: Mapping[str, Kind], what: str) -> None:
    """Exactly the serializer's fields, each with an acceptable value."""
    assert set(obj) == set(spec), (
        f"{what}: extra {sorted(set(obj) - set(spec))}, missing {sorted(set(spec) - set(obj))}"
    )
    wrong = {name: obj[name] for name, kind in spec.items() if not accepts(kind, obj[name])}
    assert not wrong, f"{what}: values of the wrong type or outside AWX's choices: {wrong}"


def assert_keys(obj: Mapping[str, Any], required: set[str], allowed: set[str], what: str) -> None:
    keys = set(obj)
    assert required <= keys, f"{what}: missing {sorted(required - keys)}"
    assert keys <= required | allowed, f"{what}: not in AWX's {sorted(keys - required - allowed)}"


# ---------------------------------------------------------------- AWX's choices (awx/main/models)

JOB_STATUSES = frozenset({"new", "pending", "waiting", "running", "successful", "failed", "error", "canceled"})
TEMPLATE_STATUSES = JOB_STATUSES | {"never updated"}  # UnifiedJobTemplate.JOB_TEMPLATE_STATUS_CHOICES
LAUNCH_TYPES = frozenset(
    {"manual", "relaunch", "callback", "scheduled", "dependency", "workflow", "webhook", "sync", "scm"}
)
JOB_TYPES = frozenset({"run", "check"})  # NEW_JOB_TYPE_CHOICES
VERBOSITY = frozenset(range(6))  # VERBOSITY_CHOICES: 0 (Normal) .. 5 (WinRM Debug)
WEBHOOK_SERVICES = frozenset({"", "github", "gitlab", "bitbucket_dc"})
EVENT_TYPES = frozenset(  # BasePlaybookEvent.EVENT_TYPES
    {
        "runner_on_failed", "runner_on_start", "runner_on_ok", "runner_on_error", "runner_on_skipped",
        "runner_on_unreachable", "runner_on_no_hosts", "runner_on_async_poll", "runner_on_async_ok",
        "runner_on_async_failed", "runner_item_on_ok", "runner_item_on_failed", "runner_item_on_skipped",
        "runner_retry", "runner_on_file_diff", "playbook_on_start", "playbook_on_notify", "playbook_on_include",
        "playbook_on_no_hosts_matched", "playbook_on_no_hosts_remaining", "playbook_on_task_start",
        "playbook_on_vars_prompt", "playbook_on_setup", "playbook_on_import_for_host",
        "playbook_on_not_import_for_host", "playbook_on_play_start", "playbook_on_stats", "debug", "verbose",
        "deprecated", "warning", "system_warning", "error",
    }
)  # fmt: skip
EVENT_LEVELS = frozenset({0, 1, 2, 3})  # LEVEL_FOR_EVENT


# ---------------------------------------------------------------- the serializers' fields

# BaseSerializer.Meta.fields
BASE: dict[str, Kind] = {
    "id": int,
    "type": str,
    "url": str,
    "related": dict,
    "summary_fields": dict,
    "created": Timestamp(),
    "modified": Timestamp(nullable=True),
    "name": str,
    "description": str,
}
# JobOptionsSerializer.Meta.fields (shared by templates and jobs)
JOB_OPTIONS: dict[str, Kind] = {
    "job_type": Choice(JOB_TYPES),
    "inventory": (int, NULL),
    "project": (int, NULL),
    "playbook": str,
    "scm_branch": str,
    "forks": int,
    "limit": str,
    "verbosity": Choice(VERBOSITY),
    "extra_vars": str,
    "job_tags": str,
    "force_handlers": bool,
    "skip_tags": str,
    "start_at_task": str,
    "timeout": int,
    "use_fact_cache": bool,
    "organization": (int, NULL),
}
# UnifiedJobTemplateSerializer.Meta.fields
UNIFIED_JOB_TEMPLATE: dict[str, Kind] = {
    "last_job_run": Timestamp(nullable=True),
    "last_job_failed": bool,
    "next_job_run": Timestamp(nullable=True),
    "status": Choice(TEMPLATE_STATUSES),
    "execution_environment": (int, NULL),
}
ASK_ON_LAUNCH = (
    "ask_scm_branch_on_launch",
    "ask_diff_mode_on_launch",
    "ask_variables_on_launch",
    "ask_limit_on_launch",
    "ask_tags_on_launch",
    "ask_skip_tags_on_launch",
    "ask_job_type_on_launch",
    "ask_verbosity_on_launch",
    "ask_inventory_on_launch",
    "ask_credential_on_launch",
    "ask_execution_environment_on_launch",
    "ask_labels_on_launch",
    "ask_forks_on_launch",
    "ask_job_slice_count_on_launch",
    "ask_timeout_on_launch",
    "ask_instance_groups_on_launch",
)
# JobTemplateSerializer(JobTemplateMixin, UnifiedJobTemplateSerializer, JobOptionsSerializer)
JOB_TEMPLATE: dict[str, Kind] = {
    **BASE,
    **UNIFIED_JOB_TEMPLATE,
    **JOB_OPTIONS,
    "host_config_key": str,
    **dict.fromkeys(ASK_ON_LAUNCH, bool),
    "survey_enabled": bool,
    "become_enabled": bool,
    "diff_mode": bool,
    "allow_simultaneous": bool,
    "custom_virtualenv": (str, NULL),
    "job_slice_count": int,
    "webhook_service": Choice(WEBHOOK_SERVICES),
    "webhook_credential": (int, NULL),
    "prevent_instance_group_fallback": bool,
}
# UnifiedJobSerializer.Meta.fields
UNIFIED_JOB: dict[str, Kind] = {
    "unified_job_template": (int, NULL),
    "launch_type": Choice(LAUNCH_TYPES),
    "status": Choice(JOB_STATUSES),
    "execution_environment": (int, NULL),
    "failed": bool,
    "started": Timestamp(nullable=True),
    "finished": Timestamp(nullable=True),
    "canceled_on": Timestamp(nullable=True),
    "elapsed": float,
    "job_args": str,
    "job_cwd": str,
    "job_env": dict,
    "job_explanation": str,
    "execution_node": str,
    "controller_node": str,
    "result_traceback": str,
    "event_processing_finished": bool,
    "launched_by": dict,
    "work_unit_id": (str, NULL),
}
# JobSerializer(UnifiedJobSerializer, JobOptionsSerializer): the launch answer's job
JOB: dict[str, Kind] = {
    **BASE,
    **UNIFIED_JOB,
    **JOB_OPTIONS,
    "job_template": (int, NULL),
    "passwords_needed_to_start": list,
    "allow_simultaneous": bool,
    "artifacts": dict,
    "scm_revision": str,
    "instance_group": (int, NULL),
    "diff_mode": bool,
    "job_slice_number": int,
    "job_slice_count": int,
    "webhook_service": Choice(WEBHOOK_SERVICES),
    "webhook_credential": (int, NULL),
    "webhook_guid": str,
}
# JobListSerializer(JobSerializer, UnifiedJobListSerializer): jobs/ and job_templates/<id>/jobs/
JOB_LIST_ITEM = {
    name: kind
    for name, kind in JOB.items()
    if name not in ("job_args", "job_cwd", "job_env", "result_traceback", "event_processing_finished")
}
# JobDetailSerializer(JobSerializer): GET jobs/<id>/
JOB_DETAIL: dict[str, Kind] = {
    **JOB,
    "host_status_counts": (dict, NULL),
    "playbook_counts": dict,
    "custom_virtualenv": (str, NULL),
}
# JobTemplateLaunch.post: {job, ignored_fields} then JobSerializer
LAUNCH_ANSWER: dict[str, Kind] = {"job": int, "ignored_fields": dict, **JOB}
# JobLaunchSerializer: the read fields (extra_vars, inventory, credentials, ... are write-only)
LAUNCH_GET: dict[str, Kind] = {
    "can_start_without_user_input": bool,
    "passwords_needed_to_start": list,
    **dict.fromkeys(ASK_ON_LAUNCH, bool),
    "survey_enabled": bool,
    "variables_needed_to_start": list,
    "credential_needed_to_start": bool,
    "inventory_needed_to_start": bool,
    "job_template_data": dict,
    "defaults": dict,
}
# JobLaunchSerializer.get_defaults: one key per JobTemplate.get_ask_mapping() prompt; credentials and labels only
# when the template has some
LAUNCH_DEFAULTS_REQUIRED = {
    "extra_vars", "inventory", "scm_branch", "limit", "job_tags", "skip_tags", "job_type", "verbosity",
    "diff_mode", "execution_environment", "forks", "job_slice_count", "timeout", "instance_groups",
}  # fmt: skip
LAUNCH_DEFAULTS_OPTIONAL = {"credentials", "labels"}
# JobEventSerializer: BaseSerializer without name and description
JOB_EVENT: dict[str, Kind] = {
    **{name: kind for name, kind in BASE.items() if name not in ("name", "description")},
    "job": int,
    "event": Choice(EVENT_TYPES),
    "counter": int,
    "event_display": str,
    "event_data": dict,
    "event_level": Choice(EVENT_LEVELS),
    "failed": bool,
    "changed": bool,
    "uuid": str,
    "parent_uuid": str,
    "host": (int, NULL),
    "host_name": str,
    "playbook": str,
    "play": str,
    "task": str,
    "role": str,
    "stdout": str,
    "start_line": int,
    "end_line": int,
    "verbosity": Choice(VERBOSITY),
}
# JobCancelSerializer.Meta.fields
JOB_CANCEL: dict[str, Kind] = {"can_cancel": bool}
# awx/api/pagination.py Pagination.get_paginated_response
PAGE: dict[str, Kind] = {"count": int, "next": (str, NULL), "previous": (str, NULL), "results": list}

# ---------------------------------------------------------------- related and summary_fields

# JobTemplateSerializer.get_related (+ JobOptionsSerializer, UnifiedJobTemplateSerializer, BaseSerializer)
TEMPLATE_RELATED = {
    "created_by", "modified_by", "labels", "inventory", "project", "organization", "credentials", "jobs",
    "schedules", "activity_stream", "launch", "webhook_key", "webhook_receiver", "notification_templates_started",
    "notification_templates_success", "notification_templates_error", "access_list", "survey_spec", "object_roles",
    "instance_groups", "slice_workflow_jobs", "copy",
}  # fmt: skip
# named_url only in a detail view; the rest only when set (callback: host_config_key; execution_environment: the
# template names one)
TEMPLATE_RELATED_SOMETIMES = {
    "named_url", "last_job", "current_job", "next_schedule", "execution_environment", "callback",
    "webhook_credential",
}  # fmt: skip
TEMPLATE_SUMMARY = {
    "organization", "inventory", "project", "created_by", "modified_by", "user_capabilities", "labels",
    "recent_jobs", "credentials",
}  # fmt: skip
# resolved_environment: detail view only; object_roles (RBAC role ids) is in AWX's answer but not emulated
TEMPLATE_SUMMARY_SOMETIMES = {
    "last_job", "current_job", "execution_environment", "survey", "resolved_environment", "object_roles",
    "webhook_credential",
}  # fmt: skip
# JobSerializer.get_related (+ UnifiedJobSerializer, JobOptionsSerializer, BaseSerializer)
JOB_RELATED = {
    "created_by", "labels", "inventory", "project", "organization", "credentials", "unified_job_template",
    "stdout", "job_events", "job_host_summaries", "activity_stream", "notifications", "create_schedule",
    "job_template", "cancel", "relaunch",
}  # fmt: skip
JOB_RELATED_SOMETIMES = {"execution_environment", "modified_by", "schedule", "source_workflow_job", "project_update"}
JOB_SUMMARY = {
    "organization", "inventory", "project", "job_template", "unified_job_template", "created_by",
    "user_capabilities", "labels", "credentials",
}  # fmt: skip
JOB_SUMMARY_SOMETIMES = {
    "execution_environment", "instance_group", "modified_by", "schedule", "source_workflow_job", "ancestor_job",
}  # fmt: skip
# SUMMARIZABLE_FK_FIELDS: what a related object's summary holds (null values are left out)
SUMMARIZED = {
    "organization": {"id", "name", "description"},
    "inventory": {
        "id", "name", "description", "has_active_failures", "total_hosts", "hosts_with_active_failures",
        "total_groups", "has_inventory_sources", "total_inventory_sources", "inventory_sources_with_failures",
        "organization_id", "kind",
    },
    "project": {"id", "name", "description", "status", "scm_type", "allow_override"},
    "execution_environment": {"id", "name", "description", "image"},
    "resolved_environment": {"id", "name", "description", "image"},
    "job_template": {"id", "name", "description"},
    "unified_job_template": {"id", "name", "description", "unified_job_type"},
    "instance_group": {"id", "name", "is_container_group"},
    "created_by": {"id", "username", "first_name", "last_name"},
    "modified_by": {"id", "username", "first_name", "last_name"},
    "labels": {"count", "results"},
    "host": {"id", "name", "description"},
}  # fmt: skip
LAST_JOB = ({"id", "name", "description", "finished", "status", "failed"}, {"license_error", "canceled_on"})
CURRENT_JOB = ({"id", "name", "description", "status", "failed"}, {"license_error"})
RECENT_JOB = {"id", "status", "finished", "canceled_on", "type"}  # JobTemplateMixin._recent_jobs
CREDENTIAL = {"id", "name", "description", "kind", "cloud"}  # JobSerializer/JobTemplateSerializer.get_summary_fields
EVENT_JOB = ({"id", "name", "description", "status", "failed", "elapsed", "type"}, {"canceled_on"})

# ---------------------------------------------------------------- what awxkit and the UI read

# awxkit 24.6.1: `awx job_templates launch NAME --monitor` and its page objects
AWXKIT_READS = {
    "page": {"count", "results"},  # cli/options.py pk_or_name, api/pages/page.py PageList
    "job_template": {"id", "name", "related.launch", "related.jobs"},  # cli/custom.py, api/pages/job_templates.py
    # api/pages/page.py page_identity (url), cli/stdout.py monitor, api/pages/job_templates.py JobTemplate.launch
    "launch_answer": {"url", "type", "id", "job", "status", "related.job_events"},
    # cli/stdout.py monitor, api/mixins/has_status.py, api/pages/unified_jobs.py UnifiedJob
    "job": {
        "id", "type", "status", "failed", "created", "event_processing_finished", "job_explanation",
        "result_traceback", "job_args", "execution_environment", "related.stdout", "related.cancel",
        "related.job_events",
    },
    "job_event": {"start_line", "end_line", "stdout"},  # cli/stdout.py monitor
    "cancel": {"can_cancel"},  # api/pages/unified_jobs.py UnifiedJob.cancel
}  # fmt: skip
# AWX UI: screens/Job/JobDetail/JobDetail.js, components/DetailList/LaunchedByDetail.js,
# screens/Job/JobOutput/{JobOutput,shared/OutputToolbar,shared/HostStatusBar,loadJobEvents}.js
UI_READS_JOB = {
    "id", "name", "type", "status", "job_explanation", "started", "finished", "job_type", "launch_type",
    "scm_branch", "scm_revision", "playbook", "limit", "verbosity", "execution_node", "job_slice_number",
    "job_slice_count", "job_tags", "skip_tags", "created", "modified", "extra_vars", "artifacts", "elapsed",
    "event_processing_finished", "result_traceback", "host_status_counts", "playbook_counts", "related.stdout",
    "summary_fields.created_by", "summary_fields.credentials", "summary_fields.inventory",
    "summary_fields.job_template", "summary_fields.unified_job_template", "summary_fields.labels",
    "summary_fields.project", "summary_fields.user_capabilities",
}  # fmt: skip
UI_READS_FINISHED_JOB = {"summary_fields.execution_environment", "summary_fields.instance_group"}
# JobOutput.js, useJobEvents.js, getLineTextHtml.js, isHostEvent.js, HostEventModal.js
UI_READS_EVENT = {
    "id", "counter", "event", "uuid", "parent_uuid", "event_level", "stdout", "start_line", "created",
    "host_name", "play", "task", "failed", "changed", "event_data", "type",
}  # fmt: skip
UI_READS_HOST_EVENT = {"host", "event_data.res", "event_data.task_action", "event_data.host"}


def get_path(obj: Mapping[str, Any], dotted: str) -> Any:
    value: Any = obj
    for part in dotted.split("."):
        assert isinstance(value, Mapping), f"{dotted} is missing"
        assert part in value, f"{dotted} is missing"
        value = value[part]
    return value


def assert_reads(obj: Mapping[str, Any], paths: set[str], what: str) -> None:
    missing = []
    for path in sorted(paths):
        try:
            get_path(obj, path)
        except AssertionError:
            missing.append(path)
    assert not missing, f"{what}: a client reads {missing}"


# ---------------------------------------------------------------- driving the emulator


def api(sb: Sandbox) -> httpx.Client:
    return httpx.Client(
        base_url=sb.urls["awx"], headers={"Authorization": f"Bearer {sb.scenario.awx.token}"}, timeout=10
    )


def get(client: httpx.Client, path: str, **params: Any) -> Any:
    response = client.get(path if path.startswith("/") else f"/api/v2/{path}", params=params)
    assert response.status_code == 200, f"GET {path}: {response.status_code} {response.text}"
    return response.json()


def every_page(client: httpx.Client, path: str, **params: Any) -> Iterator[dict[str, Any]]:
    page = get(client, path, **params)
    while True:
        assert_fields(page, PAGE, f"list {path}")
        yield from page["results"]
        if page["next"] is None:
            return
        page = get(client, page["next"])


def finished_job(client: httpx.Client, job_id: int) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        job = get(client, f"jobs/{job_id}/")
        return (
            job
            if job["status"] in ("successful", "failed", "error", "canceled") and job["event_processing_finished"]
            else None
        )

    return wait_for(done, f"job {job_id} to finish")


def check_summary(summary: Mapping[str, Any], what: str) -> None:
    """Each related object's summary holds SUMMARIZABLE_FK_FIELDS' fields."""
    for name, fields in SUMMARIZED.items():
        if name in summary:
            assert set(summary[name]) == fields, f"{what}.summary_fields.{name}: {sorted(summary[name])}"
    for credential in summary.get("credentials", []):
        assert set(credential) == CREDENTIAL, f"{what}.summary_fields.credentials: {sorted(credential)}"


def check_template(template: dict[str, Any], *, detail: bool) -> None:
    what = f"job_templates/{template['id']}/" if detail else "a job_templates/ item"
    assert_fields(template, JOB_TEMPLATE, what)
    assert template["type"] == "job_template"
    related, summary = template["related"], template["summary_fields"]
    assert_keys(related, TEMPLATE_RELATED | ({"named_url"} if detail else set()), TEMPLATE_RELATED_SOMETIMES, what)
    assert ("named_url" in related) is detail  # BaseSerializer.get_related: detail views only
    assert_keys(
        summary,
        TEMPLATE_SUMMARY | ({"resolved_environment"} if detail else set()),
        TEMPLATE_SUMMARY_SOMETIMES,
        what,
    )
    check_summary(summary, what)
    assert set(summary["user_capabilities"]) == {"edit", "delete", "start", "schedule", "copy"}
    for recent in summary["recent_jobs"]:
        assert set(recent) == RECENT_JOB
        assert recent["status"] in JOB_STATUSES
    for key, (required, optional) in (("last_job", LAST_JOB), ("current_job", CURRENT_JOB)):
        if key in summary:
            assert_keys(summary[key], required, optional, f"{what}.summary_fields.{key}")
            assert related.get(key) == f"/api/v2/jobs/{summary[key]['id']}/"
    if template["status"] == "never updated":
        assert "last_job" not in related
        assert "current_job" not in related


def check_job(job: dict[str, Any], spec: dict[str, Kind], what: str) -> None:
    assert_fields(job, spec, what)
    assert job["type"] == "job"
    assert job["url"] == f"/api/v2/jobs/{job['id']}/"
    related, summary = job["related"], job["summary_fields"]
    assert_keys(related, JOB_RELATED, JOB_RELATED_SOMETIMES, what)
    assert_keys(summary, JOB_SUMMARY, JOB_SUMMARY_SOMETIMES, what)
    check_summary(summary, what)
    assert set(summary["user_capabilities"]) == {"delete", "start"}
    assert set(job["launched_by"]) == {"id", "name", "type", "url"}
    # a job gets its execution environment when it starts running, its instance group when it is assigned
    assert (job["execution_environment"] is None) is ("execution_environment" not in summary)
    assert (job["execution_environment"] is None) is ("execution_environment" not in related)
    assert (job["instance_group"] is None) is ("instance_group" not in summary)
    if job.get("job_args"):
        args = yaml.safe_load(job["job_args"])  # awxkit's UnifiedJob.job_args parses it so
        assert isinstance(args, list)
        assert args[0] == "ansible-playbook"


def check_event(event: dict[str, Any], job: dict[str, Any]) -> None:
    what = f"job_events/{event['id']}/"
    assert_fields(event, JOB_EVENT, what)
    assert event["type"] == "job_event"
    assert event["job"] == job["id"]
    host = event["host"] is not None
    expected = {"job", "children"} | ({"host"} if host else set())
    assert set(event["related"]) == expected, what
    summary = event["summary_fields"]
    assert set(summary) == {"job", "role"} | ({"host"} if host else set()), what
    required, optional = EVENT_JOB
    # JobEventSerializer.get_summary_fields adds the template's id and name to the job's summary
    assert_keys(summary["job"], required | {"job_template_id", "job_template_name"}, optional, what)
    check_summary(summary, what)
    assert summary["role"] == {}  # the event's role text matches SUMMARIZABLE_FK_FIELDS['role']: nothing to show
    assert event["end_line"] >= event["start_line"]


# ---------------------------------------------------------------- the tests


def test_templates_launch_jobs_events_and_cancel_have_awx_serializer_fields(make_sandbox):
    sb = make_sandbox(speed=600)
    with api(sb) as client:
        # job templates before any job: list items and detail
        templates = list(every_page(client, "job_templates/"))
        assert templates
        for template in templates:
            check_template(template, detail=False)
            assert template["status"] == "never updated"
            check_template(get(client, f"job_templates/{template['id']}/"), detail=True)
        template = next(t for t in templates if t["name"] == STAGING_VC)
        tid = template["id"]

        # GET launch/: JobLaunchSerializer
        needs = get(client, f"job_templates/{tid}/launch/")
        assert_fields(needs, LAUNCH_GET, "launch/")
        assert_keys(needs["defaults"], LAUNCH_DEFAULTS_REQUIRED, LAUNCH_DEFAULTS_OPTIONAL, "launch/ defaults")
        assert set(needs["defaults"]["inventory"]) == {"id", "name"}
        assert set(needs["job_template_data"]) == {"id", "name", "description"}
        for credential in needs["defaults"].get("credentials", []):
            assert {"id", "name", "credential_type", "passwords_needed"} <= set(credential)

        # POST launch/: {job, ignored_fields} + JobSerializer, 201
        response = client.post(
            f"/api/v2/job_templates/{tid}/launch/", json={"extra_vars": {"stack_image_tag": "latest"}, "limit": "x"}
        )
        assert response.status_code == 201
        launched = response.json()
        check_job(launched, LAUNCH_ANSWER, "the launch answer")
        assert launched["job"] == launched["id"]
        assert launched["ignored_fields"] == {"limit": "x"}
        assert launched["status"] == "pending"
        assert launched["execution_environment"] is None  # not resolved until the job runs
        job_id = launched["id"]

        # while it is active: job detail, list items, the template's current_job, cancel/
        pending = get(client, f"jobs/{job_id}/")
        check_job(pending, JOB_DETAIL, "jobs/<id>/")
        current = get(client, f"job_templates/{tid}/")
        check_template(current, detail=True)
        if current["status"] in ("pending", "waiting", "running"):
            assert current["summary_fields"]["current_job"]["id"] == job_id
        assert_fields(get(client, f"jobs/{job_id}/cancel/"), JOB_CANCEL, "cancel/")

        job = finished_job(client, job_id)
        check_job(job, JOB_DETAIL, "jobs/<id>/")
        assert job["status"] == "successful"
        assert job["execution_environment"] is not None
        assert job["job_args"]
        assert job["job_cwd"]
        assert job["job_env"]
        assert set(job["playbook_counts"]) == {"play_count", "task_count"}
        assert job["playbook_counts"]["task_count"] > 0
        assert set(job["host_status_counts"]) <= {"ok", "changed", "failures", "dark", "skipped", "processed"}
        assert_fields(get(client, f"jobs/{job_id}/cancel/"), JOB_CANCEL, "cancel/")

        for listed in every_page(client, "jobs/"):
            check_job(listed, JOB_LIST_ITEM, "a jobs/ item")
        for listed in every_page(client, f"job_templates/{tid}/jobs/"):
            check_job(listed, JOB_LIST_ITEM, "a job_templates/<id>/jobs/ item")

        # the template once a job has finished: last_job, recent_jobs
        after = get(client, f"job_templates/{tid}/")
        check_template(after, detail=True)
        assert after["status"] == "successful"
        assert after["summary_fields"]["last_job"]["id"] == job_id
        assert after["summary_fields"]["recent_jobs"][0]["id"] == job_id
        assert after["last_job_run"] == job["finished"]

        # job events: list items and detail
        events = list(every_page(client, f"jobs/{job_id}/job_events/", page_size=200))
        assert {"playbook_on_start", "playbook_on_play_start", "playbook_on_task_start", "runner_on_ok"} <= {
            e["event"] for e in events
        }
        for event in events:
            check_event(event, job)
        check_event(get(client, f"job_events/{events[-1]['id']}/"), job)


def test_parent_uuids_nest_events_as_awx_does(make_sandbox):
    """Task events hang under their task, tasks under their play, the play and the recap under the playbook: the
    UI's output tree (useJobEvents) is built from parent_uuid and event_level."""
    sb = make_sandbox(speed=600)
    with api(sb) as client:
        job_id = client.post("/api/v2/job_templates/1/launch/", json={}).json()["job"]
        finished_job(client, job_id)
        events = list(every_page(client, f"jobs/{job_id}/job_events/", page_size=200))
    by_uuid = {e["uuid"]: e for e in events}
    for event in events:
        level = event["event_level"]
        if level == 0:
            assert event["parent_uuid"] == ""
            continue
        parent = by_uuid[event["parent_uuid"]]
        assert parent["event_level"] == (0 if level == 1 else level - 1), (event["event"], parent["event"])
        assert parent["counter"] < event["counter"]
    play = next(e for e in events if e["event"] == "playbook_on_play_start")
    assert play["event_display"] == f"Play Started ({play['play']})"  # JobEvent.get_event_display2


def test_fields_awxkit_and_the_ui_read_are_there(make_sandbox):
    sb = make_sandbox(speed=600, faults={"awx_jobs": [{"template": STAGING_VC, "outcome": "failed"}]})
    with api(sb) as client:
        page = get(client, "job_templates/", name=STAGING_VC)
        assert_reads(page, AWXKIT_READS["page"], "job_templates/?name=")
        template = page["results"][0]
        assert_reads(template, AWXKIT_READS["job_template"], "a template")
        launched = client.post(template["related"]["launch"], json={}).json()
        assert_reads(launched, AWXKIT_READS["launch_answer"], "the launch answer")
        assert_reads(launched, UI_READS_JOB - {"host_status_counts", "playbook_counts"}, "the launch answer (UI)")
        assert_reads(get(client, launched["related"]["cancel"]), AWXKIT_READS["cancel"], "cancel/")

        job = finished_job(client, launched["job"])
        assert job["status"] == "failed"
        assert_reads(job, AWXKIT_READS["job"], "jobs/<id>/")
        assert_reads(job, UI_READS_JOB | UI_READS_FINISHED_JOB, "jobs/<id>/ (UI)")
        events = get(client, job["related"]["job_events"], order_by="start_line", no_truncate=True, page_size=200)
        for event in events["results"]:
            assert_reads(event, AWXKIT_READS["job_event"], "a job event")
            assert_reads(event, UI_READS_EVENT, "a job event (UI)")
            if event["event"].startswith("runner_on_") and event["event"] != "runner_on_start":
                assert_reads(event, UI_READS_HOST_EVENT, "a host event (UI)")
        assert any(e["event"] == "runner_on_failed" and e["event_data"]["res"]["msg"] for e in events["results"])

        # every related link that awxkit follows answers
        for link in (
            template["related"]["launch"],
            template["related"]["jobs"],
            job["related"]["job_events"],
            job["related"]["stdout"],
            job["related"]["cancel"],
            job["related"]["execution_environment"],
        ):
            assert client.get(link).status_code == 200, link


def test_awxkit_pages_read_the_answers(make_sandbox):
    """awxkit's own page objects (not the CLI) launch, wait, read stdout and job_args, and follow related links."""
    pytest.importorskip("awxkit")
    from awxkit import api as awxkit_api
    from awxkit import config as awxkit_config

    sb = make_sandbox(speed=600)
    saved = dict(awxkit_config)  # awxkit keeps its settings in one module-level namespace
    awxkit_config.base_url, awxkit_config.api_base_path = sb.urls["awx"], "/api/"
    try:
        root = awxkit_api.Api()
        root.connection.login(token=sb.scenario.awx.token)
        v2 = root.get().available_versions.v2.get()
        templates = v2.job_templates.get(name=STAGING_VC)
        assert templates.count == 1
        job = templates.results[0].launch({"extra_vars": {"stack_image_tag": "latest"}})
        assert job.type == "job"
        job.wait_until_completed(interval=0.05, timeout=60, since_job_created=False)
        assert job.is_successful
        assert job.status == "successful"
        assert "ansible-playbook" in job.job_args
        assert "PLAY RECAP" in job.result_stdout
        ee = job.related.execution_environment.get()
        assert ee.image
        assert job.get_related("cancel").can_cancel is False
    finally:
        awxkit_config.clear()
        awxkit_config.update(saved)
