"""GitHub's filter patterns for ``on.push`` and the ref slug of github-slug-action, table-driven: the examples of
GitHub's "Filter pattern cheat sheet" and the patterns the Fragalysis workflows use."""

from __future__ import annotations

import pytest

from sandbox.github.patterns import matches_any, ref_slug


@pytest.mark.parametrize(
    ("patterns", "name", "expected"),
    [
        (["**"], "1.0.3", True),
        (["**"], "feature/a/b", True),
        (["*"], "feature/a", False),  # * stops at /
        (["feature/*"], "feature/my-branch", True),
        (["feature/**"], "feature/your-branch/x", True),
        (["v2*"], "v2.0", True),
        (["main", "releases/mona-the-octocat"], "releases/mona-the-octocat", True),
        (["Octoc?t"], "Octocat", True),
        (["[CB]at"], "Bat", True),
        (["[CB]at"], "Rat", False),
        (["[1-2]00"], "200", True),
        (["v[12].[0-9]+.[0-9]+"], "v1.10.1", True),
        (["v[12].[0-9]+.[0-9]+"], "v3.1.0", False),
        # the frontend's and backend's production tags: `.` is literal and the whole name must match
        (["[0-9]+.[0-9]+", "[0-9]+.[0-9]+.[0-9]+"], "2022.1", True),
        (["[0-9]+.[0-9]+", "[0-9]+.[0-9]+.[0-9]+"], "1.0.3", True),
        (["[0-9]+.[0-9]+", "[0-9]+.[0-9]+.[0-9]+"], "1x0", False),
        (["[0-9]+.[0-9]+", "[0-9]+.[0-9]+.[0-9]+"], "1.0.3-rc1", False),
        (["[0-9]+.[0-9]+", "[0-9]+.[0-9]+.[0-9]+"], "v1.0", False),
        # a leading ! excludes what it matches from the patterns before it; the last match decides
        (["releases/**", "!releases/**-alpha"], "releases/1.0-alpha", False),
        (["releases/**", "!releases/**-alpha"], "releases/1.0", True),
        (["!releases/**-alpha", "releases/**"], "releases/1.0-alpha", True),
        (["\\*"], "*", True),
        (["\\*"], "x", False),
        ([], "master", False),
    ],
)
def test_filter_patterns(patterns: list[str], name: str, expected: bool):
    assert matches_any(patterns, name) is expected


@pytest.mark.parametrize(
    ("ref_name", "slug"),
    [
        ("1.0.3", "1.0.3"),
        ("master", "master"),
        ("1.0.3-RC1", "1.0.3-rc1"),
        ("feature/New_thing", "feature-new_thing"),
        ("product@1.0.0-rc.2", "product-1.0.0-rc.2"),
        ("-x-", "x"),
        ("a" * 70, "a" * 63),
    ],
)
def test_ref_slug(ref_name: str, slug: str):
    assert ref_slug(ref_name) == slug
