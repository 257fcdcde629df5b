"""The synth side of bench/peer_comparison.py (runs in synth's own virtualenv).

The same job as the peers' runners: every prompt as one user message, through `ChatClient` built
as a run builds it (preset `openai`, the server's base URL in OPENAI_BASE_URL, a dummy key), with
`concurrency` workers, each taking the next prompt as soon as its call returns. The endpoint's
limit is `concurrency`, so the adaptive limiter never caps below it. Answers are kept in memory
(ChatResult records); nothing is written to disk.
"""

from __future__ import annotations

import asyncio
from typing import Any

import protocol

from synth.config import SynthConfig
from synth.llm.client import ChatClient, ChatResult
from synth.llm.errors import ModelCallError
from synth.records import ROLES, Message
from synth.runners.common import build_client

job = protocol.spec()


async def generate(client: ChatClient, prompts: list[str]) -> tuple[list[ChatResult], int]:
    results: list[ChatResult] = []
    errors = 0
    queue = iter(range(len(prompts)))  # shared by the workers; no await between next() calls

    async def worker() -> None:
        nonlocal errors
        for index in queue:
            try:
                messages = [Message(role="user", content=prompts[index])]
                results.append(await client.chat("policy", messages, seed=job["seed"], max_tokens=job["max_tokens"]))
            except ModelCallError:
                errors += 1

    await asyncio.gather(*(worker() for _ in range(job["concurrency"])))
    await client.aclose()
    return results, errors


def main() -> None:
    role: dict[str, Any] = {
        "model": job["model"],
        "max_concurrency": job["concurrency"],
        "temperature": job["temperature"],
        "timeout_s": job["timeout_s"],
        "max_retries": job["max_retries"],
    }
    config = SynthConfig.model_validate({"preset": "openai", "roles": dict.fromkeys(ROLES, role)})
    client = build_client(config, {"OPENAI_BASE_URL": job["base_url"], "OPENAI_API_KEY": job["api_key"]})
    protocol.mark("imported")
    protocol.start()
    results, errors = asyncio.run(generate(client, job["prompts"]))
    answers = [r.message.content for r in results if r.message.content]
    protocol.finish(
        completed=len(answers),
        errors=errors + len(results) - len(answers),
        sample=answers[0] if answers else "",
        notes=["synth: ChatClient.chat per prompt (openai SDK, aiohttp transport, adaptive limiter, retries)"],
    )


if __name__ == "__main__":
    main()
