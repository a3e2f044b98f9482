"""The preference stage: DPO or RPO (Nemotron-4 340B) on pairs from the policy's own samples.

Inputs: "model" (a checkpoint: the policy, which is also the frozen reference), "data" (a conversations
artifact: `prompts.jsonl` trains, `heldout.jsonl` measures) and, when `judge: reward_model`, "reward_model"
(the reward_model stage's checkpoint). Output:

    model/                the trained policy (a plain transformers folder, the input's tokenizer files)
    pairs.jsonl           the training pairs: token ids, rewards, reference log-probs (written once)
    heldout_pairs.jsonl   pairs from held-out prompts, never trained on
    metrics.jsonl         one record per step (loss = mean preference loss over the step's pairs)
    preference.jsonl      per step: implicit-reward margin (chosen minus rejected), reward accuracy
    preference.png        loss, margin and reward accuracy against step
    preference.json       pair counts, held-out margin and accuracy before and after

How pairs are made: every prompt is rendered with the chat template (reasoning switch `reasoning`) and the
policy samples `samples_per_prompt` completions (seeded per prompt). With `judge: verifier` each completion
is checked by the prompt's verifier (math, code, tool, choice; `factory.verify`): a pair is a verified
completion (chosen, reward 1) and a failed one (rejected, reward 0). With `judge: reward_model` the reward
model scores them (`reward_weights` over its attributes): the best and the worst completion, when their gap
is at least `min_reward_gap`. The reference log-probabilities are computed once, with the input model, and
stored in the pair files, so a resumed attempt (the trainer's checkpoints in `checkpoints/`) trains on the
very same numbers. A prompt set that yields no training pair fails the step with one message naming it.

    from factory.posttrain import preference
    preference.run(preference.Config(loss="rpo", steps=50), {"model": sft, "data": convs}, out, StepContext("dpo"))
"""

from __future__ import annotations

import json
import math
import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from factory.stage import Artifact, StepContext
from factory.train.config import TrainConfig

__all__ = ["Config", "run"]


class Config(TrainConfig):
    """Preference optimisation: the training-loop fields of `TrainConfig`, how pairs are made, and the loss."""

    seq_len: int = Field(512, gt=0, description="Most tokens of prompt + completion; longer prompts are skipped and counted.")
    micro_batch_size: int = Field(4, gt=0, description="Pairs per forward/backward pass.")
    steps: int = Field(100, gt=0, description="Optimizer steps to train.")
    lr: float = Field(1e-5, gt=0, description="Peak learning rate.")
    warmup_steps: int = Field(5, ge=0, description="Steps of linear warmup.")
    weight_decay: float = Field(0.0, ge=0, description="Decoupled AdamW weight decay.")
    checkpoint_interval: int = Field(20, ge=0, description="Steps between resumable checkpoints (0 = none).")

    loss: Literal["dpo", "rpo"] = Field("dpo", description="dpo: sigmoid DPO; rpo: reward-aware preference optimisation.")
    beta: float = Field(0.1, gt=0, description="Scale of the implicit reward beta * log(pi / pi_ref).")
    label_smoothing: float = Field(0.0, ge=0, lt=0.5, description="DPO only: share of pairs assumed flipped (cDPO).")
    rpo_distance: Literal["sq", "bwd_kl", "fwd_kl"] = Field(
        "bwd_kl", description="RPO only: distance between the policy's margin and eta times the reward gap "
        "(bwd_kl: Nemotron-4's KL(target || policy); NeMo-Aligner's rpo_sq, rpo_bwd_kl, rpo_fwd_kl).")
    eta: float = Field(1.0, gt=0, description="RPO only: scale of the pair's reward gap (NeMo-Aligner's gt_reward_scale).")

    judge: Literal["verifier", "reward_model"] = Field(
        "verifier", description="Who ranks the samples: the prompts' verifiers, or the reward_model input.")
    reward_weights: dict[str, float] = Field(
        default_factory=lambda: {"helpfulness": 1.0},
        description="judge reward_model: the reward is this weighted sum of the reward model's attributes.")
    min_reward_gap: float = Field(0.0, ge=0, description="judge reward_model: least reward gap of a pair.")
    samples_per_prompt: int = Field(4, ge=2, description="Completions the policy samples per prompt.")
    pairs_per_prompt: int = Field(1, ge=1, description="Most pairs taken from one prompt's samples.")
    max_prompts: int | None = Field(None, gt=0, description="Use at most this many training prompts (the first ones).")
    heldout_prompts: int = Field(32, ge=0, description="Held-out prompts whose pairs measure the margin (0 = none).")
    reasoning: Literal["on", "off"] = Field("off", description="The reasoning switch the prompts are rendered with.")
    max_new_tokens: int = Field(256, gt=0, description="Most tokens per sampled completion.")
    temperature: float = Field(1.0, gt=0, description="Sampling temperature.")
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus sampling threshold.")
    generation_batch: int = Field(16, gt=0, description="Prompts (of one token length) sampled together.")

    @model_validator(mode="after")
    def _fits(self) -> Config:
        if self.max_new_tokens >= self.seq_len:
            raise ValueError(f"max_new_tokens ({self.max_new_tokens}) must be below seq_len ({self.seq_len}), "
                             "which also holds the prompt")
        return self

    def required_inputs(self) -> set[str]:
        return {"reward_model"} if self.judge == "reward_model" else set()


