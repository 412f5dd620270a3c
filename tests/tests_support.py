"""Admin steps several world-level tests share (a uniquely named module: tests import it directly)."""

from __future__ import annotations

from simulator import World

GRAPH = "/intune/deviceManagement/depOnboardingSettings"


def onboard(world: World) -> str:
    """What an admin does first: a token in the controller, its key at Apple, the .p7m back."""
    http = world.http
    setting = http.post(GRAPH, json={"tokenName": "Contoso"}).json()["id"]
    pem = http.post(f"{GRAPH}/{setting}/generateEncryptionPublicKey").json()["value"]
    server = world.default_server_uuid
    assert http.post(f"/apple/portal/api/servers/{server}/public-key", content=pem).status_code in (200, 201, 204)
    p7m = http.get(f"/apple/portal/api/servers/{server}/token.p7m")
    assert p7m.status_code == 200
    uploaded = http.post(f"{GRAPH}/{setting}/uploadDepToken", json={"appleId": "admin@contoso.com", "depToken": p7m.text})
    assert uploaded.status_code == 204, uploaded.text
    return setting
