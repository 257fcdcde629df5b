"""The Bespoke Curator side of bench/peer_comparison.py (runs in Curator's own virtualenv).

Plain generation: one user message per row, through Curator's `openai` online backend (its own
aiohttp client, not the openai SDK) at the benchmark server. Set so that `concurrency` is the only
limit: `max_concurrent_requests` = concurrency, and request/token rates far above what the server
can answer (Curator otherwise falls back to default rate limits, and for a model litellm does not
know it reserves 4,096 output tokens per request against the token budget). Caching is off
(CURATOR_DISABLE_CACHE, set by the parent, plus a fresh CURATOR_CACHE_DIR per run), so every row
is really sent. Imports only Curator and the stdlib.
"""

from __future__ import annotations

import os
from importlib import resources
from typing import Any

import protocol
from bespokelabs import curator

job = protocol.spec()


class Generate(curator.LLM):
    def prompt(self, input: dict[str, Any]) -> list[dict[str, str]]:
        return [{"role": "user", "content": input["prompt"]}]

    def parse(self, input: dict[str, Any], response: str) -> dict[str, Any]:
        return {"prompt": input["prompt"], "response": response}


def main() -> None:
    assert os.environ.get("CURATOR_DISABLE_CACHE") == "1", "the parent must disable Curator's cache"
    # Curator loads tiktoken's cl100k_base (to estimate tokens for its rate limiter), which tiktoken
    # downloads on first use; this machine has no internet, and litellm (a Curator dependency)
    # ships that file, so tiktoken is pointed at litellm's copy.
    os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(resources.files("litellm") / "litellm_core_utils" / "tokenizers"))
    llm = Generate(
        model_name=job["model"],
        backend="openai",
        generation_params={"seed": job["seed"], "temperature": job["temperature"], "max_tokens": job["max_tokens"]},
        backend_params={
            "base_url": job["base_url"],
            "api_key": job["api_key"],
            "max_concurrent_requests": job["concurrency"],
            "max_requests_per_minute": 1_000_000_000,
            "max_tokens_per_minute": 1_000_000_000_000,
            "max_retries": job["max_retries"],
            "request_timeout": int(job["timeout_s"]),
            "require_all_responses": False,
        },
    )
    rows = [{"prompt": prompt} for prompt in job["prompts"]]
    protocol.mark("imported")
    protocol.start()
    output = llm(rows, working_dir=os.path.join(job["work_dir"], "curator"))
    dataset = output.dataset
    answers = [row["response"] for row in dataset if row.get("response")]
    protocol.finish(
        completed=len(answers),
        errors=len(job["prompts"]) - len(answers),
        sample=answers[0] if answers else "",
        notes=[
            "Curator's openai backend posts with its own aiohttp session and keeps every response in a "
            "jsonl file, then builds an Arrow dataset from it after the last answer",
        ],
    )


if __name__ == "__main__":
    main()
