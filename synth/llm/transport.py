"""The HTTP side of the chat client: what the transport raised or the server sent, in one line.

The client retries or fails on what these return; the texts are the client's own words (the OS's
for a refused connection), never the server's bytes, which may quote anything, a key included.
`InProcessTransport` serves the offline and scripted models in-process so that their faults look
to the client as they would over a socket.
"""

from __future__ import annotations

import asyncio
import email.utils
import os
import socket
import time
from collections.abc import AsyncIterator, Mapping

import aiohttp
import httpx2
import openai


class UnusableAnswer(Exception):
    """The endpoint answered, but nothing readable: retried like a 5xx. The text says what was wrong
    and holds none of what the server sent."""


MAX_ANSWER_BYTES = 32 * 2**20
"""The largest response body read. A chat completion is kilobytes (K2's longest answer well under one
megabyte); a server streaming without end would otherwise fill memory until the deadline."""


async def cap_answer_size(response: httpx2.Response) -> None:
    """An httpx response hook: refuse a body announced or found to be over `MAX_ANSWER_BYTES`."""
    length = response.headers.get("content-length", "")
    if length.isdigit() and int(length) > MAX_ANSWER_BYTES:
        raise UnusableAnswer(f"announced an answer of {int(length):,} bytes (more than {MAX_ANSWER_BYTES:,})")
    if isinstance(response.stream, httpx2.AsyncByteStream):  # always, in an async client
        response.stream = _CappedStream(response.stream)


class _CappedStream(httpx2.AsyncByteStream):
    def __init__(self, inner: httpx2.AsyncByteStream) -> None:
        self._inner = inner

    async def __aiter__(self) -> AsyncIterator[bytes]:
        seen = 0
        async for chunk in self._inner:
            seen += len(chunk)
            if seen > MAX_ANSWER_BYTES:
                raise UnusableAnswer(f"sent an answer of more than {MAX_ANSWER_BYTES:,} bytes")
            yield chunk

    async def aclose(self) -> None:
        await self._inner.aclose()


class InProcessTransport(httpx2.ASGITransport):
    """An in-process app behaves as it would over a socket: an answer slower than the read timeout
    times out, and an app that cuts the connection (raises ConnectionError) is a network error. The
    SDK reports these as APITimeoutError / APIConnectionError, so the call is retried."""

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        read_timeout = (request.extensions.get("timeout") or {}).get("read")
        try:
            async with asyncio.timeout(read_timeout):
                return await super().handle_async_request(request)
        except TimeoutError as exc:
            raise httpx2.ReadTimeout(f"no answer within {read_timeout}s", request=request) from exc
        except ConnectionError as exc:
            raise httpx2.ReadError(f"connection dropped: {exc}", request=request) from exc


def retry_after_delay(headers: Mapping[str, str]) -> float | None:
    """Seconds a 429 asks to wait (`retry-after-ms`, or `retry-after` in seconds or as an HTTP date);
    None when absent or unreadable. Never raises, whatever the server wrote."""
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            return max(0.0, float(value) * scale)  # NaN and negatives end as 0, inf is capped by the caller
        except ValueError:
            pass
        if scale == 1.0:
            try:
                return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
            except (ValueError, TypeError, OverflowError):
                return None  # a header that is neither seconds nor an HTTP date: back off as usual
    return None


def error_message(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])[:300]
    return ""


def transport_problem(exc: openai.APIConnectionError, timeout_s: float) -> str:
    """Why the request got no answer, from the root of the exception chain: the aiohttp transport
    maps every connection error (a refused connection, a server hanging up) to a *timeout*, which
    would send a user looking in the wrong place."""
    chain: list[BaseException] = [exc]
    while chain[-1].__cause__ is not None:
        chain.append(chain[-1].__cause__)
    root = chain[-1]
    if isinstance(root, TimeoutError | aiohttp.ServerTimeoutError | httpx2.TimeoutException):
        return f"timed out after {timeout_s:g}s"
    if any(isinstance(link, httpx2.DecodingError) for link in chain):
        return "answered a body its Content-Encoding does not decode"
    if isinstance(root, socket.gaierror) or isinstance(getattr(root, "os_error", None), socket.gaierror):
        return f"connection failed (cannot resolve the host: {getattr(root, 'strerror', None) or 'unknown name'})"
    errno = getattr(root, "errno", None)
    if isinstance(errno, int) and errno > 0:  # the OS's words, never the server's
        return f"connection failed ({os.strerror(errno).lower()})"
    return f"connection failed ({type(root).__name__})"


def garbage_problem(exc: Exception) -> str:
    """What an exception from the transport says about the server's answer, in our words only."""
    if isinstance(exc, aiohttp.ClientResponseError):
        return f"answered bytes that are not a valid HTTP response ({type(exc).__name__})"
    if isinstance(exc, UnicodeError):
        return "answered a body that is not text"
    if isinstance(exc, ValueError):  # json.JSONDecodeError among them
        return f"answered a body that is not valid JSON ({type(exc).__name__})"
    return f"answered something the transport could not read ({type(exc).__name__})"