def run(config: Config, inputs: Mapping[str, Artifact], output: Path, ctx: StepContext) -> dict[str, float]:
    """Sample, judge and pair; train the "model" input with DPO or RPO; write `model/` and the records above."""
    import torch
    from transformers import AutoTokenizer

    from factory.artifacts import Checkpoint, Conversations
    from factory.errors import InputError
    from factory.model.checkpoints import load_model, save_model
    from factory.posttrain.chat import with_chat_template
    from factory.train.callbacks import MetricsCallback, read_metrics
    from factory.train.checkpoint import CheckpointCallback
    from factory.train.preference import PreferenceMetricsCallback, PreferenceObjective
    from factory.train.trainer import Trainer

    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    model_dir = Checkpoint.of(inputs, "model").model_dir
    data = Conversations.of(inputs, "data")
    if not (model_dir / "tokenizer.json").is_file() and not (model_dir / "tokenizer_config.json").is_file():
        raise InputError(f"{model_dir}: no tokenizer files; input 'model' must be a checkpoint saved with its tokenizer")
    tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    if not getattr(tokenizer, "chat_template", None):
        with_chat_template(tokenizer)
    policy = load_model(model_dir)

    train_file, heldout_file = output / "pairs.jsonl", output / "heldout_pairs.jsonl"
    if not train_file.is_file():  # a resumed attempt reuses the pairs it wrote (pairs.jsonl is written last)
        scorer = _reward_scorer(config, inputs) if config.judge == "reward_model" else None
        prompts = data.prompts()[: config.max_prompts]
        where = f"{data.path / 'prompts.jsonl'}"
        train_pairs, train_counts = build_pairs(policy, tokenizer, prompts, config, scorer, seed_offset=0)
        if not train_pairs:
            raise InputError(
                f"{where}: no preference pair from {len(prompts)} prompts x {config.samples_per_prompt} samples "
                f"({_describe(train_counts)}); each pair needs a {'verified and a failed' if scorer is None else 'better and a worse'} "
                "sample of one prompt: raise samples_per_prompt or temperature, or post-train the policy (sft) first")
        heldout = data.heldout()[: config.heldout_prompts]
        heldout_pairs, heldout_counts = build_pairs(policy, tokenizer, heldout, config, scorer, seed_offset=1_000_003)
        _add_reference_logps(policy, train_pairs + heldout_pairs)
        (output / "pair_counts.json").write_text(json.dumps({"train": train_counts, "heldout": heldout_counts}, indent=2))
        _write_jsonl(heldout_file, heldout_pairs)
        _write_jsonl(train_file, train_pairs)  # last: its presence marks the pairs complete
    train_pairs, heldout_pairs = _read_jsonl(train_file), _read_jsonl(heldout_file)
    counts = json.loads((output / "pair_counts.json").read_text())
    ctx.log.info("preference.pairs", train=len(train_pairs), heldout=len(heldout_pairs), **counts["train"])

    before = heldout_margins(policy, heldout_pairs, config.beta)  # margin ~0: the policy is still its reference
    torch.manual_seed(config.seed)
    objective = PreferenceObjective(policy, loss=config.loss, beta=config.beta, label_smoothing=config.label_smoothing,
                                    distance=config.rpo_distance, eta=config.eta)
    width = max(len(p["prompt_ids"]) + max(len(p["chosen_ids"]), len(p["rejected_ids"])) for p in train_pairs)
    samples = [pair_sample(p, width) for p in train_pairs]
    metrics_path, pref_path = output / "metrics.jsonl", output / "preference.jsonl"
    callbacks = [CheckpointCallback(output / "checkpoints", config.checkpoint_interval, config.keep_checkpoints),
                 MetricsCallback(metrics_path, ctx, config.log_interval),
                 PreferenceMetricsCallback(pref_path, ctx, config.log_interval)]
    state = Trainer(objective, samples, config, callbacks=callbacks).fit()
    policy.eval()

    heldout = heldout_margins(policy, heldout_pairs, config.beta)
    _plot(read_metrics(pref_path), output / "preference.png")
    ctx.log_artifact(output / "preference.png")
    save_model(policy, output / "model", tokenizer_from=model_dir)
    shutil.rmtree(output / "checkpoints", ignore_errors=True)
    losses = [r["loss"] for r in read_metrics(metrics_path) if r["loss"] is not None]
    result = {
        "train_pairs": float(len(train_pairs)), "heldout_pairs": float(len(heldout_pairs)),
        "train_samples_verified": float(counts["train"]["verified"]), "train_samples": float(counts["train"]["samples"]),
        "heldout_margin_before": before["margin"], "heldout_margin_after": heldout["margin"],
        "heldout_reward_accuracy_after": heldout["accuracy"],
        "heldout_logp_gap_before": before["logp_gap"], "heldout_logp_gap_after": heldout["logp_gap"],
        "final_loss": losses[-1] if losses else float("nan"), "steps": float(state.step),
    }
    (output / "preference.json").write_text(json.dumps({**result, "loss": config.loss, "judge": config.judge,
                                                        "pair_counts": counts}, indent=2))
    ctx.log_metrics({k: v for k, v in result.items() if math.isfinite(v)})
    return result


