"""Webhook receivers can subscribe to the topics they act on; the world's controller skips reports."""

from __future__ import annotations

from typing import Any

from mdm_world import BASE, World

from mdm.controller.service import MDM_EVENT_TOPICS
from mdm.server.push import WebhookSubscription, webhook_targets


def test_topic_filter_per_receiver(world: World, make_device: Any) -> None:
    world.mdm.webhook_urls = lambda: [WebhookSubscription(f"{BASE}/hooks/hook", frozenset({"mdm.TokenUpdate"}))]
    device = make_device()  # Authenticate + TokenUpdate
    assert device.connect().status_code == 200  # mdm.Connect: not subscribed
    assert world.mdm.wait_for_outbound(10)
    assert [e["topic"] for e in world.webhook.config["events"]] == ["mdm.TokenUpdate"]


def test_plain_urls_still_get_every_topic() -> None:
    subscriptions = ["http://a/hook", WebhookSubscription("http://b/hook", MDM_EVENT_TOPICS)]
    assert webhook_targets(subscriptions, "mdm.Connect") == ["http://a/hook"]
    assert webhook_targets(subscriptions, "mdm.TokenUpdate") == ["http://a/hook", "http://b/hook"]
    assert webhook_targets(None, "mdm.TokenUpdate") == []
    assert {"mdm.Authenticate", "mdm.TokenUpdate", "mdm.CheckOut"} <= MDM_EVENT_TOPICS
    assert "mdm.Connect" not in MDM_EVENT_TOPICS
