"""``fragalysis-cd``: the project's command line.

fragalysis-cd demo [--no-wait]     the staging flow end to end against the sandbox, with the Prefect UI
fragalysis-cd serve [--sandbox]    the Prefect server, the served deployments, the webhook receiver, until Ctrl-C
fragalysis-cd report [...]         the delivery report (lead time, failures, restores) of staging and production
fragalysis-cd sandbox [...]        the sandbox (``python -m sandbox``): emulators of GitHub, AWX, registry, k8s
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(
        prog="fragalysis-cd", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("command", choices=["demo", "serve", "report", "sandbox"])
    args = parser.parse_args(argv[:1])
    if args.command == "sandbox":
        # the CLI joins product and sandbox; the product's modules never import sandbox
        from sandbox.cli import main as sandbox_main

        return sandbox_main(argv[1:])
    if args.command == "report":
        from deployments.report import main as report_main

        return report_main(argv[1:])
    if args.command == "serve":
        from deployments.serve import main as serve_main

        return serve_main(argv[1:])
    from deployments.demo import main as demo_main

    return demo_main(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
