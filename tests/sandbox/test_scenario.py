"""Scenario files: the built-in ones load; a malformed one fails naming the file and each field at fault."""

from __future__ import annotations

from pathlib import Path

import pytest

from sandbox.scenario import ScenarioError, builtin_scenarios, load_scenario


@pytest.mark.parametrize("name", builtin_scenarios())
def test_builtin_scenarios_load(name: str):
    assert load_scenario(name).name


BAD_FILES = {
    "bad YAML": ("github: [unclosed\n", ["not valid YAML"]),
    "not a mapping": ("- a\n- list\n", ["a YAML list, not a mapping"]),
    "wrong type": ("kubernetes:\n  namespaces: 3\n", ["kubernetes.namespaces", "valid list"]),
    "unknown key": ("awx:\n  tempaltes: []\n", ["awx.tempaltes", "Extra inputs are not permitted"]),
    "negative seconds": (
        "kubernetes:\n  pod_timings:\n    pull_seconds: -1\n",
        ["kubernetes.pod_timings.pull_seconds", "greater than or equal to 0", "got -1"],
    ),
    "rate above 1": (
        "faults:\n  github:\n    error_rate: 1.5\n",
        ["faults.github.error_rate", "less than or equal to 1"],
    ),
    "negative rate": ("faults:\n  awx:\n    drop_rate: -0.1\n", ["faults.awx.drop_rate", "greater than or equal to 0"]),
    "negative replicas": (
        "kubernetes:\n  namespaces:\n  - name: n\n    statefulsets:\n    - replicas: -2\n",
        ["kubernetes.namespaces.0.statefulsets.0.replicas", "greater than or equal to 0"],
    ),
    "not an HTTP error status": ("faults:\n  github:\n    error_status: 200\n", ["faults.github.error_status"]),
}


@pytest.mark.parametrize("case", BAD_FILES)
def test_a_malformed_scenario_names_the_file_and_the_field(case: str, tmp_path: Path):
    text, expected = BAD_FILES[case]
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ScenarioError) as raised:
        load_scenario(path)
    message = str(raised.value)
    assert message.startswith(f"scenario {path}: "), message
    for part in expected:
        assert part in message, (part, message)


def test_every_problem_is_listed_and_a_long_value_is_cut(tmp_path: Path):
    path = tmp_path / "bad.yaml"
    path.write_text(f"name: [1]\nseed: {'9' * 5000}x\nfaults:\n  github:\n    slow_rate: 2\n")
    with pytest.raises(ScenarioError) as raised:
        load_scenario(path)
    message = str(raised.value)
    assert "3 problems" in message
    assert {"name:", "seed:", "faults.github.slow_rate:"} <= {line.split()[0] for line in message.splitlines()[1:]}
    assert len(message) < 1000, "a 5,000-character value is not echoed whole"


def test_a_missing_scenario_names_the_builtin_ones():
    with pytest.raises(FileNotFoundError, match="fragalysis"):
        load_scenario("no-such-scenario")
