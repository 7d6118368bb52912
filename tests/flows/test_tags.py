"""The production tag policy, table-driven: each refused tag names the rule it broke."""

from __future__ import annotations

import pytest

from flows.tags import PRODUCTION_TAG, TagRefused, check_tag, is_older, version_key


@pytest.mark.parametrize("tag", ["1.2.3", "0.0.0", "10.20.30", "1.0.3"])
def test_production_grade_tags_go_on(tag: str):
    assert check_tag(tag) == tag


@pytest.mark.parametrize(
    ("tag", "rule"),
    [
        ("", "a tag is required"),
        ("1" * 300, "at most 128 characters (it has 300)"),
        ("1.2.3\n", "no white space or control characters"),
        ("1.2 .3", "no white space or control characters"),
        (" 1.2.3", "no white space or control characters"),
        ("1.2.3\x00", "no white space or control characters"),
        ("release/1.2.3", "no '/'"),
        ("1.2.3-rc1", f"matches {PRODUCTION_TAG} whole"),
        ("v1.2.3", f"matches {PRODUCTION_TAG} whole"),
        ("1.2", f"matches {PRODUCTION_TAG} whole"),
        ("1.2.3.4", f"matches {PRODUCTION_TAG} whole"),
        ("latest", f"matches {PRODUCTION_TAG} whole"),
        ("staging", f"matches {PRODUCTION_TAG} whole"),
        ("\uff11.\uff12.\uff13", f"matches {PRODUCTION_TAG} whole"),  # full-width digits are not [0-9]
    ],
)
def test_bad_tags_are_refused_naming_the_rule(tag: str, rule: str):
    with pytest.raises(TagRefused) as refused:
        check_tag(tag)
    assert rule in str(refused.value)
    assert refused.value.tag == tag
    assert len(str(refused.value)) < 200, "a 300-character tag is not echoed whole"


def test_the_pattern_is_configurable():
    assert check_tag("1.2", pattern=r"[0-9]+\.[0-9]+") == "1.2"
    with pytest.raises(TagRefused, match=r"matches \[0-9\]\+\\\.\[0-9\]\+ whole"):
        check_tag("1.2.3", pattern=r"[0-9]+\.[0-9]+")


@pytest.mark.parametrize(
    ("older", "newer"), [("1.0.2", "1.0.3"), ("1.9.3", "1.10.0"), ("0.9.9", "1.0.0"), ("2.0.9", "2.1.0")]
)
def test_versions_are_ordered_by_number(older: str, newer: str):
    assert version_key(older) < version_key(newer)
    assert is_older(older, than=newer)
    assert not is_older(newer, than=older)
    assert not is_older(newer, than=newer)
