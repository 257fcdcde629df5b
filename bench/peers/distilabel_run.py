"""The distilabel side of bench/peer_comparison.py (runs in distilabel's own virtualenv).

Plain generation as a distilabel pipeline: LoadDataFromDicts >> TextGeneration(OpenAILLM), the
prompt as the `instruction` column (TextGeneration's default template turns it into one user
message). `input_batch_size` = `concurrency` is what sets distilabel's concurrency: an async LLM
sends one batch's requests together (asyncio.gather) and the step takes the next batch when the
whole batch has answered. OpenAILLM uses the openai SDK's `chat.completions.create` on its default
httpx transport. Caching is off (`use_cache=False`, a fresh `cache_dir` per run). Steps run in
worker processes (distilabel's multiprocessing pool); their CPU is counted once they are reaped.
Imports only distilabel and the stdlib.
"""

from __future__ import annotations

import os

import protocol
from distilabel.models.llms import OpenAILLM
from distilabel.pipeline import Pipeline
from distilabel.steps import LoadDataFromDicts
from distilabel.steps.tasks import TextGeneration

job = protocol.spec()


def main() -> None:
    concurrency = job["concurrency"]
    cache_dir = os.path.join(job["work_dir"], "distilabel")
    with Pipeline(name="peer-bench", cache_dir=cache_dir) as pipeline:
        load = LoadDataFromDicts(data=[{"instruction": p} for p in job["prompts"]], batch_size=concurrency)
        generate = TextGeneration(
            llm=OpenAILLM(
                model=job["model"],
                base_url=job["base_url"],
                api_key=job["api_key"],
                max_retries=job["max_retries"],
                timeout=int(job["timeout_s"]),
                generation_kwargs={
                    "max_new_tokens": job["max_tokens"],
                    "temperature": job["temperature"],
                    "extra_body": {"seed": job["seed"]},
                },
            ),
            input_batch_size=concurrency,
        )
        load >> generate
    protocol.mark("imported")
    protocol.start()
    distiset = pipeline.run(use_cache=False)
    rows = list(distiset["default"]["train"])
    answers = [row["generation"] for row in rows if row.get("generation")]
    protocol.finish(
        completed=len(answers),
        errors=len(job["prompts"]) - len(answers),
        sample=answers[0] if answers else "",
        notes=[
            "distilabel sends a batch of input_batch_size requests, waits for all of them, then takes the "
            "next batch; its steps run in subprocesses and hand batches over multiprocessing queues; "
            "OpenAILLM adds n, logprobs, top_p, frequency_penalty and presence_penalty to each request body",
        ],
    )


if __name__ == "__main__":
    main()
