"""The preference stage: DPO or RPO (Nemotron-4 340B) on pairs from the policy's own samples.

Inputs: "model" (a checkpoint: the policy, which is also the frozen reference), "data" (a conversations
artifact: `prompts.jsonl` trains, `heldout.jsonl` measures), when `judge: reward_model`, "reward_model"
(the reward_model stage's checkpoint) and, when the GenRM names no model folder, "judge" (its model: a checkpoint,
e.g. an imported one). Output:

    model/                the trained policy (a plain transformers folder, its tokenizer)
    pairs.jsonl           the training pairs: token ids, rewards, reference log-probs (written once)
    heldout_pairs.jsonl   pairs from held-out prompts, never trained on
    metrics.jsonl         one record per step (loss = mean preference loss over the step's pairs); loss.png
    preference.jsonl      per step: implicit-reward margin (chosen minus rejected), reward accuracy
    preference.png        loss, margin and reward accuracy against step
    preference.json       pair counts, held-out margin and accuracy before and after

How pairs are made: every prompt is rendered with the chat template (reasoning switch `reasoning`) and the
policy samples `samples_per_prompt` completions (seeded per prompt), or, with `responses_file`, the responses given
for it there are taken instead (each followed by the template's end of turn). With `judge: verifier` each completion
is checked by the prompt's verifier (math, code, tool, choice; `factory.verify`): a pair is a verified
completion (chosen, reward 1) and a failed one (rejected, reward 0). With `judge: reward_model` the reward
model scores them (`reward_weights` over its attributes): the best and the worst completion, when their gap
is at least `min_reward_gap`. With `judge: genrm` a generative reward model (`genrm`, factory.judge in pairwise mode,
Nemotron 3's GenRM) compares samples 0 and 1, 2 and 3, ... of each prompt on their final answers: the one it prefers
is chosen; ties and malformed verdicts give no pair and are counted in pair_counts.json, and the GenRM (model, digest,
prompt file) is recorded in preference.json. The reference log-probabilities are computed once, with the input model, and
stored in the pair files, so a resumed attempt (the trainer's checkpoints in `checkpoints/`) trains on the
very same numbers. A prompt set that yields no training pair fails the step with one message naming it. Under
torchrun rank 0 makes the pairs and every rank trains on them (`factory.train.shell`: converters, DDP / FSDP2,
checkpoints, export).

    from factory.stages import preference
    preference.run(preference.Config(loss="rpo", steps=50), {"model": sft, "data": convs}, out, StepContext("dpo"))
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from contextlib import nullcontext
from pathlib import Path

from transformers import AutoTokenizer

from factory.artifacts import Checkpoint, Conversations
from factory.chat.template import with_chat_template
from factory.errors import InputError
from factory.jsonl import read_objects, write_objects
from factory.judge import Judge
from factory.model.checkpoints import load_model
from factory.stage import Artifact, StepContext
from factory.stages.preference.config import Config
from factory.stages.preference.pairs import (
    add_reference_logps,
    build_pairs,
    describe_counts,
    heldout_margins,
    pair_sample,
    read_responses,
    reward_scorer,
)
from factory.train.callbacks import StepLog, plt, read_metrics
from factory.train.objectives.dpo import PreferenceObjective
from factory.train.shell import TrainingShell, write_summary
from factory.train.trainer import StepMetrics, Trainer


def run(config: Config, inputs: Mapping[str, Artifact], output: Path, ctx: StepContext) -> dict[str, float]:
    """Sample, judge and pair; train the "model" input with DPO or RPO; write `model/` and the records above."""
    output = Path(output)
    model_dir = Checkpoint.of(inputs, "model").model_dir
    data = Conversations.of(inputs, "data")
    if config.genrm is not None and config.genrm.from_input:
        Checkpoint.of(inputs, "judge")  # the GenRM's model: checked before anything loads or trains
    if not (model_dir / "tokenizer.json").is_file() and not (model_dir / "tokenizer_config.json").is_file():
        raise InputError(f"{model_dir}: no tokenizer files; input 'model' must be a checkpoint saved with its tokenizer")
    tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    if not getattr(tokenizer, "chat_template", None):
        with_chat_template(tokenizer)

    with TrainingShell(config, output, ctx, plot_title="preference loss") as shell:
        policy = load_model(model_dir)
        train_file, heldout_file = output / "pairs.jsonl", output / "heldout_pairs.jsonl"
        if shell.rank == 0 and not train_file.is_file():  # a resumed attempt reuses its pairs (pairs.jsonl is last)
            _make_pairs(policy, tokenizer, data, config, inputs, output)
        shell.barrier()  # every rank trains on rank 0's pairs
        train_pairs, heldout_pairs = read_objects(train_file), read_objects(heldout_file)
        counts = json.loads((output / "pair_counts.json").read_text())
        genrm = counts.pop("genrm", None)  # who judged the pairs (judge genrm): recorded in preference.json
        ctx.log.info("preference.pairs", train=len(train_pairs), heldout=len(heldout_pairs), **counts["train"])

        before = heldout_margins(policy, heldout_pairs, config.beta)  # margin ~0: the policy is still its reference
        policy = shell.prepare(policy)
        objective = PreferenceObjective(policy, loss=config.loss, beta=config.beta, label_smoothing=config.label_smoothing,
                                        distance=config.rpo_distance, eta=config.eta)
        width = max(len(p["prompt_ids"]) + max(len(p["chosen_ids"]), len(p["rejected_ids"])) for p in train_pairs)
        samples = [pair_sample(p, width) for p in train_pairs]
        pref_path = output / "preference.jsonl"
        result = shell.fit(shell.trainer(objective, samples, tokenizer=tokenizer,
                                         callbacks=[PreferenceMetricsCallback(pref_path, ctx, config.log_interval)]))
        policy.eval()
        heldout = heldout_margins(policy, heldout_pairs, config.beta)
    if shell.rank != 0:
        return result.summary
    _plot(read_metrics(pref_path), output / "preference.png")
    ctx.log_artifact(output / "preference.png")
    summary = {
        **result.summary,
        "train_pairs": float(len(train_pairs)), "heldout_pairs": float(len(heldout_pairs)),
        "train_samples_verified": float(counts["train"]["verified"]), "train_samples": float(counts["train"]["samples"]),
        "heldout_margin_before": before["margin"], "heldout_margin_after": heldout["margin"],
        "heldout_reward_accuracy_after": heldout["accuracy"],
        "heldout_logp_gap_before": before["logp_gap"], "heldout_logp_gap_after": heldout["logp_gap"],
    }
    write_summary(output / "preference.json", {**summary, "loss": config.loss, "judge": config.judge, "pair_counts": counts,
                                               **({"genrm": genrm} if genrm is not None else {})})
    return summary


def _make_pairs(policy, tokenizer, data: Conversations, config: Config, inputs: Mapping[str, Artifact], output: Path) -> None:
    """Sample, judge and pair the training and held-out prompts with the input model (also the frozen reference),
    and write `pair_counts.json`, `heldout_pairs.jsonl` and, last, `pairs.jsonl`."""
    scorer = reward_scorer(config, inputs) if config.judge == "reward_model" else None
    prompts = data.prompts()[: config.max_prompts]
    responses = read_responses(Path(config.responses_file)) if config.responses_file is not None else None
    judging = config.genrm.with_model(Checkpoint.of(inputs, "judge").model_dir) \
        if config.genrm is not None and config.genrm.from_input else config.genrm
    with Judge(judging) if judging is not None else nullcontext() as genrm:
        train_pairs, train_counts = build_pairs(policy, tokenizer, prompts, config, scorer, seed_offset=0, genrm=genrm,
                                                responses=responses)
        if not train_pairs:
            need = {"verifier": "verified and a failed", "reward_model": "better and a worse",
                    "genrm": "preferred and a rejected"}[config.judge]
            drawn = f"x {config.samples_per_prompt} samples" if responses is None else \
                f"with responses from {config.responses_file}"
            raise InputError(
                f"{data.path / 'prompts.jsonl'}: no preference pair from {len(prompts)} prompts {drawn} "
                f"({describe_counts(train_counts)}); each pair needs a {need} sample of one prompt: raise "
                "samples_per_prompt or temperature, or post-train the policy (sft) first")
        heldout = data.heldout()[: config.heldout_prompts]
        heldout_pairs, heldout_counts = build_pairs(policy, tokenizer, heldout, config, scorer, seed_offset=1_000_003,
                                                    genrm=genrm, responses=responses)
        described = {"genrm": genrm.describe()} if genrm is not None else {}
    add_reference_logps(policy, train_pairs + heldout_pairs)
    (output / "pair_counts.json").write_text(json.dumps({"train": train_counts, "heldout": heldout_counts, **described},
                                                        indent=2))
    write_objects(output / "heldout_pairs.jsonl", heldout_pairs)
    write_objects(output / "pairs.jsonl", train_pairs)  # last: its presence marks the pairs complete


class PreferenceMetricsCallback(StepLog):
    """Per step: mean implicit-reward margin (chosen minus rejected), reward accuracy (share of pairs whose chosen
    reward is higher) and the mean rewards, from the objective's `stats`, to `path` (JSONL) and the tracker."""

    def __init__(self, path: Path, ctx: StepContext, log_interval: int = 1) -> None:
        super().__init__(path)
        self.ctx = ctx
        self.log_interval = max(1, log_interval)

    def on_train_start(self, trainer: Trainer) -> None:
        super().on_train_start(trainer)
        trainer.objective.pop_stats()

    def on_step_end(self, trainer: Trainer, metrics: StepMetrics) -> None:
        stats = trainer.objective.pop_stats()
        n = max(stats["pairs"], 1.0)
        record = {"step": metrics.step, "loss": metrics.loss, "margin": stats["margin"] / n,
                  "reward_accuracy": stats["correct"] / n, "chosen_reward": stats["chosen_reward"] / n,
                  "rejected_reward": stats["rejected_reward"] / n}
        self.append(record)
        if metrics.step % self.log_interval == 0 or metrics.step == trainer.config.steps:
            self.ctx.log_metrics({f"preference/{k}": v for k, v in record.items() if k != "step"}, step=metrics.step)


def _plot(records: list[dict], path: Path) -> None:
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.5), dpi=100)
    for ax, key in zip(axes, ("loss", "margin", "reward_accuracy")):
        points = [(r["step"], r[key]) for r in records if r.get(key) is not None]
        if points:
            steps, values = zip(*points)
            ax.plot(steps, values, linewidth=1)
        ax.set_xlabel("step")
        ax.set_title(key.replace("_", " "))
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
