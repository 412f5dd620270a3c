"""The fake APNs on its own: Apple's provider API and delivery to simulated devices."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from flask import Response
from werkzeug.test import Client

from mdm.platform.clock import Clock
from mdm.platform.storage import Store
from simulator.apple.apns import http as apns_http
from simulator.apple.apns.service import APNsService, open_apns_store


@pytest.fixture
def apns() -> APNsService:
    clock = Clock(Store(None, []), start=dt.datetime(2026, 3, 1, tzinfo=dt.UTC), frozen=True)
    return APNsService(open_apns_store(None), clock)


@pytest.fixture
def gateway(apns: APNsService) -> Any:
    return Client(apns_http.create_app(apns), Response)
