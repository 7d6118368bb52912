"""The sandbox process itself: start/stop, state files, control endpoints, HTTP faults and the request log."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from sandbox.runtime import Sandbox


def test_writes_kubeconfig_and_endpoints(sandbox: Sandbox, tmp_path):
    kubeconfig, endpoints = sandbox.write_state(tmp_path)
    data = json.loads(endpoints.read_text())
    assert set(data) >= {"github", "awx", "registry", "kubernetes"}
    for service in ("github", "awx", "registry", "kubernetes"):
        assert data[service]["url"] == sandbox.urls[service]
    assert data["kubernetes"]["kubeconfig"] == str(kubeconfig.resolve())
    assert oct(endpoints.stat().st_mode & 0o777) == "0o600"
    assert sandbox.urls["kubernetes"] in kubeconfig.read_text()


def test_faults_can_be_changed_over_http(sandbox: Sandbox):
    url = sandbox.urls["awx"]
    response = httpx.patch(f"{url}/_sandbox/faults", json={"registry": {"error_rate": 0.25}})
    assert response.status_code == 200
    assert response.json()["registry"]["error_rate"] == 0.25
    assert sandbox.runtime.faults.registry.error_rate == 0.25
    bad = httpx.patch(f"{url}/_sandbox/faults", json={"registry": {"error_rate": "lots"}})
    assert bad.status_code == 400


@pytest.mark.parametrize("service", ["github", "awx", "registry", "kubernetes"])
def test_injected_errors_rate_limits_and_drops(sandbox: Sandbox, service: str):
    url = sandbox.urls[service]
    sandbox.set_faults(**{service: {"fail_next": 1, "error_status": 502}})
    assert httpx.get(f"{url}/anything", verify=sandbox.verify).status_code == 502
    sandbox.set_faults(**{service: {"rate_limit_rate": 1.0, "retry_after_seconds": 7}})
    limited = httpx.get(f"{url}/anything", verify=sandbox.verify)
    assert limited.status_code == 429
    assert limited.headers["retry-after"] == "7"
    sandbox.set_faults(**{service: {"rate_limit_rate": 0.0, "drop_rate": 1.0}})
    with pytest.raises(httpx.RemoteProtocolError):
        httpx.get(f"{url}/anything", verify=sandbox.verify)
    # the server logs a dropped request just after it closed the connection: give it a moment
    deadline = time.monotonic() + 5
    records = []
    while len(records) < 3 and time.monotonic() < deadline:
        records = [r for r in sandbox.requests(service) if r.path == "/anything"]
        time.sleep(0.01)
    assert [r.status for r in records] == [502, 429, 0]


def test_slow_answers(sandbox: Sandbox):
    sandbox.set_faults(github={"slow_rate": 1.0, "slow_seconds": 0.5})
    with pytest.raises(httpx.ReadTimeout):
        httpx.get(f"{sandbox.urls['github']}/anything", timeout=0.2)


def test_a_lost_answer_still_acts(sandbox: Sandbox):
    """The request reaches the service (an AWX launch creates its job) but the client never gets the answer."""
    awx = sandbox.endpoints()["awx"]
    headers = {"Authorization": f"Bearer {awx['token']}"}
    api = f"{awx['url']}{awx['api_path']}"
    template = httpx.get(f"{api}job_templates/", params={"name": "Staging Fragalysis Stack"}, headers=headers)
    template_id = template.json()["results"][0]["id"]
    sandbox.set_faults(awx={"lose_answer_rate": 1.0})
    with pytest.raises(httpx.RemoteProtocolError):
        httpx.post(f"{api}job_templates/{template_id}/launch/", json={}, headers=headers)
    assert [job["job_template"] for job in sandbox.call(sandbox.awx.jobs)] == [template_id]


def test_developer_stacks_scenario(make_sandbox):
    from sandbox.scenario import load_scenario

    scenario = load_scenario("developers", developer_stacks={"count": 3})
    sandbox = make_sandbox(scenario, speed=600)
    namespaces = sandbox.call(sandbox.kubernetes.namespaces)
    users = ["dev00", "dev01", "dev02"]
    for user in users:
        assert f"stack-{user}-default" in namespaces
        assert sandbox.call(sandbox.kubernetes.statefulset, f"stack-{user}-default", "stack") is not None
    names = [t["name"] for t in sandbox.call(sandbox.awx.template_list)]
    assert names == [f"User ({user}) Developer Fragalysis Stack (Version Change)" for user in users]


def test_connections_answer_without_waiting_for_a_delayed_ack():
    """The listening sockets say TCP, so asyncio sets TCP_NODELAY on every connection it accepts (it only does for a
    socket whose protocol is IPPROTO_TCP); without it, an answer written as headers then body waited 40 ms for the
    client's delayed ACK after a connection's first request."""
    import asyncio
    import socket

    from sandbox.runtime import _bind

    async def accepted_nodelay() -> int:
        listening = _bind("127.0.0.1", 0)
        seen: asyncio.Future[int] = asyncio.get_running_loop().create_future()

        async def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            seen.set_result(writer.get_extra_info("socket").getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            writer.close()

        server = await asyncio.start_server(on_connection, sock=listening)
        async with server:
            _, writer = await asyncio.open_connection(*listening.getsockname()[:2])
            flag = await asyncio.wait_for(seen, 10)
            writer.close()
            await writer.wait_closed()
        return flag

    assert asyncio.run(accepted_nodelay()) != 0
