"""The release's README.md: Hub metadata (datasets, base model, `model-index` metrics) in YAML front matter,
and a body that describes the model, its evaluation, its training data and every artifact in its lineage."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from factory.generate.decode_speed import is_speed_metric, machine_line, pairs, rate
from factory.lineage import walk
from factory.stage import Artifact
from factory.stages.release.config import Config
from factory.stages.release.reasoning_card import reasoning_results, reasoning_section
from factory.tasks.table import format_metric, task_table

__all__ = ["lineage_chain", "model_card"]


def model_card(
    config: Config,
    model_art: Artifact,
    tokens_art: Artifact,
    eval_art: Artifact,
    evaluation: Mapping[str, Any],
    model_config: Mapping[str, Any],
    chat: bool = False,
    params: int | None = None,
) -> str:
    """README.md: YAML front matter (Hub metadata) and a body that describes the lineage; with `chat` (the
    tokenizer carries the factory's chat template) also the chat format and its reasoning switch."""
    chain = lineage_chain([eval_art, model_art, tokens_art])
    corpora = [a for a in chain if a["kind"] == "corpus"]
    # What trained the model: not the evaluations' task files and judges, nor an imported model's folder
    sources = sorted({s["uri"] for a in chain if a.get("stage_kind") not in ("evaluate", "import_model")
                      for s in a.get("sources") or [] if s.get("uri")})
    # The nearest checkpoint up the released model's own chain (its model, init or student inputs; not a judge or a
    # teacher) is its base model (none when trained from scratch); an imported model at the root is the base the Hub
    # knows.
    model_fp = model_art.manifest.get("fingerprint")
    bases = model_chain(lineage_chain([model_art]))[1:]
    imported = base_model_of(lineage_chain([model_art]))
    metrics = {k: float(v) for k, v in (evaluation.get("metrics") or {}).items()}
    tasks = evaluation.get("tasks") or {}  # benchmark sets: {name: {items, accuracy, target_logprob, ...}}

    meta: dict[str, Any] = {
        "language": list(config.language),
        "license": config.license or (imported or {}).get("license") or ("other" if imported else "apache-2.0"),
        "library_name": "transformers",
        "pipeline_tag": "text-generation",
        "tags": list(config.tags) if config.tags is not None else _default_tags(model_config),
    }
    hub_datasets = list(config.datasets)
    if hub_datasets:  # the Hub links `datasets` to its own ids: local paths and store URIs stay in the body
        meta["datasets"] = hub_datasets
    if imported and imported.get("hub_id"):  # the Hub's form: its id, and how this model derives from it
        meta["base_model"] = imported["hub_id"]
        meta["base_model_relation"] = "finetune" if imported["trained"] else "quantized"
    all_metrics = {k: float(v) for k, v in (evaluation.get("all_metrics") or metrics).items()}
    chat_benchmarks, chat_results = reasoning_results(chain, evaluation, all_metrics, eval_art.manifest.get("fingerprint"),
                                                      model_fp)
    if metrics:
        meta["model-index"] = [{"name": config.model_name, "results": [
            {
                "task": {"type": "text-generation", "name": "Language modeling"},
                "dataset": {"type": hub_datasets[0] if len(hub_datasets) == 1 else "held-out-split",
                            "name": "held-out validation split", "split": "valid"},
                "metrics": _with_stderr([(_metric_type(k), k, v) for k, v in metrics.items() if k != "valid_tokens"], all_metrics),
            },
            *[
                {
                    "task": {"type": "text-generation", "name": "Last-word cloze"},
                    "dataset": {"type": name, "name": name},
                    "metrics": _with_stderr([("accuracy", "accuracy", float(t["accuracy"])),
                                             ("target_logprob", "target_logprob", float(t["target_logprob"]))],
                                            all_metrics, prefix=f"{name}_"),
                }
                for name, t in tasks.items()
            ],
            *[
                {
                    "task": {"type": "text-generation", "name": f"{bench.get('source', '?')} benchmark"},
                    "dataset": {"type": f"{bench.get('source', '?')}:{bench.get('task') or bench['name']}", "name": bench["name"]},
                    "metrics": _with_stderr(scores, all_metrics, prefix=f"{bench['name']}_"),
                }
                for bench in (evaluation.get("config") or {}).get("benchmarks") or []
                if bench["name"] not in chat_benchmarks and (scores := _benchmark_scores(bench["name"], all_metrics))
            ],
            *chat_results,  # a chat benchmark: one result per reasoning mode
        ]}]
    elif chat_results:  # no held-out perplexity: the chat benchmarks alone
        meta["model-index"] = [{"name": config.model_name, "results": chat_results}]

    pattern = "".join({"linear_attention": "M", "full_attention": "*", "mlp": "-", "moe": "E"}.get(t, "?") for t in model_config.get("layers_block_type") or [])
    body = [f"# {config.model_name}", ""]
    if config.description:
        body += [config.description, ""]
    shape = (f"layer pattern `{pattern}`: M = Mamba-2, * = attention, - = MLP, E = MoE" if pattern else
             f"{model_config.get('num_hidden_layers', '?')} layers")
    body += [
        f"A `{model_config.get('architectures', ['?'])[0]}` model "
        f"(hidden size {model_config.get('hidden_size')}, {shape}), trained by the model factory "
        + (f"starting from {_base_line(imported)}." if imported else
           f"starting from `{bases[0]['uri']}`." if bases else "from scratch."),
        "",
        ("The weights are BF16 (`dtype` in config.json): the checkpoint's weights rounded to BF16 (the factory trains and "
        "evaluates in FP32). Every size on this card is measured against them."),
        "",
        "## Evaluation",
        "",
        *_evaluation_basis(evaluation),
        "| metric | value | standard error |",
        "|---|---|---|",
        *[f"| {k} | {format_metric(v)} | "
          f"{format_metric(all_metrics[k + '_stderr']) if k + '_stderr' in all_metrics else '-'} |"
          for k, v in all_metrics.items() if not k.endswith("_stderr") and not is_speed_metric(k)],
        "",
        *judge_lines(evaluation),
        *([*task_table(tasks), ""] if tasks else []),
        *_decode_speed_section(chain, evaluation, eval_art, model_fp),
        *reasoning_section(chain, evaluation, all_metrics, eval_art.manifest.get("fingerprint"), model_fp),
        "## Training data",
        "",
        *[f"- corpus `{a['uri']}` (fingerprint `{a['fingerprint']}`)" for a in corpora],
        *[f"- raw source `{s}`" for s in sources],
        *[f"- Hub dataset [`{h}`](https://huggingface.co/datasets/{h})" for h in hub_datasets],
        "",
        *_posttrain_section(chain),
        *_training_section(chain, params),
        *_evaluations_section(chain, eval_art.manifest.get("fingerprint")),
        "## Lineage",
        "",
        "Every artifact this release was built from, nearest first:",
        "",
        "| stage | kind | fingerprint | MLflow run | uri |",
        "|---|---|---|---|---|",
        *[
            f"| {a['stage']} | {a['kind']} | `{a['fingerprint'][:16]}` | {a.get('mlflow_run_id') or '-'} | `{a['uri']}` |"
            for a in chain
        ],
        "",
        *(_chat_section(config, post_trained=any(a["kind"] == "conversations" for a in chain)) if chat else []),
        "## Usage",
        "",
        "```python",
        "from transformers import AutoModelForCausalLM, AutoTokenizer",
        f'tokenizer = AutoTokenizer.from_pretrained("{config.repo_id or "PATH_TO_THIS_FOLDER"}")',
        f'model = AutoModelForCausalLM.from_pretrained("{config.repo_id or "PATH_TO_THIS_FOLDER"}")',
        'inputs = tokenizer("The history of the city", return_tensors="pt")',
        "out = model.generate(**inputs, max_new_tokens=32)",
        "print(tokenizer.decode(out[0], skip_special_tokens=True))",
        "```",
        "",
    ]
    front = yaml.safe_dump(meta, sort_keys=False, allow_unicode=True)
    return f"---\n{front}---\n\n" + "\n".join(body)


PROCEDURAL_TEACHER = "procedural-solver"


def _evaluation_basis(evaluation: Mapping[str, Any]) -> list[str]:
    """What the evaluation's perplexity was measured on: its windows of the held-out split, and which weights."""
    seq_len = (evaluation.get("config") or {}).get("seq_len")
    tokens = (evaluation.get("metrics") or {}).get("valid_tokens")
    if not seq_len or not tokens:
        return []
    return [(f"Measured by the evaluate step on the checkpoint in FP32: perplexity over {int(tokens) // int(seq_len)} windows of "
            f"{int(seq_len)} tokens of the held-out split, with its standard error over windows."), ""]


def _decode_speed_section(chain: list[dict[str, Any]], evaluation: Mapping[str, Any], eval_art: Artifact,
                          model_fp: str | None) -> list[str]:
    """Decode speed as an evaluate step measured it (its throughput record), naming the machine: the released
    evaluation's, else the nearest evaluation of the same model in the lineage whose eval.json is in a local folder.
    Against the transformer only where that step measured one; nothing at all without a measured record."""
    found = (eval_art.manifest.get("stage", "?"), evaluation.get("throughput"))
    if not _measured(found[1]):
        found = next(((a["stage"], record) for a in chain if a["kind"] == "evaluation"
                      and (a.get("inputs") or {}).get("model") == model_fp
                      and _measured(record := _local_results(a).get("throughput"))), found)
    stage, record = found
    if not _measured(record):
        return []
    rows = pairs(record)
    against = all(theirs is not None for _, theirs in rows)
    lines = ["## Decode speed", "",
             (f"Measured by the evaluate step `{stage}` on {machine_line(record['machine'])}, on the checkpoint it "
              "evaluated: decode tokens/s with the given number of tokens already in the cache, through the factory's "
              "decoder" + (", against a transformer of equal parameters (attention in every Mamba layer's place, "
                           "random weights)" if against else "")
              + ". The figures hold for that machine; another machine gives others."), ""]
    head = ["context", "batch", "tokens/s"] + (["transformer tokens/s", "speed against the transformer"] if against else [])
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for mine, theirs in rows:
        cells = [str(mine["context"]), str(mine["batch"]), f"{rate(mine):.1f}"]
        if against:
            cells += [f"{rate(theirs):.1f}", f"{rate(mine) / rate(theirs):.2f}x"]
        lines.append("| " + " | ".join(cells) + " |")
    return [*lines, ""]


def _measured(record: Any) -> bool:
    return isinstance(record, Mapping) and bool(record.get("cells")) and bool(record.get("machine"))


def _local_results(entry: Mapping[str, Any]) -> dict[str, Any]:
    """An evaluation's eval.json when its uri is a local folder (a store on S3 is not read here), else {}."""
    uri = str(entry.get("uri") or "")
    path = Path(uri) / "eval.json"
    if "://" in uri or not path.is_file():
        return {}
    return json.loads(path.read_text())


def _posttrain_section(chain: list[dict[str, Any]]) -> list[str]:
    """The post-training data (its teachers and reasoning modes, from the conversations artifact's metrics) and the
    post-training steps (checkpoints made from that data), base first; nothing when the model was not post-trained."""
    data = [a for a in chain if a["kind"] == "conversations"]
    if not data:
        return []
    fingerprints = {a["fingerprint"] for a in data}
    steps = [a for a in reversed(chain) if a["kind"] == "checkpoint" and fingerprints & set((a.get("inputs") or {}).values())]
    lines = ["## Post-training", ""]
    for a in data:
        m = a.get("metrics") or {}
        teachers = [k.removeprefix("kept_by_teacher.") for k in m if k.startswith("kept_by_teacher.")]
        lines.append(f"- data `{a['uri']}` (step {a['stage']}, fingerprint `{a['fingerprint'][:16]}`): "
                     f"{int(m.get('kept', 0))} verified conversations kept of {int(m.get('generated', 0))} generated "
                     f"for {int(m.get('prompts', 0))} prompts; {int(m.get('kept_on', 0))} with `detailed thinking on`, "
                     f"{int(m.get('kept_off', 0))} with `detailed thinking off`; teacher: "
                     + (", ".join(f"`{t}`" for t in teachers) or "not recorded") + ".")
        if PROCEDURAL_TEACHER in teachers:
            lines.append(f"  `{PROCEDURAL_TEACHER}` is not a language model: a program that solves the procedural tasks "
                         "and writes its steps as the reasoning trace (the offline teacher). Every kept solution passed the "
                         "task's verifier.")
    if steps:
        lines += ["", "Post-training steps, from the base model to this release: "
                  + " → ".join(f"{a['stage']} (`{a['uri']}`)" for a in steps) + "."]
    return [*lines, ""]


TRAINING_KINDS = ("pretrain", "distill", "sft", "preference", "reward_model", "rl")


def _training_section(chain: list[dict[str, Any]], params: int | None) -> list[str]:
    """The parameter count, and each training step of the lineage, base first: its steps, tokens, learning rate,
    batch, the loss (and an RL step's reward and accuracy) at its start and end."""
    steps = [a for a in reversed(chain) if a["kind"] == "checkpoint" and a.get("stage_kind") in TRAINING_KINDS]
    lines = ["## Training", ""]
    if params:
        lines += [f"{params:,} parameters ({params / 1e6:.2f} M, embeddings included).", ""]
    if not steps:
        return [*lines, "No training step in the lineage (an imported model, released as it is).", ""] if params else []
    lines += ["Each training step of the lineage, base first (loss, reward and accuracy: the first and last logged "
              "values; an RL step's are means over the first and last quarter of its rollouts):", "",
              "| step | kind | steps | tokens | learning rate | sequences x tokens per step | loss | reward | accuracy |",
              "|---|---|---|---|---|---|---|---|---|"]
    for a in steps:
        c, m = a.get("config") or {}, a.get("metrics") or {}
        batch = c.get("micro_batch_size", 0) * c.get("grad_accum", 1) * int(m.get("world_size", 1) or 1)
        width = c.get("seq_len") or "-"
        lines.append(
            f"| {a['stage']} | {a['stage_kind']} | {_count(m.get('steps'))} | {_count(m.get('tokens_seen'))} | "
            f"{c.get('lr', '-')} | {batch or '-'} x {width} | {_span(m, 'initial_loss', 'final_loss')} | "
            f"{_span(m, 'reward_first', 'reward_last')} | {_span(m, 'accuracy_first', 'accuracy_last')} |")
    return [*lines, ""]


def _evaluations_section(chain: list[dict[str, Any]], released_eval: str | None) -> list[str]:
    """Before and after: every evaluation in the lineage (a gated evaluate step's baselines), with the model it scored."""
    evals = [a for a in reversed(chain) if a["kind"] == "evaluation"]
    if len(evals) < 2:
        return []
    stage_of = {a["fingerprint"]: a["stage"] for a in chain}
    names = sorted({k for a in evals for k in (a.get("metrics") or {}) if k.endswith(("perplexity", "pass@1", "accuracy"))
                    and not k.endswith("_stderr")})
    lines = ["## Evaluations along the lineage", "",
             "Every evaluation in this release's lineage (its own, and the baselines wired to it), earliest first "
             "(standard errors in parentheses), so a figure after post-training reads against the one before it:", "",
             "| evaluation | model | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(names)]
    for a in evals:
        m = a.get("metrics") or {}
        model = stage_of.get((a.get("inputs") or {}).get("model"), "?")
        cells = [f"{format_metric(m[k])} ({format_metric(m[k + '_stderr'])})" if k in m and k + "_stderr" in m
                 else format_metric(m[k]) if k in m else "-" for k in names]
        mark = " (this release's)" if a["fingerprint"] == released_eval else ""
        lines.append(f"| {a['stage']}{mark} | {model} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def _count(value: Any) -> str:
    return f"{int(value):,}" if isinstance(value, (int, float)) and value == value else "-"


def _span(metrics: Mapping[str, Any], first: str, last: str) -> str:
    if first not in metrics or last not in metrics:
        return "-"
    return f"{float(metrics[first]):.4f} → {float(metrics[last]):.4f}"


def _chat_section(config: Config, post_trained: bool) -> list[str]:
    """How to chat with the release: the template's reasoning switch, in `apply_chat_template` and `transformers serve`."""
    repo = config.repo_id or "PATH_TO_THIS_FOLDER"
    return [
        "## Chat format and reasoning switch",
        "",
        ("The tokenizer carries a ChatML chat template (`<|im_start|>role ... <|im_end|>`). The system prompt "
        "`detailed thinking on` asks for an answer that opens with a `<think>...</think>` block; "
        "`detailed thinking off` (the default when no system prompt is given) for an answer without one. "
        "`enable_thinking=True|False` in `apply_chat_template` overrides the system prompt. "
        "Tool calls are written as `<tool_call>[{\"name\": ..., \"arguments\": {...}}]</tool_call>`; generation "
        "stops at `<|im_end|>`."),
        "",
        "```python",
        "from transformers import AutoModelForCausalLM, AutoTokenizer",
        f'tokenizer = AutoTokenizer.from_pretrained("{repo}")',
        f'model = AutoModelForCausalLM.from_pretrained("{repo}")',
        'messages = [{"role": "user", "content": "What is 2 + 3?"}]',
        ("inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True, enable_thinking=True, "
         'return_dict=True, return_tensors="pt")'),
        "out = model.generate(**inputs, max_new_tokens=128)",
        'print(tokenizer.decode(out[0, inputs["input_ids"].shape[1]:]))',
        "```",
        "",
        (f"Serve it with `transformers serve {repo}` and set the switch per request: the system prompt "
         "`detailed thinking on|off`, or `\"chat_template_kwargs\": {\"enable_thinking\": false}` in the request. "
         "Do not start the server with `--reasoning on|off` unless every request should think (or not): it sets "
         "`enable_thinking` for every request, over the request's own system prompt."),
        "",
        "```bash",
        "curl -s localhost:8000/v1/chat/completions -H 'Content-Type: application/json' -d '{",
        f'  "model": "{repo}", "max_tokens": 64,',
        '  "messages": [{"role": "user", "content": "What is 2 + 3?"}],',
        '  "chat_template_kwargs": {"enable_thinking": false}}\'',
        "```",
        "",
        *([] if post_trained else [
            ("This model was not post-trained: its tokenizer carries the template, but nothing taught the model to "
            "follow the switch (post-training steps do: see `examples/posttrain.yaml`)."), ""]),
    ]


def _default_tags(model_config: Mapping[str, Any]) -> list[str]:
    """The architecture's Hub tags, then the factory's: the hybrid's for NemotronH, the model type for any other."""
    if model_config.get("model_type") == "nemotron_h":
        return ["nemotron-h", "hybrid-mamba", "model-factory"]
    return [str(model_config.get("model_type", "causal-lm")), "model-factory"]


# The inputs through which a checkpoint's weights come from another checkpoint (a judge, teacher or reward model
# shapes the training but is not the model's ancestor in weights)
MODEL_INPUTS = ("model", "init", "student")


def model_chain(chain: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The first entry of a lineage chain and the checkpoints its weights come from, nearest first: followed through
    the `MODEL_INPUTS` of each entry, as far as the chain records them."""
    if not chain:
        return []
    by_fp = {a["fingerprint"]: a for a in chain}
    path = [chain[0]]
    while True:
        inputs = path[-1].get("inputs") or {}
        up = next((by_fp[inputs[n]] for n in MODEL_INPUTS if inputs.get(n) in by_fp), None)
        if up is None or up in path:
            return path
        path.append(up)


def base_model_of(chain: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The imported model at the root of a lineage chain (an import_model step's): its Hub id (its config's `hub_id`,
    or its hf:// source's), source, revision, license (the config's, else what its import.json found in the model's
    own card, when the store is a local folder) and whether a later step trained on it; None without one."""
    chain = model_chain(chain)
    at = next((i for i, a in enumerate(chain) if a.get("stage_kind") == "import_model"), None)
    if at is None:
        return None
    entry, config = chain[at], chain[at].get("config") or {}
    source = str(config.get("source", ""))
    hub_id = config.get("hub_id") or (source[len("hf://"):].split("@")[0].rstrip("/") if source.startswith("hf://") else None)
    record: dict[str, Any] = {}
    uri = str(entry.get("uri") or "")
    if uri and "://" not in uri and (Path(uri) / "import.json").is_file():
        record = json.loads((Path(uri) / "import.json").read_text())
    trained = any(a["kind"] == "checkpoint" for a in chain[:at])  # nearest first: checkpoints made after the import
    return {"hub_id": hub_id, "source": source, "revision": record.get("revision"),
            "license": config.get("license") or record.get("license"), "trained": trained,
            "architecture": record.get("architecture"), "params": record.get("params")}


def _base_line(imported: Mapping[str, Any]) -> str:
    name = f"`{imported['hub_id']}`" if imported.get("hub_id") else f"`{imported['source']}`"
    revision = f" at revision `{imported['revision']}`" if imported.get("revision") else ""
    return f"the imported model {name}{revision}"


def lineage_chain(artifacts: list[Artifact]) -> list[dict[str, Any]]:
    """Each artifact, then all its ancestors (from the manifests' `lineage`), nearest first, once each:
    `factory.lineage.walk`, with an artifact's local folder as its uri when its manifest names none."""
    return walk([{"stage": "?", "kind": "?", **a.manifest, "uri": a.manifest.get("uri", str(a.path)),
                  "fingerprint": a.manifest.get("fingerprint", "")} for a in artifacts], direct_first=True)


_COUNTS = ("items", "skipped", "malformed", "unanswered")
_JUDGE_COUNTS = ("judge_malformed", "judge_malformed_rate")  # a judge benchmark's counts, per run: not scores


def judge_lines(evaluation: Mapping[str, Any]) -> list[str]:
    """Who scored each judge benchmark (eval.json's `benchmarks.<name>.judge`): the judge model and its digest, its
    prompt file and digest, the verdict's shape, and the malformed verdicts by reason ([] without judge benchmarks)."""
    judged = {name: how["judge"] for name, how in (evaluation.get("benchmarks") or {}).items() if how.get("judge")}
    if not judged:
        return []
    lines = [("Judge benchmarks are scored by a generative judge whose verdicts are parsed strictly: a malformed verdict "
              "is counted, not scored (`<benchmark>_judge_score` is the mean over the verdicts that parse)."), ""]
    for name, judge in judged.items():
        digest = f" (`{judge['digest']}`)" if judge.get("digest") else ""
        scale = f" on {judge['scale'][0]}-{judge['scale'][1]}" if judge.get("scale") else ""
        orders = ", both orders" if judge.get("both_orders") else ""
        malformed = ", ".join(f"{reason} {count}" for reason, count in (judge.get("malformed") or {}).items()) or "none"
        lines.append(f"- `{name}`: judge `{judge['model']}`{digest}, prompt `{Path(judge['prompt']).name}` "
                     f"(`{judge['prompt_digest']}`), {judge['mode']}{scale}{orders}; malformed verdicts: {malformed}")
    return [*lines, ""]


def _benchmark_scores(name: str, all_metrics: Mapping[str, float]) -> list[tuple[str, str, float]]:
    """(type, name, value) of a generation benchmark's scores (pass@k, maj@k, GenSelect), not its counts."""
    out = []
    for key, value in all_metrics.items():
        metric = key.removeprefix(f"{name}_")
        if key.startswith(f"{name}_") and not key.endswith(("_stderr", *_JUDGE_COUNTS)) and metric not in _COUNTS:
            out.append((metric, metric, value))
    return out


def _with_stderr(entries: list[tuple[str, str, float]], all_metrics: Mapping[str, float], prefix: str = "") -> list[dict[str, Any]]:
    """model-index metric entries; each one's standard error (from the evaluation's `<metric>_stderr`) follows it as
    an entry of type `<type>_stderr`, since the Hub's metric schema has no field for an error bar."""
    out: list[dict[str, Any]] = []
    for kind, name, value in entries:
        out.append({"type": kind, "name": name, "value": value})
        stderr = all_metrics.get(f"{prefix}{name}_stderr")
        if stderr is not None:
            out.append({"type": f"{kind}_stderr", "name": f"{name} standard error", "value": float(stderr)})
    return out


def _metric_type(name: str) -> str:
    return name.removeprefix("valid_")
