"""Our writes to Prefect's API: a busy answer (SQLite's lock, 503) is tried again soon by us, with Prefect's own
client retries (2 s, then 4, ...) off; other answers are not tried again. No test looks at how long anything took."""

from __future__ import annotations

import httpx
import pytest
from prefect.settings import PREFECT_CLIENT_MAX_RETRIES

from flows import prefect_writes
from flows.prefect_writes import write


def _answer(status: int) -> httpx.HTTPStatusError:
    request = httpx.Request("PATCH", "http://prefect.example/api/variables/name/x")
    return httpx.HTTPStatusError(f"{status}", request=request, response=httpx.Response(status, request=request))


def test_busy_answers_are_tried_again_with_prefects_retries_off() -> None:
    seen: list[int] = []

    def action(value: str, *, suffix: str) -> str:
        seen.append(PREFECT_CLIENT_MAX_RETRIES.value())
        if len(seen) < 3:
            raise _answer(503)
        return value + suffix

    assert PREFECT_CLIENT_MAX_RETRIES.value() > 0
    assert write(action, "a", suffix="b") == "ab"
    assert seen == [0, 0, 0]  # three tries, each with Prefect's client making one
    assert PREFECT_CLIENT_MAX_RETRIES.value() > 0  # the settings in force again afterwards


@pytest.mark.parametrize("error", [_answer(404), _answer(409), _answer(500), ValueError("not ours to retry")])
def test_other_failures_are_raised_at_once(error: Exception) -> None:
    tries: list[None] = []

    def action() -> None:
        tries.append(None)
        raise error

    with pytest.raises(type(error)):
        write(action)
    assert len(tries) == 1


def test_a_dropped_connection_is_tried_again() -> None:
    tries: list[None] = []

    def action() -> str:
        tries.append(None)
        if len(tries) == 1:
            raise httpx.RemoteProtocolError("Server disconnected without sending a response.")
        return "written"

    assert write(action) == "written"
    assert len(tries) == 2


def test_it_gives_up_with_the_last_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(prefect_writes, "GIVE_UP_SECONDS", 0.3)
    tries: list[None] = []

    def action() -> None:
        tries.append(None)
        raise _answer(503)

    with pytest.raises(httpx.HTTPStatusError) as raised:
        write(action)
    assert raised.value.response.status_code == 503
    assert len(tries) >= 2
