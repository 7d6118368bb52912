"""JSON views of the emulator's state, in the shapes of GitHub's REST API as its OpenAPI description has them
(npm ``@octokit/openapi``; tests/sandbox/test_github_openapi.py validates every answer against it).

``api`` is the emulator's base URL. The API is served at the root, as api.github.com is, and the web pages
(``html_url``), avatars and git remotes are on the same host, as GitHub Enterprise puts them on its own host.
Node ids are GitHub's global ids in their classic form (base64 of ``0<length>:<Type><id>``)."""

from __future__ import annotations

import base64
from typing import Any
from urllib.parse import quote, urlsplit

from sandbox.clock import isoformat
from sandbox.github.state import Commit, Job, RepoState, Run, Step, WorkflowState

GITHUB_ACTIONS_GROUP = "GitHub Actions"
"""The runner group of GitHub-hosted runners (id 0)."""


def node_id(kind: str, key: object) -> str:
    """GitHub's classic global node id, e.g. ``MDQ6VXNlcjE=`` for user 1 and ``MDEwOlJlcG9zaXRvcnkx`` for repo 1."""
    return base64.b64encode(f"0{len(kind)}:{kind}{key}".encode()).decode()


def _host(api: str) -> str:
    return urlsplit(api).hostname or "localhost"


def account_json(api: str, login: str, account_id: int, kind: str = "User") -> dict[str, Any]:
    """A ``simple-user``: a user or an organisation as it appears inside other objects."""
    url = f"{api}/users/{login}"
    return {
        "login": login,
        "id": account_id,
        "node_id": node_id(kind, account_id),
        "avatar_url": f"{api}/avatars/u/{account_id}?v=4",
        "gravatar_id": "",
        "url": url,
        "html_url": f"{api}/{login}",
        "followers_url": f"{url}/followers",
        "following_url": f"{url}/following{{/other_user}}",
        "gists_url": f"{url}/gists{{/gist_id}}",
        "starred_url": f"{url}/starred{{/owner}}{{/repo}}",
        "subscriptions_url": f"{url}/subscriptions",
        "organizations_url": f"{url}/orgs",
        "repos_url": f"{url}/repos",
        "events_url": f"{url}/events{{/privacy}}",
        "received_events_url": f"{url}/received_events",
        "type": kind,
        "user_view_type": "public",
        "site_admin": False,
    }


def owner_json(repo: RepoState, api: str) -> dict[str, Any]:
    return account_json(api, repo.owner, repo.owner_id, "Organization")


def user_json(api: str, actor: dict[str, Any]) -> dict[str, Any]:
    """A ``simple-user`` of ``actor`` (``state.ACTOR``: login, id, type)."""
    return account_json(api, actor["login"], actor["id"], actor.get("type", "User"))


def repository_json(repo: RepoState, api: str, *, full: bool = False) -> dict[str, Any]:
    """A ``minimal-repository`` (in runs), or with ``full`` a ``full-repository`` (``GET /repos/{owner}/{repo}``)."""
    base = f"{api}/repos/{repo.full_name}"
    data: dict[str, Any] = {
        "id": repo.id,
        "node_id": node_id("Repository", repo.id),
        "name": repo.name,
        "full_name": repo.full_name,
        "private": False,
        "owner": owner_json(repo, api),
        "html_url": f"{api}/{repo.full_name}",
        "description": None,
        "fork": False,
        "url": base,
        "archive_url": f"{base}/{{archive_format}}{{/ref}}",
        "assignees_url": f"{base}/assignees{{/user}}",
        "blobs_url": f"{base}/git/blobs{{/sha}}",
        "branches_url": f"{base}/branches{{/branch}}",
        "collaborators_url": f"{base}/collaborators{{/collaborator}}",
        "comments_url": f"{base}/comments{{/number}}",
        "commits_url": f"{base}/commits{{/sha}}",
        "compare_url": f"{base}/compare/{{base}}...{{head}}",
        "contents_url": f"{base}/contents/{{+path}}",
        "contributors_url": f"{base}/contributors",
        "deployments_url": f"{base}/deployments",
        "downloads_url": f"{base}/downloads",
        "events_url": f"{base}/events",
        "forks_url": f"{base}/forks",
        "git_commits_url": f"{base}/git/commits{{/sha}}",
        "git_refs_url": f"{base}/git/refs{{/sha}}",
        "git_tags_url": f"{base}/git/tags{{/sha}}",
        "hooks_url": f"{base}/hooks",
        "issue_comment_url": f"{base}/issues/comments{{/number}}",
        "issue_events_url": f"{base}/issues/events{{/number}}",
        "issues_url": f"{base}/issues{{/number}}",
        "keys_url": f"{base}/keys{{/key_id}}",
        "labels_url": f"{base}/labels{{/name}}",
        "languages_url": f"{base}/languages",
        "merges_url": f"{base}/merges",
        "milestones_url": f"{base}/milestones{{/number}}",
        "notifications_url": f"{base}/notifications{{?since,all,participating}}",
        "pulls_url": f"{base}/pulls{{/number}}",
        "releases_url": f"{base}/releases{{/id}}",
        "stargazers_url": f"{base}/stargazers",
        "statuses_url": f"{base}/statuses/{{sha}}",
        "subscribers_url": f"{base}/subscribers",
        "subscription_url": f"{base}/subscription",
        "tags_url": f"{base}/tags",
        "teams_url": f"{base}/teams",
        "trees_url": f"{base}/git/trees{{/sha}}",
    }
    if full:
        host = _host(api)
        data.update(
            {
                "created_at": isoformat(repo.created_at),
                "updated_at": isoformat(repo.pushed_at),
                "pushed_at": isoformat(repo.pushed_at),
                "git_url": f"git://{host}/{repo.full_name}.git",
                "ssh_url": f"git@{host}:{repo.full_name}.git",
                "clone_url": f"{api}/{repo.full_name}.git",
                "svn_url": f"{api}/{repo.full_name}",
                "homepage": None,
                "mirror_url": None,
                "language": None,
                "size": 0,
                "stargazers_count": 0,
                "watchers_count": 0,
                "watchers": 0,
                "forks_count": 0,
                "forks": 0,
                "open_issues_count": 0,
                "open_issues": 0,
                "has_issues": True,
                "has_projects": True,
                "has_wiki": True,
                "has_pages": False,
                "has_downloads": True,
                "has_discussions": False,
                "archived": False,
                "disabled": False,
                "is_template": False,
                "allow_forking": True,
                "web_commit_signoff_required": False,
                "topics": [],
                "visibility": "public",
                "license": None,
                "default_branch": repo.default_branch,
                "permissions": {"admin": True, "maintain": True, "push": True, "triage": True, "pull": True},
                "organization": owner_json(repo, api),
                "network_count": 0,
                "subscribers_count": 0,
            }
        )
    return data


