"""Hostile OpenAI-compatible endpoints on loopback, for testing the client where HTTP breaks.

Each `HostileServer` is a raw asyncio TCP server on 127.0.0.1 (a free port picked by the OS),
running its own event loop in a daemon thread, so a server that trickles or stalls never shares a
loop with the client under test. It reads each request (headers and a Content-Length body), keeps
what a test wants to check (request count, the Authorization headers it saw, connections still
open), then answers with one `Behaviour`: a coroutine that writes whatever bytes it likes.

    with HostileServer(html_200()) as server:
        client = make_client(server.base_url)

The behaviours cover what gateways and broken servers really do: garbage bytes, a non-HTTP
protocol, HTML with status 200, JSON of the wrong shape, headers or a body trickled one byte at a
time, an Authorization header echoed in an error body, a connection closed mid-body, a status
answered forever. Nothing here touches anything but 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

LOOPBACK = "127.0.0.1"
_HEADER_LIMIT = 64 * 1024


@dataclass
class Request:
    """What the server read of one request."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def authorization(self) -> str:
        return self.headers.get("authorization", "")


Behaviour = Callable[[Request, asyncio.StreamWriter], Awaitable[None]]
"""Answers one request by writing to the connection; the server closes it afterwards."""


@dataclass
class _Stats:
    requests: int = 0
    open_connections: int = 0
    authorizations: list[str] = field(default_factory=list)


class HostileServer:
    """One behaviour served on a loopback port until `stop()` (or the `with` block ends)."""

    def __init__(self, behaviour: Behaviour) -> None:
        self._behaviour = behaviour
        self._stats = _Stats()
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="hostile-server", daemon=True)
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        self.port = 0

    # ------------------------------------------------------------ lifecycle

    def start(self) -> HostileServer:
        self._thread.start()
        started = asyncio.run_coroutine_threadsafe(self._listen(), self._loop)
        self.port = started.result(timeout=10)
        return self

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(self._close(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    def __enter__(self) -> HostileServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()

    async def _listen(self) -> int:
        self._server = await asyncio.start_server(self._serve, LOOPBACK, 0, limit=_HEADER_LIMIT)
        return int(self._server.sockets[0].getsockname()[1])

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._handlers):
            task.cancel()
        if self._handlers:
            await asyncio.gather(*self._handlers, return_exceptions=True)

    # ------------------------------------------------------------ what tests read

    @property
    def base_url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}/v1"

    @property
    def requests(self) -> int:
        """Requests read so far (a retried call counts each attempt)."""
        with self._lock:
            return self._stats.requests

    @property
    def open_connections(self) -> int:
        """Connections the client has not closed yet."""
        with self._lock:
            return self._stats.open_connections

    @property
    def authorizations(self) -> list[str]:
        with self._lock:
            return list(self._stats.authorizations)

    # ------------------------------------------------------------ serving

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        with self._lock:
            self._stats.open_connections += 1
        try:
            while True:  # keep-alive: a client may reuse the connection for its retry
                request = await _read_request(reader)
                if request is None:
                    break
                with self._lock:
                    self._stats.requests += 1
                    self._stats.authorizations.append(request.authorization)
                await self._behaviour(request, writer)
                if writer.is_closing():
                    break
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            pass  # the client hung up, or sent what this server does not need to understand
        except asyncio.CancelledError:
            pass  # the server is stopping; ending quietly keeps asyncio from logging the handler
        finally:
            with self._lock:
                self._stats.open_connections -= 1
            writer.close()
            self._handlers.discard(task)


async def _read_request(reader: asyncio.StreamReader) -> Request | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None  # the client closed the connection between requests
    lines = head.decode("latin-1").split("\r\n")
    method, path, _ = lines[0].split(" ", 2)
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0") or 0))
    return Request(method, path, headers, body)


# ---------------------------------------------------------------- behaviours


def http_response(
    status: int,
    body: bytes,
    content_type: str = "application/json",
    reason: str = "X",
    headers: dict[str, str] | None = None,
) -> bytes:
    extra = "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items())
    head = f"HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n{extra}\r\n"
    return head.encode() + body


async def _send(writer: asyncio.StreamWriter, data: bytes) -> None:
    writer.write(data)
    await writer.drain()


def garbage_bytes(seed: int = 0, size: int = 512) -> Behaviour:
    """Random bytes instead of an HTTP response, then the connection closes."""
    data = random.Random(seed).randbytes(size)

    async def answer(request: Request, writer: asyncio.StreamWriter) -> None:
        await _send(writer, data)
        writer.close()

    return answer


def raw_bytes(data: bytes) -> Behaviour:
    """Exactly these bytes (broken HTTP of one's choosing), then the connection closes."""

    async def answer(request: Request, writer: asyncio.StreamWriter) -> None:
        await _send(writer, data)
        writer.close()

    return answer


def hang_up() -> Behaviour:
    """The request is read, then the connection closes without a byte of answer."""
    return raw_bytes(b"")


