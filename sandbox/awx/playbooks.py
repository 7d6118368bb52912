"""The job templates' playbooks, run as the real Ansible playbooks do: over the Kubernetes API (the Kubernetes
emulator's HTTP API, never its Python objects), writing Ansible-like output as they go.

``version-change`` (FACTS.md): re-apply the StatefulSet with a changed pod-template value (a timestamp) and the
new image tag, then wait until the StatefulSet controller has replaced every pod. ``deploy`` (the one-time
templates) also creates the namespace and the StatefulSet when they are absent.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, NoReturn

import httpx

from sandbox.awx.models import Job
from sandbox.awx.output import PlaybookOutput
from sandbox.clock import Clock, isoformat

REDEPLOYED_AT = "fragalysis.xchem/redeployed-at"
POLL_SECONDS = 10.0
"""Modelled seconds between the roll-out checks (the playbook's ``until``/``delay``)."""
PULL_ALWAYS_TAGS = ("latest", "stable")


class PlaybookFailed(Exception):
    """A task failed: its ``fatal:`` line is written; the job ends ``failed`` after the recap."""


@dataclass
class Kube:
    """The little of the Kubernetes API the playbooks use, over HTTP."""

    client: httpx.AsyncClient

    async def request(
        self, method: str, path: str, body: Any = None, content_type: str | None = None
    ) -> httpx.Response:
        headers = {"Accept": "application/json"}
        content = None
        if body is not None:
            headers["Content-Type"] = content_type or "application/json"
            content = json.dumps(body).encode()
        return await self.client.request(method, path, content=content, headers=headers)


def _statefulset_path(namespace: str, name: str = "") -> str:
    path = f"/apis/apps/v1/namespaces/{namespace}/statefulsets"
    return f"{path}/{name}" if name else path


def _error_result(what: str, response: httpx.Response) -> tuple[str, dict[str, Any]]:
    """The k8s module's failure: its message carries the API server's Status body."""
    try:
        body = response.json()
    except ValueError:
        body = {"message": response.text}
    reason = body.get("reason", "") if isinstance(body, dict) else ""
    return f"{what}: {json.dumps(body)}", {"reason": reason, "status": response.status_code}


class Playbook:
    """One run of a template's playbook for a job."""

    def __init__(self, job: Job, out: PlaybookOutput, kube: Kube, clock: Clock) -> None:
        self.job = job
        self.out = out
        self.kube = kube
        self.clock = clock
        spec = job.template.spec
        self.spec = spec
        self.namespace = spec.namespace
        self.name = spec.statefulset

    async def run(self) -> None:
        """Run every task; raises ``PlaybookFailed`` after writing the failing task's ``fatal:`` line."""
        out = self.out
        out.playbook_start()
        out.play_start(f"Deploy the Fragalysis Stack ({self.namespace})")
        tag = self._check_tag()
        if self.spec.playbook == "deploy":
            await self._ensure_namespace()
        statefulset = await self._get_statefulset(allow_missing=self.spec.playbook == "deploy")
        if statefulset is None:
            await self._create_statefulset(tag)
        else:
            await self._change_pod_template(statefulset, tag)
        await self._wait_for_rollout()

    # ------------------------------------------------------------ tasks

    def _check_tag(self) -> str:
        var = self.spec.image_var
        self.out.task_start(f"Check that {var} is set", "ansible.builtin.assert")
        value = self.job.extra_vars.get(var)
        if value in (None, ""):
            self._fatal(f"The task includes an option with an undefined variable. The error was: '{var}' is undefined")
        self.out.host_ok()
        return str(value)

    async def _ensure_namespace(self) -> None:
        self.out.task_start(f"Create the namespace {self.namespace}", "kubernetes.core.k8s")
        found = await self._call(
            "GET", f"/api/v1/namespaces/{self.namespace}", what="Failed to retrieve requested object"
        )
        if found is not None:
            self.out.host_ok()
            return
        body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": self.namespace}}
        await self._call("POST", "/api/v1/namespaces", body, what="Failed to create object", allow_missing=False)
        self.out.host_ok(changed=True)

    async def _get_statefulset(self, *, allow_missing: bool) -> dict[str, Any] | None:
        self.out.task_start(f"Get the StatefulSet {self.name}", "kubernetes.core.k8s_info")
        found = await self._call(
            "GET",
            _statefulset_path(self.namespace, self.name),
            what="Failed to retrieve requested object",
            allow_missing=allow_missing,
        )
        self.out.host_ok()
        return found

    async def _change_pod_template(self, statefulset: dict[str, Any], tag: str) -> None:
        image = f"{self.spec.image}:{tag}"
        self.out.task_start(f"Set the image {image} and the redeploy timestamp", "kubernetes.core.k8s")
        if self.job.fault == "failed":
            self._fatal("Failed to patch object: sandbox fault: the playbook fails here", reason="", status=500)
        containers = statefulset.get("spec", {}).get("template", {}).get("spec", {}).get("containers", [])
        container = next((c for c in containers if c.get("name") == self.name), containers[0] if containers else {})
        patch = {
            "spec": {
                "template": {
                    "metadata": {"annotations": {REDEPLOYED_AT: isoformat(self.clock.now())}},
                    "spec": {
                        "containers": [
                            {
                                "name": container.get("name", self.name),
                                "image": image,
                                "imagePullPolicy": _pull_policy(tag),
                            }
                        ]
                    },
                }
            }
        }
        await self._call(
            "PATCH",
            _statefulset_path(self.namespace, self.name),
            patch,
            what="Failed to patch object",
            allow_missing=False,
            content_type="application/strategic-merge-patch+json",
        )
        self.out.host_ok(changed=True)

    async def _create_statefulset(self, tag: str) -> None:
        self.out.task_start(f"Create the StatefulSet {self.name}", "kubernetes.core.k8s")
        if self.job.fault == "failed":
            self._fatal("Failed to create object: sandbox fault: the playbook fails here", reason="", status=500)
        manifest = statefulset_manifest(
            self.namespace, self.name, f"{self.spec.image}:{tag}", self.spec.replicas, isoformat(self.clock.now())
        )
        await self._call(
            "POST", _statefulset_path(self.namespace), manifest, what="Failed to create object", allow_missing=False
        )
        self.out.host_ok(changed=True)

    async def _wait_for_rollout(self) -> None:
        self.out.task_start(f"Wait for the StatefulSet {self.name} to roll out", "kubernetes.core.k8s_info")
        # the job's own timeout ends the job first (AWX: "Job terminated due to timeout")
        retries = int(self.spec.timeout_seconds / POLL_SECONDS) + 1
        while True:
            statefulset = await self._call(
                "GET",
                _statefulset_path(self.namespace, self.name),
                what="Failed to retrieve requested object",
                allow_missing=False,
            )
            if statefulset is not None and rolled_out(statefulset):
                self.out.host_ok()
                return
            retries -= 1
            if retries <= 0:
                self._fatal("The StatefulSet did not roll out in time")
            self.out.host_retry(retries)
            await self.clock.sleep(POLL_SECONDS)

    # ------------------------------------------------------------ helpers

    async def _call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        what: str,
        allow_missing: bool = True,
        content_type: str | None = None,
    ) -> dict[str, Any] | None:
        """The JSON answer; ``None`` for a 404 when ``allow_missing``; any other error fails the task."""
        try:
            response = await self.kube.request(method, path, body, content_type)
        except httpx.HTTPError as error:
            self._fatal(f"{what}: {type(error).__name__}: {error}", reason="", status=-1)
        if response.status_code == 404 and allow_missing:
            return None
        if response.status_code >= 400:
            msg, result = _error_result(what, response)
            self._fatal(msg, **result)
        try:
            data = response.json()
        except ValueError:
            self._fatal(f"{what}: the API server's answer is not JSON", reason="", status=response.status_code)
        return data if isinstance(data, dict) else {}

    def _fatal(self, msg: str, **result: Any) -> NoReturn:
        self.out.host_failed(msg, **result)
        raise PlaybookFailed(msg)


