"""The production tag policy: which tags may go to production, checked before anything remote. Pure, no I/O.

FACTS.md: a production-grade stack tag has three numbers separated by periods, ``^[0-9]+\\.[0-9]+\\.[0-9]+$``,
matched whole (``re.fullmatch``: ``$`` alone would let ``1.2.3\\n`` through).
"""

from __future__ import annotations

import re

from blocks import PRODUCTION_TAG

__all__ = ["PRODUCTION_TAG", "TagRefused", "check_tag", "is_older", "shown", "version_key"]

MAX_LENGTH = 128
"""A Docker image tag has at most 128 characters (the distribution spec's tag grammar)."""


def shown(tag: str, limit: int = 40) -> str:
    """``tag`` as reports, events and messages carry it: cut to ``limit`` characters (a refused tag may be huge)."""
    return tag if len(tag) <= limit else tag[: limit - 3] + "..."


class TagRefused(ValueError):
    """A tag that may not be deployed; the message names the rule it broke."""

    def __init__(self, tag: str, rule: str) -> None:
        super().__init__(f"tag {shown(tag)!r} refused: {rule}")
        self.tag = tag
        self.rule = rule


def check_tag(tag: str, pattern: str = PRODUCTION_TAG) -> str:
    """Return ``tag`` when it may go to production, else raise ``TagRefused`` naming the rule it broke.

    The rules, in order: not empty; at most 128 characters; no white space or control characters; no ``/``; and
    the whole tag matches ``pattern``.
    """
    if not tag:
        raise TagRefused(tag, "a tag is required (it is empty)")
    if len(tag) > MAX_LENGTH:
        raise TagRefused(tag, f"a tag has at most {MAX_LENGTH} characters (it has {len(tag)})")
    if any(ch.isspace() or not ch.isprintable() for ch in tag):
        raise TagRefused(tag, "a tag has no white space or control characters")
    if "/" in tag:
        raise TagRefused(tag, "a tag has no '/' (it names an image tag, not a path or a branch)")
    if re.fullmatch(pattern, tag) is None:
        raise TagRefused(tag, f"a production tag matches {pattern} whole (three numbers separated by periods)")
    return tag


def is_production_grade(tag: str, pattern: str = PRODUCTION_TAG) -> bool:
    """Whether ``check_tag`` accepts ``tag``."""
    try:
        check_tag(tag, pattern)
    except TagRefused:
        return False
    return True


def version_key(tag: str) -> tuple[int, ...]:
    """The order of production-grade tags: ``1.10.0`` comes after ``1.9.3`` (numbers, not text)."""
    return tuple(int(part) for part in re.findall(r"[0-9]+", tag))


def is_older(tag: str, than: str) -> bool:
    """Whether ``tag`` is an older version than ``than``."""
    return version_key(tag) < version_key(than)