def non_http() -> Behaviour:
    """Another protocol's greeting (an SSH server on the port), then the connection closes."""

    async def answer(request: Request, writer: asyncio.StreamWriter) -> None:
        await _send(writer, b"SSH-2.0-OpenSSH_9.6p1 Ubuntu-3ubuntu13\r\n")
        writer.close()

    return answer


def html_200() -> Behaviour:
    """A captive portal or proxy login page: status 200, text/html."""
    page = b"<!DOCTYPE html><html><head><title>Sign in</title></head><body><h1>Please sign in</h1></body></html>"

    async def answer(request: Request, writer: asyncio.StreamWriter) -> None:
        await _send(writer, http_response(200, page, "text/html; charset=utf-8", "OK"))

    return answer


def json_200(payload: Any, content_type: str = "application/json") -> Behaviour:
    """Status 200 with this JSON payload (of whatever shape)."""
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()

    async def answer(request: Request, writer: asyncio.StreamWriter) -> None:
        await _send(writer, http_response(200, body, content_type, "OK"))

    return answer


def status_forever(status: int, payload: Any = None, headers: dict[str, str] | None = None) -> Behaviour:
    """This status on every request (500 forever, 401 forever, 429 with a bad Retry-After, ...)."""
    body = json.dumps(payload or {"error": {"message": f"status {status}", "type": "server_error"}}).encode()

    async def answer(request: Request, writer: asyncio.StreamWriter) -> None:
        await _send(writer, http_response(status, body, headers=headers))

    return answer


def echo_authorization(status: int, *, as_json: bool = True) -> Behaviour:
    """A gateway that quotes the request's Authorization header (the key) in its error body."""

    async def answer(request: Request, writer: asyncio.StreamWriter) -> None:
        auth = request.authorization
        if as_json:
            message = f"invalid credentials in header 'Authorization: {auth}' (key {auth.removeprefix('Bearer ')})"
            body = json.dumps({"error": {"message": message, "type": "invalid_request_error", "auth": auth}}).encode()
            await _send(writer, http_response(status, body))
        else:
            body = f"<html><body>Rejected request with Authorization: {auth}</body></html>".encode()
            await _send(writer, http_response(status, body, "text/html"))

    return answer


def echo_in_answer() -> Behaviour:
    """A well-formed 200 completion whose content, reasoning and tool arguments quote the key."""

    async def answer(request: Request, writer: asyncio.StreamWriter) -> None:
        key = request.authorization.removeprefix("Bearer ")
        message = {
            "role": "assistant",
            "content": f"You sent the key {key}.",
            "reasoning_content": f"The header was Authorization: Bearer {key}",
            "tool_calls": [
                {"id": "call_0", "type": "function", "function": {"name": "note", "arguments": json.dumps({"k": key})}}
            ],
        }
        payload = completion(choices=[{"index": 0, "message": message, "finish_reason": "tool_calls"}])
        await _send(writer, http_response(200, json.dumps(payload).encode(), reason="OK"))

    return answer


def trickle_headers(interval_s: float) -> Behaviour:
    """A status line, then header bytes one at a time, each `interval_s` apart, without end."""

    async def answer(request: Request, writer: asyncio.StreamWriter) -> None:
        await _send(writer, b"HTTP/1.1 200 OK\r\n")
        await _send(writer, b"X-Slow: ")
        while True:
            await asyncio.sleep(interval_s)
            await _send(writer, b"a")

    return answer


def trickle_body(interval_s: float) -> Behaviour:
    """Headers promising a large JSON body, then its bytes one at a time, `interval_s` apart."""

    async def answer(request: Request, writer: asyncio.StreamWriter) -> None:
        await _send(writer, b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n")
        await _send(writer, b'{"choices": [')
        while True:
            await asyncio.sleep(interval_s)
            await _send(writer, b" ")

    return answer


def flood_body(announce: int | None = None) -> Behaviour:
    """A 200 whose body never ends, sent as fast as the client reads (chunked, or with a
    Content-Length of `announce` bytes)."""
    chunk = b" " * 65536

    async def answer(request: Request, writer: asyncio.StreamWriter) -> None:
        if announce is None:
            await _send(
                writer, b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
            )
            while True:
                await _send(writer, b"%x\r\n%s\r\n" % (len(chunk), chunk))
        await _send(
            writer, b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % announce
        )
        while True:
            await _send(writer, chunk)

    return answer


def close_mid_body() -> Behaviour:
    """Headers promising 1,000 bytes, 20 of them, then the connection closes."""

    async def answer(request: Request, writer: asyncio.StreamWriter) -> None:
        await _send(writer, b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n")
        await _send(writer, b'{"id": "x", "choices"')
        writer.close()

    return answer


def completion(content: str = "hello", **overrides: Any) -> dict[str, Any]:
    """A well-formed chat completion, with top-level fields replaced by `overrides`."""
    payload: dict[str, Any] = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 0,
        "model": "hostile-1",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
    }
    payload.update(overrides)
    return payload
