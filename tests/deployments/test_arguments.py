"""``fragalysis-cd`` subcommands refuse bad arguments in argparse, with a clear message, before starting anything."""

from __future__ import annotations

import pytest

from blocks import Source
from deployments import cli
from deployments.arguments import SOURCES


def test_the_cli_sources_are_blocks_sources():
    assert SOURCES == tuple(Source)


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["demo", "--source", "web"], "argument --source: invalid choice: 'web'"),
        (["demo", "--source", "Frontend"], "invalid choice"),
        (["demo", "--speed", "0"], "argument --speed: must be a positive number, not '0'"),
        (["demo", "--speed", "-60"], "must be a positive number"),
        (["demo", "--speed", "nan"], "must be a positive number"),
        (["demo", "--speed", "inf"], "must be a positive number"),
        (["demo", "--port", "70000"], "argument --port: a port is 0 to 65535, not 70000"),
        (["serve", "--speed", "x" * 5000], "not a number: 'xxx"),
        (["serve", "--poll", "-1"], "argument --poll: must be a positive number"),
        (["serve", "--limit", "0"], "argument --limit: must be at least 1, not 0"),
        (["serve", "--receiver-port", "-1"], "a port is 0 to 65535"),
        (["serve", "--targets", "staging,Prod/../x"], "lowercase letters, digits and dashes only, not 'Prod/../x'"),
        (["serve", "--targets", " , "], "name at least one StackTarget block"),
        (["serve", "--targets", "s" * 300], "lowercase letters, digits and dashes only"),
        (["deploy"], "argument command: invalid choice: 'deploy'"),
    ],
)
def test_bad_arguments_are_refused_with_a_clear_message(
    argv: list[str], expected: str, capsys: pytest.CaptureFixture[str]
):
    with pytest.raises(SystemExit) as exited:
        cli.main(argv)
    assert exited.value.code == 2
    error = capsys.readouterr().err
    assert expected in error, error
    assert len(error.splitlines()[-1]) < 300, "a long value is not echoed whole"


def test_good_arguments_parse():
    from deployments.demo import build_parser as demo_parser
    from deployments.serve import build_parser as serve_parser

    demo = demo_parser().parse_args(["--source", "stack", "--speed", "120", "--port", "0"])
    assert (demo.source, demo.speed, demo.port) == ("stack", 120.0, 0)
    serve = serve_parser().parse_args(["--targets", "staging, dev-alice-1", "--limit", "3", "--poll", "0.5"])
    assert (serve.targets, serve.limit, serve.poll) == (["staging", "dev-alice-1"], 3, 0.5)
    assert serve_parser().parse_args([]).targets == ["staging", "production"]
