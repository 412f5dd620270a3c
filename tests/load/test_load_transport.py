"""The load client (httpcore over asyncio protocols) against a raw HTTP/1.1 server on a real socket."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from simulator.load.drivers import run_coroutine
from simulator.load.transport import LoadClient, LoadHTTPError

Handler = Callable[[bytes, asyncio.StreamWriter], Awaitable[bool]]  # True: keep the connection open


def _reply(body: bytes, *headers: str, status: str = "200 OK") -> bytes:
    head = [f"HTTP/1.1 {status}", f"Content-Length: {len(body)}", *headers]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


async def _serve(handler: Handler, scenario: Callable[[str], Awaitable[object]],
                 closed: asyncio.Queue[None] | None = None) -> tuple[object, dict[str, int]]:
    """Run ``scenario(base_url)`` against a server that calls ``handler`` once per request head;
    ``closed`` gets an item each time the server has closed a connection."""
    seen = {"connections": 0, "requests": 0}

    async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen["connections"] += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                await reader.readexactly(length)
                seen["requests"] += 1
                if not await handler(head, writer):
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
            await writer.wait_closed()
            if closed is not None:
                closed.put_nowait(None)

    server = await asyncio.start_server(connection, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        return await scenario(f"http://127.0.0.1:{port}"), seen
    finally:
        server.close()


def test_keeps_connections_alive_and_merges_repeated_headers() -> None:
    async def handler(head: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(_reply(head.split(b"\r\n")[0], "X-Tag: a", "x-tag: b", "Content-Type: text/plain"))
        return True

    async def scenario(base: str) -> list[object]:
        client = LoadClient(max_connections=1)
        try:
            first = await client.post(f"{base}/one", content=b"payload", headers={"X-Device": "1"})
            second = await client.get(f"{base}/a path/é?q=a b")
            return [first, second]
        finally:
            await client.aclose()

    (first, second), seen = run_coroutine(_serve(handler, scenario))  # type: ignore[misc]
    assert first.status_code == 200 and first.content == b"POST /one HTTP/1.1"
    assert first.headers["x-tag"] == "a, b" and first.headers["content-type"] == "text/plain"
    assert second.content == b"GET /a%20path/%C3%A9?q=a%20b HTTP/1.1"  # what HTTP allows in a target
    assert seen == {"connections": 1, "requests": 2}


def test_a_connection_the_server_closed_while_idle_is_not_reused() -> None:
    async def handler(head: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(_reply(b"ok"))  # no "Connection: close", yet the server hangs up
        await writer.drain()
        return False

    async def scenario(base: str) -> list[int]:
        client = LoadClient(max_connections=1)
        try:
            codes = []
            for _ in range(3):
                codes.append((await client.get(f"{base}/")).status_code)
                await closed.get()  # the server hung up; one loop turn delivers its FIN to the client
                await asyncio.sleep(0)
            return codes
        finally:
            await client.aclose()

    async def main() -> tuple[object, dict[str, int]]:
        return await _serve(handler, scenario, closed)

    closed: asyncio.Queue[None] = asyncio.Queue()
    codes, seen = run_coroutine(main())
    assert codes == [200, 200, 200]
    assert seen == {"connections": 3, "requests": 3}


def test_bodies_are_bounded_and_silence_times_out() -> None:
    async def handler(head: bytes, writer: asyncio.StreamWriter) -> bool:
        if b"/big" in head:
            writer.write(_reply(b"x" * 5000))
        return True  # /silent: never answers

    async def scenario(base: str) -> list[LoadHTTPError]:
        client = LoadClient(max_response_bytes=4096)
        errors = []
        try:
            for path, timeout in (("/big", 5.0), ("/silent", 0.2)):
                with pytest.raises(LoadHTTPError) as caught:
                    await client.get(f"{base}{path}", timeout=timeout)
                errors.append(caught.value)
            return errors
        finally:
            await client.aclose()

    (big, silent), _ = run_coroutine(_serve(handler, scenario))  # type: ignore[misc]
    assert "over 4096 bytes" in str(big) and not big.timeout
    assert silent.timeout
