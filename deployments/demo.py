"""``fragalysis-cd demo``: for now, starts the sandbox and says so (the staging flow arrives with issue 4)."""

from __future__ import annotations

import argparse


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="fragalysis-cd demo")
    parser.add_argument("--no-wait", action="store_true", help="exit once the demo has run instead of waiting")
    parser.add_argument("--speed", type=float, default=60.0)
    args = parser.parse_args(argv)
    from sandbox.cli import main as sandbox_main

    print("The staging flow is not built yet (issue 4): starting the sandbox only.")
    if args.no_wait:
        return 0
    return sandbox_main(["--speed", str(args.speed)])
