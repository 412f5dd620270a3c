"""Apple's storage policy as a device sees it: what is kept while it is away, and what it gets on return.

One notification per device and topic is kept (the newest), for ``apns-expiration`` (world clock);
``apns-expiration: 0`` means now or never. Every push here goes over HTTP/2 with the certificate; every
delivery is read from the device's stream. "Never delivered" is shown without waiting: after what
should be dropped, a marker push is sent, and the marker is the next thing the stream delivers.
"""

from __future__ import annotations

from apns_h2_clients import PushWorld, mdm_body


def _expiration(apns: PushWorld, seconds_from_now: int) -> tuple[str, str]:
    return ("apns-expiration", str(int(apns.world.clock.timestamp()) + seconds_from_now))


def test_a_push_while_the_stream_is_closed_is_delivered_when_it_connects(apns: PushWorld) -> None:
    token = apns.token()
    with apns.h2() as client:
        sent = client.push(token, mdm_body("while-away"))
    assert sent.status == 200
    with apns.stream(token) as device:
        delivered = device.next_push()
    assert (delivered["payload"], delivered["apns_id"]) == ({"mdm": "while-away"}, sent.headers["apns-id"])
    assert apns.world.apns.stats(token)["delivered"] == 1


def test_two_pushes_while_away_deliver_only_the_newest(apns: PushWorld) -> None:
    token = apns.token()
    with apns.h2() as client:
        assert client.push(token, mdm_body("older")).status == 200
        assert client.push(token, mdm_body("newer")).status == 200
        with apns.stream(token) as device:
            assert device.next_push()["payload"] == {"mdm": "newer"}
            assert client.push(token, mdm_body("marker")).status == 200
            assert device.next_push()["payload"] == {"mdm": "marker"}  # "older" never came
    stats = apns.world.apns.stats(token)
    assert (stats["accepted"], stats["coalesced"], stats["delivered"]) == (3, 1, 2)


def test_expiration_zero_is_dropped_while_away_and_delivered_while_connected(apns: PushWorld) -> None:
    token = apns.token()
    now_or_never = [("apns-expiration", "0")]
    with apns.h2() as client:
        assert client.push(token, mdm_body("while-away"), now_or_never).status == 200  # accepted, as Apple does
        with apns.stream(token) as device:
            assert apns.world.apns.stats(token)["expired"] == 1  # dropped by the stream's first look
            assert client.push(token, mdm_body("while-connected"), now_or_never).status == 200
            assert device.next_push()["payload"] == {"mdm": "while-connected"}
    stats = apns.world.apns.stats(token)
    assert (stats["delivered"], stats["expired"]) == (1, 1)


def test_a_push_whose_expiration_passes_while_the_device_is_away_is_dropped(own_apns: PushWorld) -> None:
    """``apns-expiration`` one minute ahead on the world clock; the clock moves two minutes; the device
    comes back to nothing but what is sent after."""
    apns = own_apns
    token, kept = apns.token(), apns.token()
    with apns.h2() as client:
        assert client.push(token, mdm_body("expires"), [_expiration(apns, 60)]).status == 200
        assert client.push(kept, mdm_body("kept"), [_expiration(apns, 3600)]).status == 200
        apns.world.clock.advance(minutes=2)
        with apns.stream(token) as device, apns.stream(kept) as other:
            assert other.next_push()["payload"] == {"mdm": "kept"}  # not yet expired: delivered
            assert client.push(token, mdm_body("marker")).status == 200
            assert device.next_push()["payload"] == {"mdm": "marker"}
    assert apns.world.apns.stats(token)["expired"] == 1
    assert apns.world.apns.stats()["expired"] == 1
