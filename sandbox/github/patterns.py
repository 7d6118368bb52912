"""GitHub Actions' filter patterns (``on.push.branches`` / ``on.push.tags``) and the ref slug that the Fragalysis
workflows compute with rlespinasse/github-slug-action.

Filter patterns, as "Filter pattern cheat sheet" in GitHub's workflow syntax describes them: ``*`` matches any
characters but ``/``, ``**`` any characters, ``?`` zero or one character (``Octoc?t`` matches ``Octocat``), ``+``
one or more of the preceding character, ``[...]`` one character listed or in a range, ``\\`` makes the next
character literal, and ``!`` at the start of a pattern excludes what it matches from the patterns before it
(the last matching pattern decides). Every other character (``.`` too) is literal: ``'[0-9]+.[0-9]+'`` matches
``2.1`` and not ``2.1.3``.
https://docs.github.com/actions/writing-workflows/workflow-syntax-for-github-actions#filter-pattern-cheat-sheet
"""

from __future__ import annotations

import functools
import re

SLUG_MAX_LENGTH = 63


def matches_any(patterns: list[str], name: str) -> bool:
    """Whether ``name`` passes a list of filter patterns (positive and ``!`` negative, the last match wins)."""
    selected = False
    for pattern in patterns:
        negative = pattern.startswith("!")
        if _compile(pattern[1:] if negative else pattern).fullmatch(name):
            selected = not negative
    return selected


@functools.lru_cache(maxsize=256)
def _compile(pattern: str) -> re.Pattern[str]:
    atoms: list[str] = []
    index = 0
    while index < len(pattern):
        char = pattern[index]
        if pattern.startswith("**", index):
            atoms.append(".*")
            index += 2
            continue
        if char == "*":
            atoms.append("[^/]*")
        elif char == "?":
            atoms.append(".?")
        elif char == "+" and atoms:
            atoms[-1] = f"(?:{atoms[-1]})+"
        elif char == "[" and "]" in pattern[index + 1 :]:
            end = pattern.index("]", index + 1)
            atoms.append("[" + re.escape(pattern[index + 1 : end]).replace("\\-", "-") + "]")
            index = end
        elif char == "\\" and index + 1 < len(pattern):
            index += 1
            atoms.append(re.escape(pattern[index]))
        else:
            atoms.append(re.escape(char))
        index += 1
    return re.compile("".join(atoms))


def ref_slug(ref_name: str) -> str:
    """``GITHUB_REF_SLUG`` of a branch or tag name (github-slug-action v4): lower case, every character other
    than ``0-9``, ``a-z``, ``.`` and ``_`` replaced by ``-``, leading ``-`` removed, at most 63 characters,
    trailing ``-`` removed. ``1.0.3`` stays ``1.0.3``; ``feature/New`` becomes ``feature-new``."""
    slug = re.sub(r"[^0-9a-z._]", "-", ref_name.lower()).lstrip("-")
    return slug[:SLUG_MAX_LENGTH].rstrip("-")
