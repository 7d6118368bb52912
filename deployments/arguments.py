"""Argument types of the ``fragalysis-cd`` subcommands: a bad value is refused by argparse with a clear message
(``error: argument --speed: must be a positive number, not -60``) before anything starts.

``SOURCES`` spells ``blocks.Source`` out, because the commands parse their arguments before Prefect may be imported
(its settings go into the environment first); a test keeps the two equal.
"""

from __future__ import annotations

import argparse
import math
import re

SOURCES = ("frontend", "backend", "stack")
BLOCK_NAME = re.compile(r"[a-z0-9-]{1,256}")
"""A Prefect block's name: lowercase letters, digits and dashes (Prefect's own rule), of a sane length."""


def positive_number(text: str) -> float:
    """A finite number above zero (a speed, a poll interval)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {_shown(text)}") from None
    if not value > 0 or not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a positive number, not {_shown(text)}")
    return value


def positive_integer(text: str) -> int:
    """A whole number above zero (a limit of runs at once)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {_shown(text)}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def port(text: str) -> int:
    """A TCP port, 0 (a free one) to 65535."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {_shown(text)}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 0 to 65535, not {value}")
    return value


def block_names(text: str) -> list[str]:
    """A comma-separated list of StackTarget block names (``staging,production``)."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    bad = [name for name in names if BLOCK_NAME.fullmatch(name) is None]
    if bad:
        raise argparse.ArgumentTypeError(
            f"a block name has lowercase letters, digits and dashes only, not {', '.join(_shown(b) for b in bad)}"
        )
    if not names:
        raise argparse.ArgumentTypeError("name at least one StackTarget block")
    return names


def _shown(text: str, limit: int = 40) -> str:
    value = repr(text)
    return value if len(value) <= limit else value[: limit - 3] + "..."
