"""The pure parts of ``benchmarks/many_stacks.py``, from numbers written by hand: percentiles, the overhead of a
deploy, a round's summary, the knee, the process groups memory is summed over, and the developers' scenario.
Nothing here starts a server, a sandbox, PostgreSQL or Redis."""

from __future__ import annotations

import pytest

from benchmarks.many_stacks import developers_scenario, knee, overhead, percentile, summarise
from benchmarks.setups import trees


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [
        ([4.0], 50, 4.0),
        ([4.0], 95, 4.0),
        ([3.0, 1.0, 2.0], 50, 2.0),
        ([1.0, 2.0, 3.0, 4.0], 50, 2.5),
        # rank (20 - 1) * 0.95 = 18.05: between the 19th (19) and the 20th (20) value
        ([float(v) for v in range(20, 0, -1)], 95, 19.05),
        ([1.0, 2.0], 100, 2.0),
        ([1.0, 2.0], 0, 1.0),
    ],
)
def test_percentile_interpolates_between_the_closest_ranks(values: list[float], q: float, expected: float) -> None:
    assert percentile(values, q) == pytest.approx(expected)


def test_percentile_of_nothing_is_refused() -> None:
    with pytest.raises(ValueError, match="no values"):
        percentile([], 50)


@pytest.mark.parametrize(
    ("running", "end", "build_completed", "awx_span", "expected"),
    [
        # the flow was Running before its build ended: counted from the build's end
        (100.0, 200.0, 130.0, 60.0, 10.0),
        # the flow started after its build had ended (a late start): counted from its own start
        (150.0, 220.0, 130.0, 60.0, 10.0),
        # a pipeline that adds nothing
        (100.0, 190.0, 130.0, 60.0, 0.0),
    ],
)
def test_overhead_is_the_flows_time_past_the_emulated_critical_path(
    running: float, end: float, build_completed: float, awx_span: float, expected: float
) -> None:
    assert overhead(running, end, build_completed, awx_span) == pytest.approx(expected)


def test_a_round_summary_counts_errors_and_takes_percentiles_of_the_measured_runs_only() -> None:
    runs = [
        {"state": "COMPLETED", "verified": True, "overhead_s": 2.0, "start_delay_s": 4.0},
        {"state": "COMPLETED", "verified": True, "overhead_s": 4.0, "start_delay_s": 6.0},
        {"state": "COMPLETED", "verified": False, "overhead_s": 6.0, "start_delay_s": 8.0},
        {"state": "FAILED", "verified": False, "overhead_s": None, "start_delay_s": 5.0},
    ]
    summary = summarise(runs)
    assert (summary["runs"], summary["completed"], summary["verified"], summary["errors"]) == (4, 3, 2, 1)
    assert summary["overhead_p50_s"] == pytest.approx(4.0)
    assert summary["overhead_p95_s"] == pytest.approx(5.8)
    assert summary["start_delay_p50_s"] == pytest.approx(5.5)


def test_a_round_without_any_measured_run_has_no_percentiles() -> None:
    summary = summarise([{"state": "CRASHED", "verified": False, "overhead_s": None, "start_delay_s": None}])
    assert (summary["errors"], summary["overhead_p95_s"], summary["start_delay_p95_s"]) == (1, None, None)


def row(p95: float | None, errors: int = 0) -> dict[str, object]:
    return {"overhead_p95_s": p95, "errors": errors}


@pytest.mark.parametrize(
    ("rounds", "expected"),
    [
        ({1: row(2.0), 20: row(3.9), 50: row(4.1)}, 50),  # 4.1 > 2 x 2.0
        ({1: row(2.0), 20: row(4.0), 50: row(3.0)}, None),  # exactly twice is not past it
        ({1: row(2.0), 20: row(2.5, errors=1), 50: row(9.0)}, 20),  # an error counts first
        ({1: row(2.0), 20: row(None, errors=20)}, 20),  # nothing measured: every run failed
        ({20: row(2.0), 50: row(5.0)}, 50),  # the smallest K stands for one stack
        ({}, None),
    ],
)
def test_the_knee_is_the_first_k_past_twice_the_one_stack_p95_or_with_an_error(
    rounds: dict[int, dict[str, object]], expected: int | None
) -> None:
    assert knee(rounds) == expected


def test_a_memory_group_is_the_trees_under_its_roots_without_the_subtrees_left_out() -> None:
    # serve (1) started the Prefect server (2, with a child 3) and the runner (4), which runs two flows (5, 6)
    children = {1: [2, 4], 2: [3], 4: [5, 6]}
    commands = {1: "fragalysis-cd serve", 2: "prefect server start", 3: "uvicorn", 4: "python -m deployments.serving"}
    commands |= {5: "python -m prefect.engine", 6: "python -m prefect.engine"}
    server = trees(lambda: [1], leave_out=lambda command: "deployments.serving" in command)
    assert sorted(server(commands, children)) == [1, 2, 3]
    assert sorted(trees(lambda: [4])(commands, children)) == [4, 5, 6]
    del commands[6]  # a process gone between the two reads of /proc
    assert sorted(trees(lambda: [4, 99])(commands, children)) == [4, 5]


def test_each_developer_builds_and_runs_their_own_image() -> None:
    scenario = developers_scenario(3)
    for name in ("dev00", "dev01", "dev02"):
        image = f"{name}/fragalysis-stack"
        repository = scenario.repository(image)
        assert repository is not None
        assert [w.image.name for w in repository.workflows if w.image] == [image]
        template = scenario.template(f"User ({name}) Developer Fragalysis Stack (Version Change)")
        assert (template.image, template.namespace) == (image, f"stack-{name}-default")
        [namespace] = [ns for ns in scenario.kubernetes.namespaces if ns.name == f"stack-{name}-default"]
        assert [s.image for s in namespace.statefulsets] == [f"{image}:latest"]
        assert image in {i.name for i in scenario.registry.images}
    # the flows dispatch and launch: the repositories' own chaining is off
    assert (scenario.github.trigger_downstream, scenario.github.trigger_awx) == (False, False)
