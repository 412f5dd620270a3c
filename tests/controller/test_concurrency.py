"""One sync in flight: enforced by the store, whatever the number of threads, sockets or processes."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
from controller_stack import build_stack
from werkzeug.serving import make_server

from mdm.controller import http as controller_http
from mdm.controller.service import GraphError


def test_hundred_concurrent_requests_over_sockets_start_exactly_one_sync() -> None:
    stack = build_stack(background=True)
    sid = stack.onboard()
    before = stack.tap.total()
    stack.tap.gate = threading.Event()  # hold Apple's replies so the sync is certainly still running
    server = make_server("127.0.0.1", 0, stack.wsgi, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_port}/intune/deviceManagement/depOnboardingSettings/{sid}"
    try:
        start = threading.Barrier(100)

        def request(_: int) -> httpx.Response:
            with httpx.Client(timeout=30) as client:
                start.wait()
                return client.post(f"{url}/syncWithAppleDeviceEnrollmentProgram")

        with ThreadPoolExecutor(max_workers=100) as pool:
            replies = list(pool.map(request, range(100)))
        statuses = sorted(r.status_code for r in replies)
        assert statuses.count(204) == 1
        assert statuses.count(409) == 99
        refused = [r for r in replies if r.status_code == 409]
        assert {r.headers["Retry-After"] for r in refused} == {"600"}  # frozen clock: the whole window
        assert {r.json()["error"]["code"] for r in refused} == {"syncInProgress"}
        assert stack.setting(sid)["syncStatus"] == "running"
    finally:
        stack.tap.gate.set()
        server.shutdown()
        server.server_close()
    setting = stack.controller.wait_for_sync(sid, timeout_s=20)
    assert (setting["syncStatus"], setting["syncedDeviceCount"]) == ("idle", 500)
    # Apple saw one sync: a single fetch of 500 devices (one page), and no other call.
    calls = stack.tap.log[before:]
    assert calls == ["POST /server/devices"]


def test_two_controllers_on_one_file_store_claim_once(tmp_path) -> None:
    """Two "worker processes" (separate controllers and connections) racing for the same token."""
    stack = build_stack(devices=20, store_path=tmp_path / "controller.db")
    stack.controller = stack.make_controller()
    sid = stack.onboard()
    workers = [stack.make_controller(background=True) for _ in range(2)]
    stack.tap.gate = threading.Event()
    outcomes: list[str] = []
    barrier = threading.Barrier(8)

    def attempt(index: int) -> None:
        barrier.wait()
        try:
            workers[index % 2].request_sync(sid)
            outcomes.append("started")
        except GraphError as exc:
            outcomes.append(str(exc.status))

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stack.tap.gate.set()
    for w in workers:
        w.join()
    assert sorted(outcomes) == ["409"] * 7 + ["started"]
    assert workers[0].get_setting(sid)["syncedDeviceCount"] == 20


def test_app_factory_accepts_a_before_hook() -> None:
    stack = build_stack(devices=0)
    seen: list[tuple[str, str]] = []
    app = controller_http.create_app(stack.controller, before=lambda party, name: seen.append((party, name)))
    app.test_client().get("/deviceManagement/depOnboardingSettings")
    assert seen == [("controller", "get_deviceManagement_depOnboardingSettings")]
