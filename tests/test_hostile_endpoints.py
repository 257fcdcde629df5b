"""The client against hostile endpoints on loopback (tests/hostile_servers.py): whatever a server
sends, `ChatClient.chat`/`chat_json` end with a one-line ModelCallError naming the role and the
endpoint, retried as often as configured, within the deadline, and never holding the key.

Bounds on time are generous multiples of the configured timeout (the machine is shared): they
tell a call that ended from one that hangs, not a fast call from a slow one."""

from __future__ import annotations

import asyncio
import json
import socket
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pyarrow.parquet as pq
import pytest
from click.testing import Result
from hostile_servers import (
    Behaviour,
    HostileServer,
    close_mid_body,
    completion,
    echo_authorization,
    echo_in_answer,
    flood_body,
    garbage_bytes,
    hang_up,
    html_200,
    json_200,
    non_http,
    raw_bytes,
    status_forever,
    trickle_body,
    trickle_headers,
)
from pydantic import BaseModel
from typer.testing import CliRunner

from synth.cli import app
from synth.llm.client import ChatClient
from synth.llm.errors import EndpointRejected, ModelCallError, RetriesExhausted
from synth.records import Message

MakeClient = Callable[..., ChatClient]
Serve = Callable[[Behaviour], HostileServer]

HELLO = [Message(role="user", content="Hello there.")]
RETRIES = 2
TIMEOUT_S = 0.5
TRICKLE_S = 0.05  # far below the timeout: a per-read timeout alone would never fire
# Keys with and without a recognisable shape: the second can only be caught by its value.
KEYS = ["sk-hostile-0123456789abcdef", "plainKEYwithoutShape42"]


class Verdict(BaseModel):
    score: float


@pytest.fixture
def serve() -> Iterator[Serve]:
    """`serve(behaviour) -> HostileServer` on a free loopback port; every server stops at teardown."""
    servers: list[HostileServer] = []

    def start(behaviour: Behaviour) -> HostileServer:
        server = HostileServer(behaviour).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def hostile_client(make_client: MakeClient, server: HostileServer, key: str = KEYS[0], **fields: Any) -> ChatClient:
    settings: dict[str, Any] = {"timeout_s": TIMEOUT_S, "max_retries": RETRIES, "max_backoff_s": 0.01}
    settings.update(fields)
    return make_client(server.base_url, key=key, **settings)


def assert_reported(exc: ModelCallError, server: HostileServer, key: str, role: str = "judge") -> None:
    """One line naming role and endpoint; the key nowhere, not even in the chained traceback."""
    message = str(exc)
    assert "\n" not in message
    assert message.startswith(f"[{role}] ")
    assert server.base_url in message
    logged = "".join(traceback.format_exception(exc))
    assert key not in logged
    # Nothing chained either: an SDK error would carry the request's Authorization header along.
    assert exc.__cause__ is None and exc.__context__ is None


async def until(condition: Callable[[], bool], bound_s: float = 10.0) -> bool:
    """Poll `condition` until it holds or `bound_s` passes (a bound, not an expectation)."""
    deadline = time.monotonic() + bound_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


# ---------------------------------------------------------------- garbage: retried, then RetriesExhausted

