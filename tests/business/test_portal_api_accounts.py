"""API accounts in the portal (Preferences → API), by JSON and by page: an admin creates one, downloads
its private key once, uses it, and revokes it."""

from __future__ import annotations

import re

from business_support import client_for
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from simulator.world import World

API = "/apple/portal/api/api-accounts"


def test_create_download_once_use_and_revoke_by_json(world: World) -> None:
    created = world.http.post(API, json={"name": "Jamf sync"})
    assert created.status_code == 201
    account = created.json()
    assert re.fullmatch(r"BUSINESSAPI\.[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}", account["client_id"])
    assert re.fullmatch(r"[0-9a-f-]{36}", account["key_id"]) and account["private_key_available"] is True
    assert account["client_id"] in [a["client_id"] for a in world.http.get(API).json()]

    download = world.http.get(f"{API}/{account['client_id']}/private-key")
    assert download.status_code == 200 and download.headers["content-type"].startswith("application/x-pem-file")
    assert 'filename="Jamf_sync_private_key.pem"' in download.headers["content-disposition"]
    key = load_pem_private_key(download.content, None)
    assert isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp256r1"
    again = world.http.get(f"{API}/{account['client_id']}/private-key")
    assert again.status_code == 410 and "downloaded already" in again.json()["error"]
    assert world.http.get(f"{API}/{account['client_id']}").json()["private_key_available"] is False

    client = client_for(world, client_id=account["client_id"], key_id=account["key_id"], private_key_pem=download.text)
    assert client.token_request().status_code == 200

    revoked = world.http.post(f"{API}/{account['client_id']}/revoke")
    assert revoked.status_code == 200 and revoked.json()["status"] == "REVOKED"
    assert client.token_request().json()["error"] == "invalid_client"


def test_refusals(world: World) -> None:
    assert world.http.post(API, json={}).status_code == 400
    assert world.http.post(API, json={"name": "x" * 101}).status_code == 400
    assert world.http.get(f"{API}/BUSINESSAPI.nope").status_code == 404
    assert world.http.post(f"{API}/BUSINESSAPI.nope/revoke").status_code == 404
    for i in range(49):  # the world made one; an organisation has at most 50
        assert world.http.post(API, json={"name": f"account {i}"}).status_code == 201
    full = world.http.post(API, json={"name": "one too many"})
    assert full.status_code == 400 and "at most 50" in full.json()["error"]
    first = world.http.get(API).json()[1]["client_id"]
    world.http.post(f"{API}/{first}/revoke")
    assert world.http.post(API, json={"name": "after a revocation"}).status_code == 201


def test_the_api_page_creates_offers_the_key_once_and_revokes(world: World) -> None:
    page = world.http.get("/apple/portal/api-accounts")
    assert page.status_code == 200 and "Create API Account" in page.text
    assert world.business_credentials["client_id"] in page.text
    made = world.http.post("/apple/portal/api-accounts", data={"name": "Kandji"})
    assert made.status_code == 302
    listing = world.http.get(made.headers["location"]).text
    assert "Download its private key now: it can be downloaded only once." in listing
    link = re.search(r'href="([^"]+/private-key)"[^>]*aria-label="Download private key for Kandji"', listing)
    assert link is not None
    assert world.http.get(link.group(1)).text.startswith("-----BEGIN PRIVATE KEY-----")
    second_try = world.http.get(link.group(1))
    assert second_try.status_code == 410 and "downloaded already" in second_try.text
    assert 'aria-label="Download private key for Kandji"' not in world.http.get("/apple/portal/api-accounts").text
    client_id = world.portal.api_accounts.list()[-1]["client_id"]
    revoked = world.http.post(f"/apple/portal/api-accounts/{client_id}/revoke")
    assert revoked.status_code == 302
    assert world.portal.api_accounts.get(client_id)["status"] == "REVOKED"
    assert world.http.post("/apple/portal/api-accounts", data={"name": ""}).status_code == 400
