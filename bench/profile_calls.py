"""Where one model call's client CPU goes, layer by layer, against `synth serve-offline --canned`.

The same tool-call-shaped request (bench/saturation.py's), sent `--calls` times at `--concurrency`
in flight to a zero-latency canned server in its own process, through five clients, from the full
stack down to the floor:

  chatclient       synth's ChatClient.chat (openai SDK, aiohttp transport, limiter, records)
  sdk_aiohttp      openai.AsyncOpenAI(...).chat.completions.create with DefaultAioHttpClient
  sdk_httpx        the same with the SDK's default httpx transport
  sdk_no_transform the SDK's aiohttp client, but `sdk.post("/chat/completions", body=..., cast_to=
                   ChatCompletion)`: the same request and parsed response without the SDK's
                   per-call param transform (async_maybe_transform), which walks every message
                   and tool schema with typing introspection
  aiohttp          a bare aiohttp session: post the JSON, json.loads the answer (the floor)

CPU per call is time.process_time of this process ÷ calls: robust to a busy machine, unlike calls/s.
Each client runs `--repeats` times, interleaved; the median is reported.

Run:  python bench/profile_calls.py [--calls 1500] [--concurrency 16] [--repeats 3]
Writes bench/out/profile_calls.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

from harness import DUMMY_KEY, OUT, machine, start_server
from saturation import TOOLS, _generation_request

VARIANTS = ("chatclient", "sdk_aiohttp", "sdk_httpx", "sdk_no_transform", "aiohttp")


def _request() -> dict[str, Any]:
    return {
        "model": "synth-offline-1",
        "messages": [m.to_openai() for m in _generation_request()],
        "tools": TOOLS,
        "tool_choice": "auto",
        "seed": 1,
    }


async def _client_for(
    variant: str, base_url: str
) -> tuple[Callable[[], Awaitable[Any]], Callable[[], Awaitable[None]]]:
    """(one call, close) for a variant."""
    import openai

    request = _request()
    if variant == "chatclient":
        from synth.llm.client import ChatClient
        from synth.llm.presets import OFFLINE_MODEL, EndpointConfig
        from synth.records import ROLES

        endpoint = EndpointConfig(base_url=base_url, model=OFFLINE_MODEL, api_key_env="KEY", max_concurrency=256)
        client = ChatClient(dict.fromkeys(ROLES, endpoint), env={"KEY": DUMMY_KEY})
        messages = _generation_request()

        async def chat() -> Any:
            return await client.chat("policy", messages, seed=1, tools=TOOLS)

        return chat, client.aclose
    if variant == "aiohttp":
        import aiohttp

        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        body = json.dumps(request).encode()
        headers = {"content-type": "application/json", "authorization": f"Bearer {DUMMY_KEY}"}
        url = f"{base_url}/chat/completions"

        async def post() -> Any:
            async with session.post(url, data=body, headers=headers) as answer:
                return json.loads(await answer.read())

        return post, session.close
    http_client = openai.DefaultAsyncHttpxClient() if variant == "sdk_httpx" else openai.DefaultAioHttpClient()
    sdk = openai.AsyncOpenAI(base_url=base_url, api_key=DUMMY_KEY, max_retries=0, http_client=http_client)
    if variant == "sdk_no_transform":
        from openai.types.chat import ChatCompletion

        async def raw() -> Any:
            return await sdk.post("/chat/completions", body=request, cast_to=ChatCompletion)

        return raw, sdk.close

    async def create() -> Any:
        return await sdk.chat.completions.create(**request)

    return create, sdk.close


async def _run(variant: str, base_url: str, calls: int, concurrency: int) -> dict[str, float]:
    call, close = await _client_for(variant, base_url)
    await call()  # connection and lazy set-up outside the measurement
    left = calls

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            await call()

    wall, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    await close()
    return {"cpu_ms_per_call": 1000 * cpu / calls, "calls_per_s": calls / wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=1500)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    server = start_server(0, canned=True)
    samples: dict[str, list[dict[str, float]]] = {variant: [] for variant in VARIANTS}
    try:
        for _ in range(args.repeats):
            for variant in VARIANTS:
                samples[variant].append(asyncio.run(_run(variant, server.base_url, args.calls, args.concurrency)))
    finally:
        server.stop()
    figures: dict[str, dict[str, Any]] = {
        variant: {
            "cpu_ms_per_call": round(statistics.median(s["cpu_ms_per_call"] for s in runs), 3),
            "calls_per_s": round(statistics.median(s["calls_per_s"] for s in runs), 1),
            "cpu_ms_per_call_runs": [round(s["cpu_ms_per_call"], 3) for s in runs],
        }
        for variant, runs in samples.items()
    }
    floor = figures["aiohttp"]["cpu_ms_per_call"]
    print(
        f"{'client':<18}{'CPU ms/call':>12}{'× floor':>9}{'calls/s':>9}   (zero latency, {args.concurrency} in flight)"
    )
    for variant, figure in figures.items():
        cpu = figure["cpu_ms_per_call"]
        print(f"{variant:<18}{cpu:>12.2f}{cpu / floor:>9.1f}{figure['calls_per_s']:>9.0f}")
    transform = figures["sdk_aiohttp"]["cpu_ms_per_call"] - figures["sdk_no_transform"]["cpu_ms_per_call"]
    synth_own = figures["chatclient"]["cpu_ms_per_call"] - figures["sdk_aiohttp"]["cpu_ms_per_call"]
    print(f"\nthe SDK's param transform: {transform:.2f} ms per call; ChatClient on top of the SDK: {synth_own:.2f} ms")
    OUT.mkdir(parents=True, exist_ok=True)
    report = {
        "machine": machine(),
        "settings": dict(vars(args)),
        "figures": figures,
        "sdk_param_transform_ms": round(transform, 3),
        "chatclient_over_sdk_ms": round(synth_own, 3),
    }
    (OUT / "profile_calls.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {OUT / 'profile_calls.json'}")


if __name__ == "__main__":
    main()
