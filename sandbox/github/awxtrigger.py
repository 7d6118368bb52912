"""The stack build's "Trigger AWX" step: what the Fragalysis workflows do with trigger-awx-action when the
TRIGGER_AWX secret is ``yes`` (FACTS.md "The Fragalysis delivery chain today").

It talks to the AWX emulator over AWX's HTTP API, as the real action talks to AWX: find the template by exact
name, launch it with ``extra_vars``, and (when waiting) poll the job every 5 s until it finishes, with no
timeout, treating a cancelled job as success - the real action's behaviour, faithfully.
"""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

USER_AGENT = "sandbox-github-actions"
POLL_SECONDS = 5.0
"""Modelled seconds between polls, as trigger-awx-action polls."""
FINISHED_OK = ("successful", "canceled")
FINISHED_BAD = ("failed", "error")


class AwxTriggerError(Exception):
    """The step failed: AWX answered an error, the template is missing or ambiguous, or the job failed."""


async def trigger_awx(
    *,
    url: str,
    base_path: str,
    token: str,
    template: str,
    extra_vars: dict[str, Any],
    wait: bool,
    sleep: Callable[[float], Awaitable[None]],
    on_launch: Callable[[int], None] = lambda job: None,
    verify: ssl.SSLContext | bool = True,
) -> int:
    """Launch ``template`` and return the AWX job id (once it finished, when ``wait``)."""
    base = url.rstrip("/") + "/" + base_path.strip("/") + "/"
    headers = {"Authorization": f"Bearer {token}", "User-Agent": USER_AGENT, "Accept": "application/json"}
    timeout = httpx.Timeout(30.0, connect=5.0)
    try:
        async with httpx.AsyncClient(base_url=base, headers=headers, timeout=timeout, verify=verify) as client:
            found = _json(await client.get("job_templates/", params={"name": template}), "find the template")
            if not found.get("count"):
                raise AwxTriggerError(f"no AWX job template named {template!r}")
            template_id = found["results"][0]["id"]
            launched = _json(
                await client.post(f"job_templates/{template_id}/launch/", json={"extra_vars": extra_vars}),
                f"launch template {template_id}",
            )
            job_id = int(launched.get("job") or launched["id"])
            on_launch(job_id)
            while wait:
                await sleep(POLL_SECONDS)
                job = _json(await client.get(f"jobs/{job_id}/"), f"read job {job_id}")
                status = job.get("status")
                if status in FINISHED_OK:
                    break
                if status in FINISHED_BAD:
                    raise AwxTriggerError(f"AWX job {job_id} {status}: {job.get('job_explanation') or ''}".strip())
            return job_id
    except httpx.HTTPError as error:
        raise AwxTriggerError(f"cannot reach AWX at {base}: {error}") from error
    except (KeyError, TypeError, ValueError) as error:
        raise AwxTriggerError(f"unexpected answer from AWX: {error!r}") from error


def _json(response: httpx.Response, what: str) -> dict[str, Any]:
    if response.status_code >= 400:
        raise AwxTriggerError(f"AWX answered {response.status_code} to {what}: {response.text[:200]}")
    data = response.json()
    if not isinstance(data, dict):
        raise AwxTriggerError(f"AWX answered {what} with {type(data).__name__}, not an object")
    return data
