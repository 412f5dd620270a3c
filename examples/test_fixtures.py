"""Use mdmsim's fixtures/ in your own suite: Apple's DEP schemas, depsim configs, sample files.

``mdmsim_fixtures`` is the fixtures/ folder of the mdmsim clone you installed from (or $MDMSIM_FIXTURES).
"""

import json

import pytest
from depclient import DEPClient, DEPError
from jsonschema import Draft202012Validator
from referencing import Registry, Resource


@pytest.fixture(scope="session")
def dep_schema(mdmsim_fixtures):
    schemas = mdmsim_fixtures / "dep" / "schemas"
    registry = Registry().with_resources(
        (path.name, Resource.from_contents(json.loads(path.read_text()))) for path in schemas.glob("*.json")
    )

    def validator(name: str) -> Draft202012Validator:
        return Draft202012Validator(registry.contents(f"{name}.json"), registry=registry)

    return validator


@pytest.mark.mdmsim(devices=30, seed=2)
def test_every_page_my_client_reads_is_what_apple_documents(mdmsim_server, dep_schema):
    client = DEPClient(mdmsim_server.dep_url, **mdmsim_server.dep_credentials)
    dep_schema("AccountDetail").validate(client.account())
    page = client.request("POST", "/server/devices", json={"limit": 10})
    dep_schema("FetchDeviceResponse").validate(page)
    assert len(page["devices"]) == 10 and page["more_to_follow"] is True


@pytest.mark.mdmsim(devices=5, seed=3)
def test_my_client_survives_every_failure_depsim_can_script(mdmsim_server, mdmsim_fixtures):
    config = json.loads((mdmsim_fixtures / "depsim" / "every-failure.json").read_text())
    mdmsim_server.world.apply_depsim_config({"get_account_responses": config["get_account_responses"]})
    client = DEPClient(mdmsim_server.dep_url, **mdmsim_server.dep_credentials)
    # the queue is 401, 403, 405: the client re-authenticates after the 401 by itself, then reports the others
    statuses = []
    for _ in range(2):
        with pytest.raises(DEPError) as failure:
            client.account()
        statuses.append(failure.value.status)
    assert statuses == [403, 405]
    assert client.account()["server_name"] == "mdmsim"  # the queue is spent: Apple answers again
