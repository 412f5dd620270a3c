"""A DEP client built on requests, tested against mdmsim: two lines give it Apple."""

import pytest
from depclient import DEPClient


@pytest.mark.mdmsim(devices=250, seed=1)
def test_my_client_fetches_every_device(mdmsim_server):
    client = DEPClient(mdmsim_server.dep_url, **mdmsim_server.dep_credentials)

    devices, _ = client.fetch_all(limit=100)

    assert len(devices) == 250
    assert client.account()["server_name"] == "mdmsim"
    # Apple's traffic, as a test can count it: one session, three pages... and one account call.
    traffic = mdmsim_server.traffic()["dep"]
    assert traffic["post_server_devices"]["200"] == 3
    assert traffic["get_session"]["200"] == client.session_calls == 1