WRONG_SHAPES: dict[str, tuple[Any, str]] = {
    "no choices": (completion(choices=[]), "no choices"),
    "choices missing": ({"id": "x", "object": "chat.completion"}, "choices is null"),
    "choices a string": (completion(choices="many"), "choices is a string, not a list"),
    "choices an object": (completion(choices={"0": {}}), "choices is an object, not a list"),
    "choice a string": (completion(choices=["hello"]), "choices[0] is a string"),
    "message missing": (completion(choices=[{"index": 0, "finish_reason": "stop"}]), "message is null"),
    "message a string": (completion(choices=[{"index": 0, "message": "hi"}]), "message is a string"),
    "content a number": (
        completion(choices=[{"index": 0, "message": {"role": "assistant", "content": 5}}]),
        "content is a number",
    ),
    "content a list": (
        completion(choices=[{"index": 0, "message": {"role": "assistant", "content": [{"type": "text"}]}}]),
        "content is a list",
    ),
    "tool_calls an object": (
        completion(choices=[{"index": 0, "message": {"role": "assistant", "tool_calls": {"id": "a"}}}]),
        "tool_calls is an object",
    ),
    "tool call a string": (
        completion(choices=[{"index": 0, "message": {"role": "assistant", "tool_calls": ["get_order()"]}}]),
        "tool_calls[0] is a string",
    ),
    "arguments an object": (
        completion(
            choices=[
                {
                    "index": 0,
                    "message": {
                        "role": "assistant",
                        "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": {}}}],
                    },
                }
            ]
        ),
        "tool_calls[0].function.arguments is not a string",
    ),
    "reasoning a number": (
        completion(choices=[{"index": 0, "message": {"role": "assistant", "content": "x", "reasoning_content": 1}}]),
        "reasoning_content is a number",
    ),
    "usage a string": (completion(usage="lots"), "usage is a string"),
    "usage tokens a string": (completion(usage={"prompt_tokens": "many", "completion_tokens": 1}), "prompt_tokens"),
    "usage tokens negative": (completion(usage={"prompt_tokens": -3, "completion_tokens": 1}), "prompt_tokens"),
    "model a number": (completion(model=7), "model is a number"),
    "a JSON list": ([completion()], "not a chat completion (a list)"),
    "JSON null": (None, "not a chat completion (null)"),
    "broken JSON labelled JSON": (b'{"choices": [', "not valid JSON"),
}

