"""Exports of a run as training data files, streamed batch by batch out of the run's DuckDB catalog.
openai and hf rows are shaped by DuckDB SQL (no Python per row); the other formats convert each row
in Python.

| format     | file    | what |
|------------|---------|------|
| `openai`   | JSONL   | OpenAI fine-tuning chat format (`synth.export.openai_chat`) |
| `hf`       | Parquet | Hugging Face / TRL conversational: `messages` + `tools` (`synth.export.hf`) |
| `sharegpt` | JSONL   | ShareGPT with function calls, LLaMA-Factory convention (`synth.export.sharegpt`) |
| `rl`       | Parquet | prompt, tools, environment, rubric, reward per trajectory (`synth.export.rl`) |

    export_run(run_dir, "openai", Path("train.jsonl"), min_score=0.9, where="rubric_kind = 'parallel_calls'")

Accepted trajectories only unless `include_rejected`; `where` is one SQL boolean expression over the
`sft` view's columns (the `rl` view's for `rl`), checked by `synth.export.where`. `weight_flagged`
(openai, hf) weights out assistant turns the objective checks flag (`synth.export.weights`);
`arguments="object"` (hf) writes tool-call arguments as objects, in JSON Lines.
"""

from synth.export.core import BATCH_ROWS, FORMATS, ExportError, ExportFormat, ExportResult, export_run
from synth.export.where import UnsafeWhere, filter_statement

__all__ = [
    "BATCH_ROWS",
    "FORMATS",
    "ExportError",
    "ExportFormat",
    "ExportResult",
    "UnsafeWhere",
    "export_run",
    "filter_statement",
]
