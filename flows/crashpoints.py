"""Named points where a test (or ``benchmarks/crash_resume.py``) can SIGKILL the process running a deploy, to
check that a retry of the same flow run carries on from where the world is (exactly one AWX launch per request).

``FRAGALYSIS_CD_CRASH_AT=<point>`` in the environment of the process makes it kill itself, without any clean-up
(no ``finally``, no hook, no state change: what a machine's power cut or the OOM killer does), when the run gets
there. Unset, ``reached`` does nothing. Retry the run in a process without the variable.
"""

from __future__ import annotations

import os
import signal

CRASH_AT = "FRAGALYSIS_CD_CRASH_AT"

POINTS = (
    "source build",  # the source build followed to success
    "stack build",  # the stack build dispatched (orchestrate) or found, followed to success
    "image",  # the image's digest read
    "AWX launch",  # AWX answered the launch POST (the job exists), the answer not yet recorded
    "AWX launched",  # the job recorded in the run's launch record
    "roll-out",  # the first new pod Ready
    "rolled out",  # the roll-out done and the AWX job finished, before the verification
    "verified",  # every pod verified, before the report is published
)


def reached(point: str) -> None:
    """SIGKILL this process if ``FRAGALYSIS_CD_CRASH_AT`` names ``point``."""
    if point not in POINTS:
        raise ValueError(f"unknown crash point {point!r}")
    if os.environ.get(CRASH_AT) == point:
        os.kill(os.getpid(), signal.SIGKILL)