def _pull_policy(tag: str) -> str:
    # FACTS.md: imagePullPolicy Always for latest/stable, so a redeploy pulls the new image behind the tag
    return "Always" if tag in PULL_ALWAYS_TAGS else "IfNotPresent"


def rolled_out(statefulset: dict[str, Any]) -> bool:
    """Done as ``kubectl rollout status`` decides (FACTS.md), with every replica updated and ready."""
    metadata = statefulset.get("metadata", {})
    spec = statefulset.get("spec", {})
    status = statefulset.get("status", {}) or {}
    replicas = spec.get("replicas", 1)
    return (
        status.get("observedGeneration", 0) >= metadata.get("generation", 1)
        and status.get("updatedReplicas", 0) == replicas
        and status.get("readyReplicas", 0) == replicas
        and bool(status.get("updateRevision"))
        and status.get("currentRevision") == status.get("updateRevision")
    )


def statefulset_manifest(namespace: str, name: str, image: str, replicas: int, timestamp: str | None) -> dict[str, Any]:
    """The Fragalysis Stack's StatefulSet as the one-time deployment creates it (FACTS.md)."""
    tag = image.rsplit(":", 1)[-1]
    labels = {"name": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": name, "namespace": namespace, "labels": dict(labels)},
        "spec": {
            "replicas": replicas,
            "serviceName": name,
            "selector": {"matchLabels": dict(labels)},
            "podManagementPolicy": "OrderedReady",
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}},
            "template": {
                "metadata": {"labels": dict(labels), "annotations": {REDEPLOYED_AT: timestamp or ""}},
                "spec": {
                    "containers": [
                        {
                            "name": name,
                            "image": image,
                            "imagePullPolicy": _pull_policy(tag),
                            "ports": [{"name": "http", "containerPort": 80, "protocol": "TCP"}],
                            "readinessProbe": {
                                "tcpSocket": {"port": 80},
                                "initialDelaySeconds": 160,
                                "periodSeconds": 10,
                                "timeoutSeconds": 1,
                                "failureThreshold": 3,
                            },
                        }
                    ]
                },
            },
        },
    }
