"""Evaluate a checkpoint: held-out perplexity and bits per byte, likelihood scoring on evaluation sets (the
built-in `stdlib_cloze` last-word cloze, JSONL set files, multiple choice with acc/acc_norm), generation
benchmarks scored by `factory.verify` (HumanEval, seeded reasoning-gym tasks, task files: pass@k, maj@k,
GenSelect), greedy samples, and gates on the metrics.

    from factory.evaluate import Config, run
    run(Config(seq_len=256, gates=["valid_perplexity <= 200"]), {"model": checkpoint, "tokens": tokens},
        out_dir, StepContext("evaluate"))

Inputs: "model" (a pretrain artifact: `model/` is a `save_pretrained` folder) and "tokens" (a tokenize
artifact: `valid.bin` + `valid.idx`, `tokenizer/`, `stats.json`). Output: `eval.json` (held-out metrics,
per-set scores under "tasks", every metric under "all_metrics", the config), `samples.jsonl` (one greedy
completion per prompt), `benchmarks.jsonl` (each benchmark item's completions and verdicts), `eval_table.md`.
Every figure has a `<metric>_stderr` beside it. Importing this package loads no torch.
"""

from factory.evaluate.benchmarks import BenchmarkConfig
from factory.evaluate.config import KIND, Config, GeneratorChoice
from factory.evaluate.gates import GateFailed, check_gates, parse_gate
from factory.evaluate.perplexity import heldout_nll
from factory.evaluate.samples import generate_samples, load_model, score_sets
from factory.evaluate.stage import run
from factory.tasks.builtin import DEFAULT_PROMPTS, builtin_eval_items
from factory.tasks.table import format_metric, task_table

__all__ = [
    "DEFAULT_PROMPTS", "KIND", "BenchmarkConfig", "Config", "GateFailed", "GeneratorChoice", "builtin_eval_items",
    "check_gates", "format_metric", "generate_samples", "heldout_nll", "load_model", "parse_gate",
    "run", "score_sets", "task_table",
]
