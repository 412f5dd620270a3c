"""Point a simulated iPhone at *your* MDM server: assign a DEP profile whose url is yours, power it on.

Here "your MDM" is a few lines of WSGI on a real port that records what the device sends and
refuses it; a real one would verify the MachineInfo signature against Apple's device CA, which the
simulated Apple publishes at /apple/activation/device-ca.pem.
"""

import threading

import pytest
from depclient import DEPClient
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response


@pytest.fixture
def my_mdm():
    seen = []

    @Request.application
    def app(request):
        seen.append((request.method, request.path, request.content_type, request.get_data()))
        return Response("not today", status=403)

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}", seen
    server.shutdown()


@pytest.mark.mdmsim(devices=3, seed=5)
def test_device_posts_signed_machine_info_to_my_mdm(mdmsim_server, my_mdm):
    url, seen = my_mdm
    serial = mdmsim_server.serials[0]
    dep = DEPClient(mdmsim_server.dep_url, **mdmsim_server.dep_credentials)
    dep.request("POST", "/profile", json={"profile_name": "Mine", "url": f"{url}/enroll", "devices": [serial]})

    run = mdmsim_server.devices.power_on(serial)

    method, path, content_type, body = seen[0]
    assert (method, path, content_type) == ("POST", "/enroll", "application/pkcs7-signature")
    assert len(body) > 500  # CMS SignedData with the device's Apple-issued identity
    assert run.pane == "Enrollment"  # your server said no: the device waits there, with the reason
    assert any(outcome == "error" and "403" in detail for _, outcome, _, detail in run.transcript)
