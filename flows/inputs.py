"""The checks of a flow's parameters, made when the run starts, before any request to GitHub, AWX, the registry
or the cluster: a refused parameter ends the run Failed at stage ``input``, naming the parameter and the rule.

Which values are good (FACTS.md): a commit sha is 7 to 40 hexadecimal digits (a shorter one is expanded through
GitHub, since runs, events and reports carry full shas); a source is one of ``blocks.Source``; a target is the
name of a saved ``StackTarget`` block (Prefect names blocks with lowercase letters, digits and dashes); every
string parameter has at most ``MAX_TEXT`` characters. A production tag's own policy is ``flows.tags.check_tag``.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, cast

from prefect.exceptions import ObjectNotFound
from prefect.types.names import LOWERCASE_LETTERS_NUMBERS_AND_DASHES_ONLY_REGEX

from blocks import Source, StackTarget
from clients.errors import ApiError
from flows.report import StageFailed

if TYPE_CHECKING:
    from clients.github import GitHubClient

STAGE = "input"
MAX_TEXT = 256
"""The most characters a string parameter may have (the longest good one, a target's name, is far shorter)."""
FULL_SHA = 40
SHA = re.compile(r"[0-9a-fA-F]{7,40}")


def shown(value: object, limit: int = 40) -> str:
    """``value`` as a message quotes it: repr, cut to ``limit`` characters (a refused value may be huge)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def refuse(reason: str) -> StageFailed:
    return StageFailed(STAGE, reason)


def check_text(name: str, value: str | None, *, limit: int = MAX_TEXT) -> None:
    """Refuse a string parameter longer than ``limit`` characters (None and other types pass: Prefect has checked
    the types)."""
    if isinstance(value, str) and len(value) > limit:
        raise refuse(f"{name} has at most {limit} characters (it has {len(value)}: {shown(value)})")


def check_sha(sha: str | None) -> str | None:
    """The commit sha, lower-cased; None (or empty) for "the branch's head". Refuses anything but 7 to 40
    hexadecimal digits."""
    if not sha:
        return None
    check_text("sha", sha)
    if SHA.fullmatch(sha) is None:
        raise refuse(f"sha must be 7 to 40 hexadecimal digits, not {shown(sha)}")
    return sha.lower()


def check_source(source: Source | str) -> Source:
    """The source, one of ``blocks.Source``."""
    check_text("source", str(source))
    try:
        return Source(source)
    except ValueError:
        raise refuse(f"source must be one of {', '.join(Source)}, not {shown(source)}") from None


def load_target(name: str) -> StackTarget:
    """The ``StackTarget`` block named ``name``, or a refusal naming it ("no StackTarget block named 'x'")."""
    check_text("target", name)
    if not name or re.match(LOWERCASE_LETTERS_NUMBERS_AND_DASHES_ONLY_REGEX, name) is None:
        raise refuse(f"target must be a block name (lowercase letters, digits and dashes), not {shown(name)}")
    try:
        return cast(StackTarget, StackTarget.load(name))
    except ValueError as error:
        # Prefect turns the API's 404 into a ValueError raised from ObjectNotFound; any other error is its own
        if isinstance(error.__cause__, ObjectNotFound):
            raise refuse(f"no StackTarget block named {name!r}") from None
        raise


def full_sha(github: GitHubClient, repository: str, sha: str) -> str:
    """The full 40-digit sha of ``sha`` (checked by ``check_sha``) on ``repository``: a full one as it is, a short
    one expanded through GitHub's commits API, refused when GitHub knows no such commit or it is ambiguous."""
    if len(sha) == FULL_SHA:
        return sha
    try:
        commit = github.commit(repository, sha)
    except ApiError as error:
        # GitHub answers 422 "No commit found for SHA" for an unknown or ambiguous abbreviation, 404 for a
        # repository it does not show us; anything else (5xx after retries, 401) is not a verdict on the input
        if error.status not in (404, 422):
            raise refuse(f"could not expand the short sha {sha} on {repository}: {error}") from error
        raise refuse(f"GitHub knows no single commit {sha} on {repository} (unknown, or ambiguous)") from None
    full = commit.sha.lower()
    # the commits API also takes branch and tag names: a branch called "deadbee" is not the commit deadbee...
    if len(full) != FULL_SHA or not full.startswith(sha):
        raise refuse(f"{sha} on {repository} names {shown(commit.sha, 50)}, not a commit whose sha starts with it")
    return full