# --- pairs ------------------------------------------------------------------------------------------------
def build_pairs(policy, tokenizer, prompts: Sequence[Any], config: Config, scorer=None,
                seed_offset: int = 0) -> tuple[list[dict], dict[str, int]]:
    """Sample `samples_per_prompt` completions per prompt, judge them, and pair them.

    Returns the pairs (dicts of token ids, texts and rewards) and counts: prompts, samples, verified
    (judge verifier) and why prompts gave no pair."""
    import torch

    from factory.posttrain.chat import IM_END, render_prompt

    stop_ids = sorted({i for i in (tokenizer.convert_tokens_to_ids(IM_END), tokenizer.eos_token_id) if i is not None})
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stop_ids[0]
    counts = {"prompts": len(prompts), "samples": 0, "verified": 0, "too_long": 0, "all_verified": 0,
              "none_verified": 0, "no_reward_gap": 0, "pairs": 0}
    policy.eval()
    # Prompts of one token length are sampled together, with no padding (a Mamba layer's state would carry it):
    # groups of up to `generation_batch` prompts, in prompt order, each seeded from the seed and its first prompt.
    by_length: dict[int, list[tuple[int, Any, list[int]]]] = {}
    for index, prompt in enumerate(prompts):
        prompt_ids = render_prompt(tokenizer, prompt.chat(config.reasoning))
        if len(prompt_ids) + config.max_new_tokens > config.seq_len:
            counts["too_long"] += 1
            continue
        by_length.setdefault(len(prompt_ids), []).append((index, prompt, prompt_ids))
    sampled: dict[int, tuple[Any, list[int], list[list[int]]]] = {}
    k = config.samples_per_prompt
    for length, group in sorted(by_length.items()):
        for start in range(0, len(group), config.generation_batch):
            chunk = group[start : start + config.generation_batch]
            torch.manual_seed(config.seed * 7919 + seed_offset + chunk[0][0])
            with torch.no_grad():
                out = policy.generate(
                    input_ids=torch.tensor([ids for _, _, ids in chunk]),
                    attention_mask=torch.ones(len(chunk), length, dtype=torch.long),
                    do_sample=True, temperature=config.temperature, top_p=config.top_p, top_k=0,
                    max_new_tokens=config.max_new_tokens, num_return_sequences=k,
                    eos_token_id=stop_ids, pad_token_id=pad_id)  # (len(chunk) * k, length + new), prompt-major
            for j, (index, prompt, prompt_ids) in enumerate(chunk):
                sampled[index] = (prompt, prompt_ids, [_cut(row[length:].tolist(), stop_ids) for row in out[j * k : (j + 1) * k]])
    rendered = [(sampled[i][0], sampled[i][1]) for i in sorted(sampled)]
    completions = [sampled[i][2] for i in sorted(sampled)]
    counts["samples"] = sum(len(rows) for rows in completions)
    texts = [[_reply_text(tokenizer, ids) for ids in rows] for rows in completions]
    if scorer is None:
        rewards = _verify([p for p, _ in rendered], texts)
        counts["verified"] = sum(int(r) for rs in rewards for r in rs)
    else:
        rewards = scorer([p for p, _ in rendered], texts, config)

    pairs = []
    for (prompt, prompt_ids), rows, row_texts, row_rewards in zip(rendered, completions, texts, rewards):
        order = sorted(range(len(rows)), key=lambda i: (-row_rewards[i], i))  # best first, ties by sample order
        if scorer is None:
            good = [i for i in order if row_rewards[i] >= 1]
            bad = [i for i in order if row_rewards[i] < 1]
            if not good or not bad:
                counts["all_verified" if good else "none_verified"] += 1
                continue
            chosen_rejected = list(zip(good, reversed(bad)))[: config.pairs_per_prompt]
        else:
            chosen_rejected = [(order[k], order[-1 - k]) for k in range(min(config.pairs_per_prompt, len(order) // 2))]
            chosen_rejected = [(c, r) for c, r in chosen_rejected if row_rewards[c] - row_rewards[r] >= max(config.min_reward_gap, 1e-9)]
            if not chosen_rejected:
                counts["no_reward_gap"] += 1
                continue
        for c, r in chosen_rejected:
            pairs.append({"prompt_id": prompt.id, "prompt_ids": prompt_ids, "chosen_ids": rows[c], "rejected_ids": rows[r],
                          "chosen_reward": float(row_rewards[c]), "rejected_reward": float(row_rewards[r]),
                          "chosen_text": row_texts[c], "rejected_text": row_texts[r]})
    counts["pairs"] = len(pairs)
    return pairs, counts


def _cut(ids: list[int], stop_ids: Sequence[int]) -> list[int]:
    """A sampled row up to and including its first stop token (the padding after it dropped)."""
    for k, t in enumerate(ids):
        if t in stop_ids:
            return ids[: k + 1]
    return ids


def _reply_text(tokenizer, ids: Sequence[int]) -> str:
    """The reply as the verifier reads it: special tokens such as <think> kept, the end marker dropped."""
    from factory.posttrain.chat import IM_END

    text = tokenizer.decode(list(ids), skip_special_tokens=False)
    for marker in (IM_END, tokenizer.eos_token or "", tokenizer.pad_token or ""):
        if marker:
            text = text.replace(marker, "")
    return text.strip()


def _verify(prompts: Sequence[Any], replies: Sequence[Sequence[str]]) -> list[list[float]]:
    """1.0 / 0.0 per reply: the prompt's verifier accepts it. The final answer (after any think block) is what
    math, choice and code check; tool calls are checked on the whole reply, whose format includes the block."""
    from factory.posttrain.records import split_thinking
    from factory.verify import MathVerifier, check_choice, check_short_answer, check_tool_calls, run_tests

    flat = [(p, reply) for p, rs in zip(prompts, replies) for reply in rs]
    verdicts: list[float] = [0.0] * len(flat)
    math_items = [(k, p.answer, split_thinking(reply)[1]) for k, (p, reply) in enumerate(flat) if p.verifier == "math"]
    if math_items:
        with MathVerifier(workers=1) as verifier:
            for (k, _, _), v in zip(math_items, verifier.check_many([(gold, ans) for _, gold, ans in math_items])):
                verdicts[k] = float(v.correct)
    for k, (p, reply) in enumerate(flat):
        final = split_thinking(reply)[1]
        if p.verifier == "choice":
            gold, options = p.answer["gold"], p.answer["options"]
            verdicts[k] = float(check_choice(final, gold, options) if options else check_short_answer(final, gold))
        elif p.verifier == "tool":
            verdicts[k] = float(check_tool_calls(reply, p.answer).reward)
        elif p.verifier == "code":
            verdicts[k] = float(run_tests(_code_block(final), p.answer).passed)
    out, k = [], 0
    for rs in replies:
        out.append(verdicts[k : k + len(rs)])
        k += len(rs)
    return out


def _code_block(text: str) -> str:
    """The last fenced code block of a reply, or the whole reply when it holds none."""
    fence = "`" * 3
    parts = text.split(fence)
    if len(parts) < 3:
        return text
    block = parts[-2] if len(parts) % 2 == 1 else parts[-3]
    return block.split("\n", 1)[1] if block.startswith(("python\n", "py\n")) else block


def _reward_scorer(config: Config, inputs: Mapping[str, Artifact]):
    """A function (prompts, replies per prompt, config) -> rewards per reply from the reward_model input."""
    import torch
    from transformers import AutoTokenizer

    from factory.artifacts import Checkpoint
    from factory.errors import InputError
    from factory.train.reward_model import encode_exchange, load_reward_model

    folder = Checkpoint.of(inputs, "reward_model").model_dir
    model = load_reward_model(folder)
    unknown = sorted(set(config.reward_weights) - set(model.attributes))
    if unknown:
        raise InputError(f"reward_weights names {unknown}, which the reward model at {folder} does not predict "
                         f"(it predicts {list(model.attributes)})")
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    weights = [config.reward_weights.get(a, 0.0) for a in model.attributes]

    def score(prompts, replies, cfg):
        seqs = [encode_exchange(tokenizer, p.chat(cfg.reasoning), reply) for p, rs in zip(prompts, replies) for reply in rs]
        scores = (model.score(seqs) * torch.tensor(weights)).sum(dim=1).tolist() if seqs else []
        out, k = [], 0
        for rs in replies:
            out.append(scores[k : k + len(rs)])
            k += len(rs)
        return out

    return score


def _describe(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in counts.items() if k != "pairs")


# --- reference log-probs, batches, margins -------------------------------------------------------------------
def _sequences(pair: Mapping[str, Any], side: str):
    import torch

    ids = torch.tensor(pair["prompt_ids"] + pair[f"{side}_ids"], dtype=torch.long)
    mask = torch.zeros(len(ids), dtype=torch.bool)
    mask[len(pair["prompt_ids"]):] = True
    return ids, mask


def _add_reference_logps(model, pairs: list[dict]) -> None:
    """Store the frozen reference's (the input model's) sequence log-probs in each pair."""
    from factory.train.preference import reference_logps

    for side in ("chosen", "rejected"):
        seqs = [_sequences(p, side) for p in pairs]
        logps = reference_logps(model, [s[0] for s in seqs], [s[1] for s in seqs])
        for p, lp in zip(pairs, logps):
            p[f"ref_{side}_logp"] = lp


def pair_sample(pair: Mapping[str, Any], width: int) -> dict:
    """One pair as the trainer's sample: both sides right-padded to `width` tokens (see factory.train.preference)."""
    import torch
    import torch.nn.functional as F

    sample = {}
    for side in ("chosen", "rejected"):
        ids, mask = _sequences(pair, side)
        sample[f"{side}_ids"] = F.pad(ids, (0, width - len(ids)))
        sample[f"{side}_mask"] = F.pad(mask, (0, width - len(mask)))
        sample[f"ref_{side}_logp"] = torch.tensor(pair[f"ref_{side}_logp"], dtype=torch.float32)
        sample[f"{side}_reward"] = torch.tensor(pair[f"{side}_reward"], dtype=torch.float32)
    return sample


def _policy_logps(model, pairs: Sequence[Mapping[str, Any]]) -> tuple[list[float], list[float]]:
    from factory.train.preference import reference_logps

    sides = []
    for side in ("chosen", "rejected"):
        seqs = [_sequences(p, side) for p in pairs]
        sides.append(reference_logps(model, [s[0] for s in seqs], [s[1] for s in seqs]))
    return sides[0], sides[1]


def heldout_margins(model, pairs: Sequence[Mapping[str, Any]], beta: float) -> dict[str, float]:
    """On pairs with stored reference log-probs: the mean implicit-reward margin, the reward accuracy (share of
    pairs with a positive margin) and the mean log-prob gap of `model` (NaN without pairs)."""
    if not pairs:
        return {"margin": float("nan"), "accuracy": float("nan"), "logp_gap": float("nan")}
    chosen, rejected = _policy_logps(model, pairs)
    margins = [beta * ((c - p["ref_chosen_logp"]) - (r - p["ref_rejected_logp"])) for c, r, p in zip(chosen, rejected, pairs)]
    return {"margin": sum(margins) / len(margins), "accuracy": sum(m > 0 for m in margins) / len(margins),
            "logp_gap": sum(c - r for c, r in zip(chosen, rejected)) / len(pairs)}


# --- files and plot ------------------------------------------------------------------------------------------
def _write_jsonl(path: Path, records: Sequence[Mapping[str, Any]]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    os.replace(tmp, path)


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _plot(records: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
