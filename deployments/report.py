"""``fragalysis-cd report``: run the delivery report flow for each environment against the Prefect server the
environment points at (``PREFECT_API_URL``), print its summary and where its page is in the UI.

    fragalysis-cd report                                   # staging and production, the last 30 days
    fragalysis-cd report --environment production --days 90
"""

from __future__ import annotations

import argparse


def artifact_url(artifact_id: str) -> str:
    """The UI page of an artifact. (The page of its key, ``/artifacts/key/<key>``, showed only the description in
    headless Chromium with Prefect 3.9.1's UI; the artifact's own page shows the markdown and its pictures.)"""
    from prefect.settings import PREFECT_UI_URL

    return f"{PREFECT_UI_URL.value() or 'http://127.0.0.1:4200'}/artifacts/artifact/{artifact_id}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fragalysis-cd report", description=__doc__)
    parser.add_argument(
        "--environment",
        action="append",
        help="an environment to report on (repeat for several; default: staging and production)",
    )
    parser.add_argument("--days", type=int, default=30, help="the window, ending now (default 30)")
    args = parser.parse_args(argv)
    if args.days < 1:
        parser.error(f"--days must be at least 1, not {args.days}")
    from flows.delivery_report import delivery_report

    for environment in args.environment or ["staging", "production"]:
        result = delivery_report(environment=environment, days=args.days)
        print(result["summary"])
        print(f"  {artifact_url(result['artifact_id'])}", flush=True)
    return 0