GARBAGE: dict[str, tuple[Behaviour, str]] = {
    "garbage bytes": (garbage_bytes(seed=3), "not a valid HTTP response"),
    "non-HTTP greeting": (non_http(), "not a valid HTTP response"),
    "HTML with status 200": (html_200(), "not JSON (an HTML page)"),
    "closed mid-body": (close_mid_body(), "connection failed"),
    "hung up without answering": (hang_up(), "connection failed (ServerDisconnectedError)"),
    "gzip that is not gzip": (
        raw_bytes(b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 5\r\n\r\nabcde"),
        "Content-Encoding does not decode",
    ),
    "broken chunked encoding": (
        raw_bytes(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n"),
        "not a valid HTTP response",
    ),
    "a header of 200 kB": (raw_bytes(b"HTTP/1.1 200 OK\r\nX-A: " + b"a" * 200_000), "not a valid HTTP response"),
    "bytes that are not UTF-8 labelled JSON": (
        raw_bytes(
            b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 16\r\n\r\n{"choices": "\xff"}'
        ),
        "not text",
    ),
    "empty 200": (raw_bytes(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"), "not JSON"),
    "302 without a Location": (raw_bytes(b"HTTP/1.1 302 Found\r\nContent-Length: 0\r\n\r\n"), "HTTP 302"),
    "500 forever": (status_forever(500), "HTTP 500"),
    "503 forever": (status_forever(503), "HTTP 503"),
    "429 with a Retry-After that is no date": (
        status_forever(429, headers={"Retry-After": "soon, maybe"}),
        "HTTP 429",
    ),
    **{f"wrong shape: {name}": (json_200(payload), expected) for name, (payload, expected) in WRONG_SHAPES.items()},
}


@pytest.mark.parametrize(("behaviour", "expected"), GARBAGE.values(), ids=GARBAGE.keys())
async def test_garbage_is_retried_then_reported_as_retries_exhausted(
    serve: Serve, make_client: MakeClient, behaviour: Behaviour, expected: str
) -> None:
    server = serve(behaviour)
    client = hostile_client(make_client, server)

    with pytest.raises(RetriesExhausted) as caught:
        await client.chat("judge", HELLO, seed=1)

    assert_reported(caught.value, server, KEYS[0])
    assert expected in str(caught.value)
    assert f"after {RETRIES} retries" in str(caught.value)
    assert server.requests == RETRIES + 1
    assert caught.value.usage.retries == RETRIES
    assert client.concurrency()[server.base_url]["in_flight"] == 0


@pytest.mark.parametrize(
    "behaviour",
    [garbage_bytes(), html_200(), json_200(completion(choices="x")), status_forever(502)],
    ids=["garbage bytes", "HTML 200", "choices a string", "502 forever"],
)
async def test_chat_json_reports_garbage_as_the_endpoint_failing_not_as_a_bad_answer(
    serve: Serve, make_client: MakeClient, behaviour: Behaviour
) -> None:
    server = serve(behaviour)
    client = hostile_client(make_client, server)

    with pytest.raises(RetriesExhausted) as caught:
        await client.chat_json("tool", HELLO, Verdict, seed=1)

    assert_reported(caught.value, server, KEYS[0], role="tool")
    assert caught.value.trips_breaker
    assert server.requests == RETRIES + 1  # not multiplied by the JSON repair attempts


async def test_a_closed_port_is_reported_as_refused_not_as_a_timeout(make_client: MakeClient) -> None:
    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens there
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    base_url = f"http://127.0.0.1:{port}/v1"
    client = make_client(base_url, timeout_s=TIMEOUT_S, max_retries=0)

    with pytest.raises(RetriesExhausted) as caught:
        await client.chat("judge", HELLO, seed=1)

    assert (
        str(caught.value)
        == f"[judge] {base_url}: connection failed (connection refused), still failing after 0 retries"
    )


async def test_a_well_formed_answer_with_fields_of_its_own_is_read(serve: Serve, make_client: MakeClient) -> None:
    """The shape check judges only what the client reads: extras, float token counts and K2's
    reasoning_content and top-level cached_tokens pass."""
    message = {"role": "assistant", "content": "hi", "reasoning_content": "thought", "vendor_field": [1, {"a": None}]}
    payload = completion(
        choices=[{"index": 0, "message": message, "finish_reason": "stop", "stop_reason": 42}],
        usage={"prompt_tokens": 10.0, "completion_tokens": 2, "total_tokens": 12, "cached_tokens": 4},
        system_fingerprint=None,
        extra={"anything": True},
    )
    server = serve(json_200(payload))
    client = hostile_client(make_client, server)

    result = await client.chat("policy", HELLO, seed=1)

    assert result.message.content == "hi"
    assert result.message.reasoning_content == "thought"
    assert (result.usage.prompt_tokens, result.usage.cached_prompt_tokens) == (10, 4)
    assert server.requests == 1


# ---------------------------------------------------------------- deadlines against trickling servers


@pytest.mark.parametrize("behaviour", [trickle_headers(TRICKLE_S), trickle_body(TRICKLE_S)], ids=["headers", "body"])
async def test_a_trickling_server_cannot_hold_a_call_past_its_deadline(
    serve: Serve, make_client: MakeClient, behaviour: Behaviour
) -> None:
    server = serve(behaviour)
    client = hostile_client(make_client, server)
    attempts = RETRIES + 1

    with pytest.raises(RetriesExhausted) as caught:
        # Unbounded, a trickle of one byte per 50 ms never ends; this generous bound tells the two
        # apart, and a regression fails here (TimeoutError) instead of hanging the suite.
        async with asyncio.timeout(10 * TIMEOUT_S * attempts):
            await client.chat("user", HELLO, seed=1)

    assert_reported(caught.value, server, KEYS[0], role="user")
    assert f"timed out after {TIMEOUT_S:g}s" in str(caught.value)
    assert server.requests == attempts
    assert client.concurrency()[server.base_url]["in_flight"] == 0
    # Every timed-out connection was closed, not parked in the pool with the server still writing.
    assert await until(lambda: server.open_connections == 0)


@pytest.mark.parametrize(
    ("behaviour", "expected"),
    [(flood_body(), "sent an answer of more than"), (flood_body(announce=10**12), "announced an answer of")],
    ids=["endless chunked body", "a terabyte announced"],
)
async def test_an_endless_body_is_cut_at_the_size_cap_not_read_into_memory(
    serve: Serve, make_client: MakeClient, behaviour: Behaviour, expected: str
) -> None:
    server = serve(behaviour)
    client = hostile_client(make_client, server, timeout_s=60.0)

    with pytest.raises(RetriesExhausted) as caught:
        async with asyncio.timeout(30):  # the cap ends it, long before the deadline would
            await client.chat("tool", HELLO, seed=1)

    assert_reported(caught.value, server, KEYS[0], role="tool")
    assert expected in str(caught.value)
    assert server.requests == RETRIES + 1
    assert await until(lambda: server.open_connections == 0)


async def test_a_cancelled_call_gives_its_slot_back_and_closes_its_connection(
    serve: Serve, make_client: MakeClient
) -> None:
    server = serve(trickle_body(TRICKLE_S))
    client = hostile_client(make_client, server, timeout_s=60.0, max_concurrency=1)
    sending = asyncio.create_task(client.chat("policy", HELLO, seed=1))
    waiting = asyncio.create_task(client.chat("policy", HELLO, seed=2))  # queued behind the limit of 1
    assert await until(lambda: server.requests == 1)
    assert client.concurrency()[server.base_url]["waiting"] == 1

    sending.cancel()
    waiting.cancel()
    results = await asyncio.gather(sending, waiting, return_exceptions=True)

    assert all(isinstance(result, asyncio.CancelledError) for result in results)
    stats = client.concurrency()[server.base_url]
    assert (stats["in_flight"], stats["waiting"]) == (0, 0)
    assert await until(lambda: server.open_connections == 0)


async def test_the_deadline_does_not_cut_a_slow_but_timely_answer(serve: Serve, make_client: MakeClient) -> None:
    async def slow(request: Any, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(0.05)
        await json_200(completion("late but fine"))(request, writer)

    server = serve(slow)
    client = hostile_client(make_client, server, timeout_s=30.0)

    result = await client.chat("policy", HELLO, seed=1)

    assert result.message.content == "late but fine"


# ---------------------------------------------------------------- keys: never in an error, never in an answer


@pytest.mark.parametrize("key", KEYS)
@pytest.mark.parametrize(
    ("behaviour", "status"),
    [
        (echo_authorization(400), 400),
        (echo_authorization(403), 403),
        (echo_authorization(422), 422),
        (echo_authorization(403, as_json=False), 403),
        (echo_authorization(401), 401),
    ],
    ids=["400 JSON", "403 JSON", "422 JSON", "403 HTML", "401 JSON"],
)
async def test_an_echoed_key_never_reaches_the_rejection(
    serve: Serve, make_client: MakeClient, behaviour: Behaviour, status: int, key: str
) -> None:
    server = serve(behaviour)
    client = hostile_client(make_client, server, key=key)

    with pytest.raises(EndpointRejected) as caught:
        await client.chat("judge", HELLO, seed=1)

    assert server.authorizations == [f"Bearer {key}"]  # the key was sent, and echoed back
    assert_reported(caught.value, server, key)
    assert caught.value.status == status
    assert server.requests == 1  # fail fast: no retry
    assert f"answered {status}" in str(caught.value)


async def test_the_gateways_own_words_survive_redaction(serve: Serve, make_client: MakeClient) -> None:
    server = serve(echo_authorization(400))
    client = hostile_client(make_client, server, key=KEYS[1])

    with pytest.raises(EndpointRejected) as caught:
        await client.chat("judge", HELLO, seed=1)

    assert "invalid credentials in header" in str(caught.value)
    assert "[redacted]" in str(caught.value)


@pytest.mark.parametrize("key", KEYS)
async def test_an_echoed_key_in_a_5xx_body_never_reaches_the_error(
    serve: Serve, make_client: MakeClient, key: str
) -> None:
    server = serve(echo_authorization(500))
    client = hostile_client(make_client, server, key=key)

    with pytest.raises(RetriesExhausted) as caught:
        await client.chat("judge", HELLO, seed=1)

    assert_reported(caught.value, server, key)
    assert server.requests == RETRIES + 1


@pytest.mark.parametrize("key", KEYS)
async def test_a_key_echoed_into_an_answer_is_not_kept(serve: Serve, make_client: MakeClient, key: str) -> None:
    server = serve(echo_in_answer())
    client = hostile_client(make_client, server, key=key)

    result = await client.chat("policy", HELLO, seed=1)

    kept = json.dumps(result.message.model_dump())
    assert key not in kept
    assert "[redacted]" in (result.message.content or "")
    assert result.message.tool_calls[0].function.name == "note"


async def test_a_json_answer_quoting_the_key_is_not_kept_in_the_error(serve: Serve, make_client: MakeClient) -> None:
    """The answer is invalid JSON quoting the key: the repair loop's final error holds no key."""
    server = serve(echo_in_answer())
    client = hostile_client(make_client, server, key=KEYS[1])

    with pytest.raises(ModelCallError) as caught:
        await client.chat_json("judge", HELLO, Verdict, seed=1)

    assert KEYS[1] not in "".join(traceback.format_exception(caught.value))


# ---------------------------------------------------------------- end to end: no key anywhere a run writes

RUN_KEY_ENV = "SYNTH_HOSTILE_KEY"


def run_config(role: str, server: HostileServer) -> str:
    return f"""
[run]
tasks = 4
shard_size = 2
domains = 2
seed = 5

[roles.{role}]
base_url = "{server.base_url}"
api_key_env = "{RUN_KEY_ENV}"
model = "hostile-1"
timeout_s = 2.0
max_retries = 1
max_backoff_s = 0.01
"""


def generate_against(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, role: str, server: HostileServer, key: str
) -> tuple[Path, Result]:
    for name in ("SYNTH_PRESET", "SYNTH_TASKS", "SYNTH_SEED", "SYNTH_CONCURRENCY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(RUN_KEY_ENV, key)
    config = tmp_path / "hostile.toml"
    config.write_text(run_config(role, server))
    run = tmp_path / "run"
    result = CliRunner().invoke(app, ["generate", "--out", str(run), "--config", str(config), "--runner", "inline"])
    return run, result


def texts_of_every_file(folder: Path) -> Iterator[tuple[Path, str]]:
    """Each file's content as text: Parquet decoded row by row (its pages are compressed), anything
    else as its bytes (latin-1 keeps every byte); file names too."""
    for path in sorted(folder.rglob("*")):
        yield path, str(path.relative_to(folder))
        if not path.is_file():
            continue
        if path.suffix == ".parquet":
            table = pq.read_table(path)
            yield path, json.dumps(table.to_pylist(), default=str) + json.dumps(str(table.schema.metadata))
        yield path, path.read_bytes().decode("latin-1")


@pytest.mark.parametrize(
    ("role", "behaviour"),
    [("judge", echo_authorization(400)), ("judge", echo_authorization(500)), ("policy", echo_in_answer())],
    ids=["judge echoes in a 400", "judge echoes in 500s", "policy echoes into its answers"],
)
@pytest.mark.parametrize("key", KEYS)
def test_no_file_of_a_run_and_no_line_it_prints_holds_the_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, role: str, behaviour: Behaviour, key: str
) -> None:
    with HostileServer(behaviour) as server:
        run, result = generate_against(tmp_path, monkeypatch, role, server, key)
        sent = server.authorizations

    assert f"Bearer {key}" in sent  # the endpoint was called with the key, and echoed it back
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert key not in result.output
    assert run.is_dir()
    scanned = 0
    for path, text in texts_of_every_file(run):
        scanned += 1
        assert key not in text, f"the key is in {path}"
        assert quote(key, safe="") not in text, f"the key (URL-quoted) is in {path}"
    assert scanned > 10  # the run wrote its tables, not only run.json

    # What is made from the run (every export format, the report) holds no key either.
    outputs = tmp_path / "outputs"
    outputs.mkdir()
    made = [
        ["export", str(run), "--format", name, "--to", str(outputs / f"{name}.{suffix}"), "--all"]
        for name, suffix in (("openai", "jsonl"), ("hf", "parquet"), ("sharegpt", "jsonl"), ("rl", "parquet"))
    ] + [["report", str(run), "--to", str(outputs / "report.html")], ["stats", str(run), "--json"]]
    for command in made:
        printed = CliRunner().invoke(app, command)
        assert "Traceback" not in printed.output and key not in printed.output, command
    assert (outputs / "report.html").is_file()
    for path, text in texts_of_every_file(outputs):
        assert key not in text, f"the key is in {path}"
        assert quote(key, safe="") not in text, f"the key (URL-quoted) is in {path}"


def test_a_run_whose_judge_refuses_the_key_does_not_say_done(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with HostileServer(echo_authorization(403)) as server:
        _, result = generate_against(tmp_path, monkeypatch, "judge", server, KEYS[0])

    assert result.exit_code != 0  # depends on the runner's new behaviour
    assert "(done)" not in result.output  # depends on the runner's new behaviour
    assert "[judge]" in result.output and server.base_url in result.output
    assert KEYS[0] not in result.output
