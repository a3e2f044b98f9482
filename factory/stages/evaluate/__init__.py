"""Evaluate a checkpoint: held-out perplexity and bits per byte, likelihood scoring on evaluation sets (the
built-in `stdlib_cloze` last-word cloze, JSONL set files, the factory's multiple-choice files with acc/acc_norm after
its default prompt, lm-evaluation-harness task files with their own prompts, scored as lm-eval scores them),
generation benchmarks scored by `factory.verify` (HumanEval, seeded reasoning-gym tasks, task files: pass@k, maj@k,
GenSelect) or by a generative judge (`factory.judge`: judge score, malformed verdicts within an error budget), greedy
samples, and gates on the metrics.

    from factory.stages.evaluate import Config, run
    run(Config(seq_len=256, gates=["valid_perplexity <= 200"]), {"model": checkpoint, "tokens": tokens},
        out_dir, StepContext("evaluate"))

Inputs: "model" (a checkpoint of pretrain, compress, distill, sft, rl or preference: `model/` is a
`save_pretrained` folder) and "tokens" (a tokenize artifact: `valid.bin` + `valid.idx`, `tokenizer/`, `stats.json`),
which perplexity needs; with `perplexity: false` and no tokens the model folder's own tokenizer is used; "judge" (a
checkpoint, e.g. an imported model) is the model of every benchmark judge that names no model folder. Output:
`eval.json` (held-out metrics, per-set scores under "tasks", lm-eval tasks under "lm_eval", every metric under
"all_metrics", the config), `samples.jsonl` (one greedy completion per prompt), `benchmarks.jsonl` (each benchmark
item's completions and verdicts), `lm_eval_items.jsonl` (each lm-eval doc's context, continuations and
log-likelihoods), `eval_table.md`. `factory eval MODEL_DIR --task ...` runs it on any model folder without a spec.
Every figure has a `<metric>_stderr` beside it. Importing this package loads no torch.
"""

from factory.lazy import lazy_exports
from factory.stages.evaluate.config import Config

# `run` imports the stage's heavy libraries; loading a spec reads only `Config`.
__getattr__ = lazy_exports(__name__, {"run": "factory.stages.evaluate.stage"})

__all__ = ["Config", "run"]
