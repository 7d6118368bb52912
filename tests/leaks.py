"""Where an asyncio transport left open was made.

A transport still open when its event loop goes away is finalised by the garbage collector later, in whatever test
runs then, and Python's ResourceWarning names only its socket. Installed by the tests' conftest, this remembers for
each selector transport the thread, the addresses and the stack that made it, and puts them into that warning, so
the failure names the code that leaked rather than the test that happened to be running.
"""

from __future__ import annotations

import asyncio.selector_events
import threading
import traceback
import warnings
from typing import Any

_Transport: Any = asyncio.selector_events._SelectorTransport
_original_init = _Transport.__init__


def _init(self: Any, loop: Any, sock: Any, protocol: Any, *args: Any, **kwargs: Any) -> None:
    _original_init(self, loop, sock, protocol, *args, **kwargs)
    stack = traceback.StackSummary.extract(traceback.walk_stack(None), limit=40, lookup_lines=False)
    self._made_by = (threading.current_thread().name, type(protocol).__qualname__, stack)


def _del(self: Any, _warn: Any = warnings.warn) -> None:
    if self._sock is None:
        return
    thread, protocol, stack = getattr(self, "_made_by", ("?", "?", traceback.StackSummary()))
    frames = "".join(f"    {frame.filename}:{frame.lineno} in {frame.name}\n" for frame in reversed(stack))
    sock, self._sock = self._sock, None
    sock.close()  # closed before warning: a warning turned into an error must not leave the socket to warn again
    _warn(
        f"unclosed transport made in thread {thread!r} for {protocol}, local {self._extra.get('sockname')} "
        f"peer {self._extra.get('peername')}, at (innermost last):\n{frames}",
        ResourceWarning,
        source=self,
    )


def install() -> None:
    """Record every selector transport's origin from now on (idempotent)."""
    if _Transport.__init__ is not _init:
        _Transport.__init__ = _init
        _Transport.__del__ = _del