def workflow_json(workflow: WorkflowState, repo: RepoState, api: str) -> dict[str, Any]:
    return {
        "id": workflow.id,
        "node_id": node_id("Workflow", workflow.id),
        "name": workflow.spec.name,
        "path": workflow.path,
        "state": "active",
        "created_at": isoformat(workflow.created_at),
        "updated_at": isoformat(workflow.created_at),
        "url": f"{api}/repos/{repo.full_name}/actions/workflows/{workflow.id}",
        "html_url": f"{api}/{repo.full_name}/blob/{repo.default_branch}/{workflow.path}",
        "badge_url": f"{api}/{repo.full_name}/workflows/{quote(workflow.spec.name)}/badge.svg",
    }


def tree_sha(commit: Commit) -> str:
    """The commit's (modelled) tree."""
    return commit.sha[::-1]


def git_commit_json(commit: Commit, repo: RepoState, api: str) -> dict[str, Any]:
    """The git commit inside a ``commit``: author, committer, message, tree, verification."""
    person = {**commit.author, "date": isoformat(commit.date)}
    base = f"{api}/repos/{repo.full_name}/git"
    return {
        "author": person,
        "committer": dict(person),
        "message": commit.message,
        "tree": {"sha": tree_sha(commit), "url": f"{base}/trees/{tree_sha(commit)}"},
        "url": f"{base}/commits/{commit.sha}",
        "comment_count": 0,
        "verification": {
            "verified": False,
            "reason": "unsigned",
            "signature": None,
            "payload": None,
            "verified_at": None,
        },
    }


def commit_json(commit: Commit, repo: RepoState, api: str, actor: dict[str, Any]) -> dict[str, Any]:
    """A ``commit``; ``actor`` is the GitHub user the commit's author email belongs to."""
    base = f"{api}/repos/{repo.full_name}"
    return {
        "sha": commit.sha,
        "node_id": node_id("Commit", f"{repo.id}:{commit.sha}"),
        "url": f"{base}/commits/{commit.sha}",
        "html_url": f"{api}/{repo.full_name}/commit/{commit.sha}",
        "comments_url": f"{base}/commits/{commit.sha}/comments",
        "commit": git_commit_json(commit, repo, api),
        "author": user_json(api, actor),
        "committer": user_json(api, actor),
        "parents": [
            {"sha": sha, "url": f"{base}/commits/{sha}", "html_url": f"{api}/{repo.full_name}/commit/{sha}"}
            for sha in commit.parents
        ],
    }


def short_branch_json(name: str, sha: str, repo: RepoState, api: str) -> dict[str, Any]:
    """A ``short-branch`` (``GET .../branches``)."""
    return {
        "name": name,
        "commit": {"sha": sha, "url": f"{api}/repos/{repo.full_name}/commits/{sha}"},
        "protected": False,
    }


