"""JSON views of the emulator's state, in the shapes of GitHub's REST API (the fields clients read, and the
usual neighbours). ``api`` is the emulator's base URL: the API is served at the root, as api.github.com is,
and ``html_url``s point at the same host, as on GitHub Enterprise."""

from __future__ import annotations

from typing import Any

from sandbox.clock import isoformat
from sandbox.github.state import ACTOR, Commit, Job, RepoState, Run, Step, WorkflowState


def owner_json(repo: RepoState, api: str) -> dict[str, Any]:
    login = repo.full_name.split("/")[0]
    return {
        "login": login,
        "id": repo.id // 1000,
        "type": "Organization",
        "url": f"{api}/users/{login}",
        "html_url": f"{api}/{login}",
    }


def user_json(api: str) -> dict[str, Any]:
    return {**ACTOR, "url": f"{api}/users/{ACTOR['login']}", "html_url": f"{api}/{ACTOR['login']}"}


def repository_json(repo: RepoState, api: str, *, full: bool = False) -> dict[str, Any]:
    name = repo.full_name.split("/")[1]
    data: dict[str, Any] = {
        "id": repo.id,
        "node_id": f"R_{repo.id}",
        "name": name,
        "full_name": repo.full_name,
        "private": False,
        "owner": owner_json(repo, api),
        "html_url": f"{api}/{repo.full_name}",
        "url": f"{api}/repos/{repo.full_name}",
        "fork": False,
    }
    if full:
        data.update(
            {
                "default_branch": repo.default_branch,
                "visibility": "public",
                "archived": False,
                "disabled": False,
                "created_at": isoformat(repo.created_at),
                "branches_url": f"{api}/repos/{repo.full_name}/branches{{/branch}}",
                "tags_url": f"{api}/repos/{repo.full_name}/tags",
                "permissions": {"admin": True, "maintain": True, "push": True, "triage": True, "pull": True},
            }
        )
    return data


def workflow_json(workflow: WorkflowState, repo: RepoState, api: str) -> dict[str, Any]:
    return {
        "id": workflow.id,
        "node_id": f"W_{workflow.id}",
        "name": workflow.spec.name,
        "path": workflow.path,
        "state": "active",
        "created_at": isoformat(workflow.created_at),
        "updated_at": isoformat(workflow.created_at),
        "url": f"{api}/repos/{repo.full_name}/actions/workflows/{workflow.id}",
        "html_url": f"{api}/{repo.full_name}/blob/{repo.default_branch}/{workflow.path}",
        "badge_url": f"{api}/{repo.full_name}/workflows/{workflow.spec.name}/badge.svg",
    }


def git_commit_json(commit: Commit) -> dict[str, Any]:
    person = {**commit.author, "date": isoformat(commit.date)}
    return {"author": person, "committer": dict(person), "message": commit.message}


def commit_json(commit: Commit, repo: RepoState, api: str) -> dict[str, Any]:
    base = f"{api}/repos/{repo.full_name}"
    return {
        "sha": commit.sha,
        "node_id": f"C_{commit.sha[:12]}",
        "url": f"{base}/commits/{commit.sha}",
        "html_url": f"{api}/{repo.full_name}/commit/{commit.sha}",
        "commit": {**git_commit_json(commit), "url": f"{base}/git/commits/{commit.sha}"},
        "author": user_json(api),
        "committer": user_json(api),
        "parents": [{"sha": sha, "url": f"{base}/commits/{sha}"} for sha in commit.parents],
    }


def branch_json(name: str, commit: Commit, repo: RepoState, api: str) -> dict[str, Any]:
    return {
        "name": name,
        "commit": commit_json(commit, repo, api),
        "_links": {
            "self": f"{api}/repos/{repo.full_name}/branches/{name}",
            "html": f"{api}/{repo.full_name}/tree/{name}",
        },
        "protected": False,
        "protection_url": f"{api}/repos/{repo.full_name}/branches/{name}/protection",
    }


