""""My MDM's DEP sync handles EXPIRED_CURSOR": move the world clock instead of waiting a week."""

import pytest
from depclient import DEPClient, DEPError


class MyDEPSync:
    """Your MDM's sync loop: fetch once, then sync with the cursor; start over when Apple says so."""

    def __init__(self, client: DEPClient) -> None:
        self.client = client
        self.cursor: str | None = None
        self.known: set[str] = set()
        self.full_fetches = 0

    def run(self) -> None:
        if self.cursor is None:
            return self._full()
        try:
            for page in self.client.sync(self.cursor):
                for device in page["devices"]:
                    (self.known.discard if device["op_type"] == "deleted" else self.known.add)(device["serial_number"])
                self.cursor = page["cursor"]
        except DEPError as error:
            if "EXPIRED_CURSOR" in error.body or "INVALID_CURSOR" in error.body:
                return self._full()
            raise

    def _full(self) -> None:
        devices, self.cursor = self.client.fetch_all()
        self.known = {d["serial_number"] for d in devices}
        self.full_fetches += 1


@pytest.mark.mdmsim(devices=30)
def test_sync_recovers_from_an_expired_cursor(mdmsim_server):
    sync = MyDEPSync(DEPClient(mdmsim_server.dep_url, **mdmsim_server.dep_credentials))
    sync.run()
    assert len(sync.known) == 30

    mdmsim_server.world.portal.generate(5, server_uuid=mdmsim_server.default_server_uuid)
    mdmsim_server.clock.advance(days=8)  # the cursor is now older than Apple's 7 days
    sync.run()

    assert sync.full_fetches == 2
    assert len(sync.known) == 35
    assert mdmsim_server.traffic()["dep"]["post_devices_sync"]["400"] == 1