def branch_json(name: str, commit: Commit, repo: RepoState, api: str, actor: dict[str, Any]) -> dict[str, Any]:
    """A ``branch-with-protection`` (``GET .../branches/{branch}``) of an unprotected branch."""
    base = f"{api}/repos/{repo.full_name}/branches/{name}"
    return {
        "name": name,
        "commit": commit_json(commit, repo, api, actor),
        "_links": {"self": base, "html": f"{api}/{repo.full_name}/tree/{name}"},
        "protected": False,
        "protection": {
            "enabled": False,
            "required_status_checks": {"enforcement_level": "off", "contexts": [], "checks": []},
        },
        "protection_url": f"{base}/protection",
    }


def tag_json(name: str, sha: str, repo: RepoState, api: str) -> dict[str, Any]:
    return {
        "name": name,
        "commit": {"sha": sha, "url": f"{api}/repos/{repo.full_name}/commits/{sha}"},
        "zipball_url": f"{api}/repos/{repo.full_name}/zipball/refs/tags/{name}",
        "tarball_url": f"{api}/repos/{repo.full_name}/tarball/refs/tags/{name}",
        "node_id": node_id("Ref", f"{repo.id}:refs/tags/{name}"),
    }


def run_json(run: Run, repo: RepoState, api: str) -> dict[str, Any]:
    base = f"{api}/repos/{repo.full_name}/actions/runs/{run.id}"
    commit = repo.commits.get(run.head_sha)
    head_commit = None
    if commit is not None:
        head_commit = {
            "id": commit.sha,
            "tree_id": tree_sha(commit),
            "message": commit.message,
            "timestamp": isoformat(commit.date),
            "author": dict(commit.author),
            "committer": dict(commit.author),
        }
    check_suite_id = run.id + 1
    return {
        "id": run.id,
        "name": run.workflow.spec.name,
        "node_id": node_id("WorkflowRun", run.id),
        "head_branch": run.head_branch,
        "head_sha": run.head_sha,
        "path": run.workflow.path,
        "display_title": run.display_title,
        "run_number": run.run_number,
        "event": run.event,
        "status": run.status,
        "conclusion": run.conclusion,
        "workflow_id": run.workflow.id,
        "check_suite_id": check_suite_id,
        "check_suite_node_id": node_id("CheckSuite", check_suite_id),
        "url": base,
        "html_url": f"{api}/{repo.full_name}/actions/runs/{run.id}",
        "pull_requests": [],
        "created_at": isoformat(run.created_at),
        "updated_at": isoformat(run.updated_at),
        "actor": user_json(api, run.actor),
        "triggering_actor": user_json(api, run.actor),
        "run_attempt": run.run_attempt,
        "referenced_workflows": [],
        "run_started_at": isoformat(run.run_started_at),
        "jobs_url": f"{base}/jobs",
        "logs_url": f"{base}/logs",
        "check_suite_url": f"{api}/repos/{repo.full_name}/check-suites/{check_suite_id}",
        "artifacts_url": f"{base}/artifacts",
        "cancel_url": f"{base}/cancel",
        "rerun_url": f"{base}/rerun",
        "previous_attempt_url": None,
        "workflow_url": f"{api}/repos/{repo.full_name}/actions/workflows/{run.workflow.id}",
        "head_commit": head_commit,
        "repository": repository_json(repo, api),
        "head_repository": repository_json(repo, api),
        "head_repository_id": repo.id,
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
    runner = job.runner_id is not None
    return {
        "id": job.id,
        "run_id": run.id,
        "workflow_name": run.workflow.spec.name,
        "head_branch": run.head_branch,
        "run_url": f"{api}/repos/{repo.full_name}/actions/runs/{run.id}",
        "run_attempt": run.run_attempt,
        "node_id": node_id("CheckRun", job.id),
        "head_sha": run.head_sha,
        "url": f"{api}/repos/{repo.full_name}/actions/jobs/{job.id}",
        "html_url": f"{api}/{repo.full_name}/actions/runs/{run.id}/job/{job.id}",
        "status": job.status,
        "conclusion": job.conclusion,
        "created_at": isoformat(job.created_at),
        # a queued job reports when it was queued as its start, as GitHub's do (the field is never null)
        "started_at": isoformat(job.started_at or job.created_at),
        "completed_at": isoformat(job.completed_at),
        "name": job.name,
        "steps": [step_json(step) for step in job.steps],
        "check_run_url": f"{api}/repos/{repo.full_name}/check-runs/{job.id}",
        "labels": ["ubuntu-latest"],
        "runner_id": job.runner_id,
        "runner_name": f"GitHub Actions {job.runner_id}" if runner else None,
        "runner_group_id": 0 if runner else None,
        "runner_group_name": GITHUB_ACTIONS_GROUP if runner else None,
    }
