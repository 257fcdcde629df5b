"""Shared fixtures: the offline model served on a loopback port, and ChatClients pointed at it.

`serve_offline(OfflineModel(...))` starts a real uvicorn server on 127.0.0.1 (a free port) in a
background thread, so requests go through the real `openai` SDK and its aiohttp transport over a
socket; every server is shut down at teardown. The served app records each request body, so a test
can check what actually went over the wire. `offline_server` is the same for `offline_model`, which
a test can parametrise indirectly:

    @pytest.mark.parametrize("offline_model", [OfflineModel(FaultConfig(script=["drop", "ok"]))], indirect=True)

`make_client(base_url, ...)` builds a ChatClient whose every role uses that endpoint, with the key
variable SYNTH_TEST_KEY and short timeouts and backoffs; clients are closed at teardown.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest
import uvicorn
from scripted_support import Build, make_context
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from synth.llm.client import ChatClient
from synth.llm.offline import OfflineModel
from synth.llm.presets import OFFLINE_MODEL, EndpointConfig
from synth.llm.pricing import PriceTable
from synth.pipeline.context import Context
from synth.records import ROLES

TEST_KEY_ENV = "SYNTH_TEST_KEY"
TEST_KEY = "sk-test-0123456789"
LOOPBACK = "127.0.0.1"
_START_TIMEOUT_S = 10.0


class RecordingApp:
    """An ASGI wrapper keeping each HTTP request's JSON body (None when it is not JSON)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.bodies: list[Any] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        try:
            self.bodies.append(json.loads(body) if body else None)
        except json.JSONDecodeError:
            self.bodies.append(None)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


@dataclass
class Served:
    """An app served on a loopback port."""

    port: int
    recorder: RecordingApp
    model: Any = None

    @property
    def base_url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}/v1"

    @property
    def bodies(self) -> list[Any]:
        """The request bodies the server received, in order."""
        return self.recorder.bodies


@dataclass
class _Running:
    server: uvicorn.Server
    thread: threading.Thread
    served: Served = field(repr=False)


def _start(app: ASGIApp, model: Any = None) -> _Running:
    recorder = RecordingApp(app)
    config = uvicorn.Config(
        recorder,
        host=LOOPBACK,
        port=0,  # the OS picks a free port; read back from the listening socket
        log_level="warning",
        lifespan="off",
        timeout_graceful_shutdown=1,  # a request hanging on purpose ("timeout" fault) is cut at teardown
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="loopback-uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + _START_TIMEOUT_S
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise RuntimeError("the loopback uvicorn server did not start")
        time.sleep(0.005)
    port = server.servers[0].sockets[0].getsockname()[1]
    return _Running(server, thread, Served(port=port, recorder=recorder, model=model))


def _stop(running: _Running) -> None:
    running.server.should_exit = True
    running.thread.join(timeout=10)


@pytest.fixture
def serve_app() -> Iterator[Callable[..., Served]]:
    """Serve any ASGI app on a loopback port: `serve_app(app, model=None) -> Served`."""
    running: list[_Running] = []

    def serve(app: ASGIApp, model: Any = None) -> Served:
        started = _start(app, model)
        running.append(started)
        return started.served

    yield serve
    for started in reversed(running):
        _stop(started)


@pytest.fixture
def serve_offline(serve_app: Callable[..., Served]) -> Callable[[OfflineModel], Served]:
    """Serve an OfflineModel on a loopback port: `serve_offline(model) -> Served` (`.model` is it)."""

    def serve(model: OfflineModel) -> Served:
        return serve_app(model.app, model)

    return serve


@pytest.fixture
def offline_model(request: pytest.FixtureRequest) -> OfflineModel:
    """A fault-free OfflineModel, or the one given by indirect parametrisation."""
    model = getattr(request, "param", None)
    return model if isinstance(model, OfflineModel) else OfflineModel()


@pytest.fixture
def offline_server(serve_offline: Callable[[OfflineModel], Served], offline_model: OfflineModel) -> Served:
    """`offline_model` served on a loopback port."""
    return serve_offline(offline_model)


def endpoint_config(base_url: str, **overrides: Any) -> EndpointConfig:
    """A test endpoint: the offline model id, key from SYNTH_TEST_KEY, short timeout and backoffs."""
    fields: dict[str, Any] = {
        "base_url": base_url,
        "model": OFFLINE_MODEL,
        "api_key_env": TEST_KEY_ENV,
        "timeout_s": 5.0,
        "max_retries": 3,
        "max_backoff_s": 0.01,
    }
    fields.update(overrides)
    return EndpointConfig(**fields)


@pytest.fixture
async def make_client() -> AsyncIterator[Callable[..., ChatClient]]:
    """`make_client(base_url, *, key=TEST_KEY, apps=None, prices=None, **endpoint_fields)`: every
    role on that endpoint, env {SYNTH_TEST_KEY: key}; closed at teardown."""
    clients: list[ChatClient] = []

    def make(
        base_url: str,
        *,
        key: str = TEST_KEY,
        apps: Mapping[str, ASGIApp] | None = None,
        prices: PriceTable | None = None,
        **endpoint_fields: Any,
    ) -> ChatClient:
        config = endpoint_config(base_url, **endpoint_fields)
        client = ChatClient(dict.fromkeys(ROLES, config), env={TEST_KEY_ENV: key}, apps=apps, prices=prices, seed=0)
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.aclose()


@pytest.fixture
async def build() -> AsyncIterator[Build]:
    """make_context for a test; every client it made is closed at teardown."""
    built: list[Context] = []

    def factory(*args: Any, **kwargs: Any) -> tuple[Context, dict[str, Any]]:
        ctx, models = make_context(*args, **kwargs)
        built.append(ctx)
        return ctx, models

    yield factory
    for ctx in built:
        await ctx.client.aclose()


def pytest_configure(config: pytest.Config) -> None:
    """`synth generate` defaults to Ray; tests (module fixtures included) run inline unless they test
    Ray itself. Set before any fixture runs, for the whole session."""
    os.environ["SYNTH_RUNNER"] = "inline"