def tag_json(name: str, sha: str, repo: RepoState, api: str) -> dict[str, Any]:
    return {
        "name": name,
        "commit": {"sha": sha, "url": f"{api}/repos/{repo.full_name}/commits/{sha}"},
        "zipball_url": f"{api}/repos/{repo.full_name}/zipball/refs/tags/{name}",
        "tarball_url": f"{api}/repos/{repo.full_name}/tarball/refs/tags/{name}",
        "node_id": f"T_{sha[:12]}",
    }


def run_json(run: Run, repo: RepoState, api: str) -> dict[str, Any]:
    base = f"{api}/repos/{repo.full_name}/actions/runs/{run.id}"
    commit = repo.commits.get(run.head_sha)
    head_commit = None
    if commit is not None:
        head_commit = {
            "id": commit.sha,
            "tree_id": commit.sha[::-1],
            "message": commit.message,
            "timestamp": isoformat(commit.date),
            "author": dict(commit.author),
            "committer": dict(commit.author),
        }
    return {
        "id": run.id,
        "name": run.workflow.spec.name,
        "node_id": f"WFR_{run.id}",
        "head_branch": run.head_branch,
        "head_sha": run.head_sha,
        "path": run.workflow.path,
        "display_title": run.display_title,
        "run_number": run.run_number,
        "event": run.event,
        "status": run.status,
        "conclusion": run.conclusion,
        "workflow_id": run.workflow.id,
        "check_suite_id": run.id + 1,
        "url": base,
        "html_url": f"{api}/{repo.full_name}/actions/runs/{run.id}",
        "pull_requests": [],
        "created_at": isoformat(run.created_at),
        "updated_at": isoformat(run.updated_at),
        "actor": user_json(api),
        "triggering_actor": user_json(api),
        "run_attempt": run.run_attempt,
        "referenced_workflows": [],
        "run_started_at": isoformat(run.run_started_at),
        "jobs_url": f"{base}/jobs",
        "logs_url": f"{base}/logs",
        "check_suite_url": f"{api}/repos/{repo.full_name}/check-suites/{run.id + 1}",
        "artifacts_url": f"{base}/artifacts",
        "cancel_url": f"{base}/cancel",
        "rerun_url": f"{base}/rerun",
        "previous_attempt_url": None,
        "workflow_url": f"{api}/repos/{repo.full_name}/actions/workflows/{run.workflow.id}",
        "head_commit": head_commit,
        "repository": repository_json(repo, api),
        "head_repository": repository_json(repo, api),
    }


def step_json(step: Step) -> dict[str, Any]:
    return {
        "name": step.name,
        "status": step.status,
        "conclusion": step.conclusion,
        "number": step.number,
        "started_at": isoformat(step.started_at),
        "completed_at": isoformat(step.completed_at),
    }


def job_json(job: Job, run: Run, repo: RepoState, api: str) -> dict[str, Any]:
    return {
        "id": job.id,
        "run_id": run.id,
        "workflow_name": run.workflow.spec.name,
        "head_branch": run.head_branch,
        "run_url": f"{api}/repos/{repo.full_name}/actions/runs/{run.id}",
        "run_attempt": run.run_attempt,
        "node_id": f"CR_{job.id}",
        "head_sha": run.head_sha,
        "url": f"{api}/repos/{repo.full_name}/actions/jobs/{job.id}",
        "html_url": f"{api}/{repo.full_name}/actions/runs/{run.id}/job/{job.id}",
        "status": job.status,
        "conclusion": job.conclusion,
        "created_at": isoformat(job.created_at),
        "started_at": isoformat(job.started_at),
        "completed_at": isoformat(job.completed_at),
        "name": job.name,
        "steps": [step_json(step) for step in job.steps],
        "check_run_url": f"{api}/repos/{repo.full_name}/check-runs/{job.id}",
        "labels": ["ubuntu-latest"],
        "runner_name": "GitHub Actions 1" if job.started_at else None,
        "runner_group_name": "GitHub Actions" if job.started_at else None,
    }
