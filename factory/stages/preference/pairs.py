"""The preference stage's pairs: the policy's samples per prompt, judged by the prompts' verifiers or a reward model
(paired best against worst) or compared two at a time by a generative reward model (the preferred one chosen), with the
frozen reference's log-probabilities stored beside them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from transformers import AutoTokenizer

from factory.artifacts import Checkpoint
from factory.chat.records import split_thinking
from factory.chat.template import render_prompt, stop_token_ids
from factory.errors import InputError
from factory.generate.decode import decode, supports_fast_decode
from factory.generate.sampling import Sampling, sequence_seed
from factory.jsonl import read_models
from factory.judge import Judge, Verdict
from factory.model.reward_head import encode_exchange, load_reward_model
from factory.stage import Artifact
from factory.stages.preference.config import Config
from factory.train.objectives.dpo import reference_logps
from factory.verify import MathVerifier, check_choice, check_short_answer, check_tool_calls, run_tests


class ResponseSet(BaseModel):
    """One line of a responses file: the responses to one prompt, judged and paired instead of the policy's samples."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    prompt_id: str = Field(min_length=1)
    responses: list[str] = Field(min_length=2)


def read_responses(path: Path) -> dict[str, list[str]]:
    """{prompt id: its responses} of a responses file; one `InputError` naming the file and line of a bad record."""
    out: dict[str, list[str]] = {}
    for record in read_models(path, ResponseSet):
        if record.prompt_id in out:
            raise InputError(f"{path}: prompt {record.prompt_id!r} has two lines; give each prompt's responses in one")
        out[record.prompt_id] = record.responses
    return out


def build_pairs(policy, tokenizer, prompts: Sequence[Any], config: Config, scorer=None,
                seed_offset: int = 0, genrm: Judge | None = None,
                responses: Mapping[str, Sequence[str]] | None = None) -> tuple[list[dict], dict[str, int]]:
    """Sample `samples_per_prompt` completions per prompt (or take each prompt's `responses`, read), judge them, and
    pair them.

    Returns the pairs (dicts of token ids, texts and rewards) and counts: prompts, samples, verified
    (judge verifier) and why prompts gave no pair (`no_responses`: none read for it); with `genrm` (the opened GenRM),
    its comparisons, ties and malformed verdicts by reason (`genrm_malformed_<reason>`)."""
    stop_ids = sorted(stop_token_ids(tokenizer))
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stop_ids[0]
    counts = {"prompts": len(prompts), "samples": 0, "verified": 0, "too_long": 0, "all_verified": 0,
              "none_verified": 0, "no_reward_gap": 0, "pairs": 0}
    if genrm is not None:
        counts |= {"compared": 0, "genrm_ties": 0, "no_preferred": 0}
    if responses is not None:
        counts["no_responses"] = 0
    policy.eval()
    # A NemotronH policy samples through the factory's decoder (below). Other architectures use transformers'
    # `generate`: prompts of one token length are sampled together, with no padding (a Mamba layer's state would
    # carry it): groups of up to `generation_batch` prompts, in prompt order, each seeded from the seed and its first
    # prompt.
    by_length: dict[int, list[tuple[int, Any, list[int]]]] = {}
    sampled: dict[int, tuple[Any, list[int], list[list[int]]]] = {}
    for index, prompt in enumerate(prompts):
        prompt_ids = render_prompt(tokenizer, prompt.chat(config.reasoning))
        if responses is not None:  # read, not sampled: each response's tokens as the policy would end its turn
            given = responses.get(prompt.id)
            if given is None:
                counts["no_responses"] += 1
                continue
            rows = [tokenizer(text, add_special_tokens=False)["input_ids"] + stop_token_ids(tokenizer)[:1] for text in given]
            if len(prompt_ids) + max(map(len, rows)) > config.seq_len:
                counts["too_long"] += 1
                continue
            sampled[index] = (prompt, prompt_ids, rows)
            continue
        if len(prompt_ids) + config.max_new_tokens > config.seq_len:
            counts["too_long"] += 1
            continue
        by_length.setdefault(len(prompt_ids), []).append((index, prompt, prompt_ids))
    k = config.samples_per_prompt
    if by_length and supports_fast_decode(policy):  # (nothing to sample when the responses are read)
        # The factory's decoder: every prompt x k samples as one stream, `generation_batch` prompts' samples at a
        # time, each sample from its own seed (so batching does not change it).
        todo = [entry for _, group in sorted(by_length.items()) for entry in group]
        seeds = [sequence_seed(config.seed, seed_offset, index, j) for index, _, _ in todo for j in range(k)]
        rows = decode(policy, [ids for _, _, ids in todo for _ in range(k)], config.max_new_tokens,
                      Sampling(temperature=config.temperature, top_p=config.top_p), stop_ids=stop_ids, seeds=seeds,
                      slots=config.generation_batch * k)
        for j, (index, prompt, prompt_ids) in enumerate(todo):
            sampled[index] = (prompt, prompt_ids, rows[j * k : (j + 1) * k])
    else:
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
    if genrm is not None:
        compared = genrm_comparisons(genrm, [p for p, _ in rendered], texts, config.pairs_per_prompt, counts)
        rewards = [[0.0] * len(rows) for rows in texts]  # unused: a GenRM pair is its verdict
    elif scorer is None:
        rewards = _verify([p for p, _ in rendered], texts)
        counts["verified"] = sum(int(r) for rs in rewards for r in rs)
    else:
        rewards = scorer([p for p, _ in rendered], texts, config)

    pairs = []
    for index, ((prompt, prompt_ids), rows, row_texts, row_rewards) in enumerate(zip(rendered, completions, texts, rewards)):
        order = sorted(range(len(rows)), key=lambda i: (-row_rewards[i], i))  # best first, ties by sample order
        if genrm is not None:
            chosen_rejected = [(c, r) for c, r, _, _ in compared[index]]
            row_rewards = {**{c: rc for c, _, rc, _ in compared[index]}, **{r: rr for _, r, _, rr in compared[index]}}
            if not chosen_rejected:
                counts["no_preferred"] += 1
                continue
        elif scorer is None:
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


def genrm_comparisons(genrm: Judge, prompts: Sequence[Any], replies: Sequence[Sequence[str]], pairs_per_prompt: int,
                      counts: dict[str, int]) -> list[list[tuple[int, int, float, float]]]:
    """Per prompt, (chosen, rejected, chosen's reward, rejected's reward) of each comparison the GenRM decided: samples
    0 and 1, 2 and 3, ... (at most `pairs_per_prompt` of them), each judged on its final answer (after any think
    block) with the prompt's question. Rewards are the GenRM's grades mapped to [0, 1] when it gives them (a scale),
    else 1 and 0. Ties and malformed verdicts give no pair and are counted in `counts`; above the GenRM's error
    budget of malformed verdicts the step fails."""
    asked: list[tuple[int, int, int]] = []  # (prompt, sample i, sample j)
    for p, rows in enumerate(replies):
        asked += [(p, 2 * k, 2 * k + 1) for k in range(min(pairs_per_prompt, len(rows) // 2))]
    finals = [[split_thinking(reply)[1] for reply in rows] for rows in replies]
    verdicts: list[Verdict] = genrm.judge([prompts[p].question for p, _, _ in asked], [finals[p][i] for p, i, _ in asked],
                                          [finals[p][j] for p, _, j in asked])
    genrm.check_budget(verdicts, "stages.preference.genrm")
    counts["compared"] += len(asked)
    out: list[list[tuple[int, int, float, float]]] = [[] for _ in replies]
    scale = genrm.config.scale
    for (p, i, j), verdict in zip(asked, verdicts):
        if verdict.malformed:
            key = f"genrm_malformed_{verdict.malformed}"
            counts[key] = counts.get(key, 0) + 1
        elif verdict.preferred == "tie":
            counts["genrm_ties"] += 1
        else:
            # the judge's `response` is sample i, its reference sample j; grades are (response's, reference's)
            if verdict.scores is None or scale is None:
                reward_i, reward_j = (1.0, 0.0) if verdict.preferred == "response" else (0.0, 1.0)
            else:
                reward_i, reward_j = ((g - scale[0]) / (scale[1] - scale[0]) for g in verdict.scores)
            out[p].append((i, j, reward_i, reward_j) if verdict.preferred == "response" else (j, i, reward_j, reward_i))
    return out


def _cut(ids: list[int], stop_ids: Sequence[int]) -> list[int]:
    """A sampled row up to and including its first stop token (the padding after it dropped)."""
    for k, t in enumerate(ids):
        if t in stop_ids:
            return ids[: k + 1]
    return ids


def _reply_text(tokenizer, ids: Sequence[int]) -> str:
    """The reply as the verifier reads it: special tokens such as <think> kept, the end marker dropped."""
    text = tokenizer.decode(list(ids), skip_special_tokens=False)
    for marker in (*tokenizer.convert_ids_to_tokens(stop_token_ids(tokenizer)), tokenizer.pad_token or ""):
        if marker:
            text = text.replace(marker, "")
    return text.strip()


def _verify(prompts: Sequence[Any], replies: Sequence[Sequence[str]]) -> list[list[float]]:
    """1.0 / 0.0 per reply: the prompt's verifier accepts it. The final answer (after any think block) is what
    math, choice and code check; tool calls are checked on the whole reply, whose format includes the block."""
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


def reward_scorer(config: Config, inputs: Mapping[str, Artifact]):
    """A function (prompts, replies per prompt, config) -> rewards per reply from the reward_model input."""
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


def describe_counts(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in counts.items() if k != "pairs")


# --- reference log-probs, batches, margins -------------------------------------------------------------------
def _sequences(pair: Mapping[str, Any], side: str):

    ids = torch.tensor(pair["prompt_ids"] + pair[f"{side}_ids"], dtype=torch.long)
    mask = torch.zeros(len(ids), dtype=torch.bool)
    mask[len(pair["prompt_ids"]):] = True
    return ids, mask


def add_reference_logps(model, pairs: list[dict]) -> None:
    """Store the frozen reference's (the input model's) sequence log-probs in each pair."""
    for side in ("chosen", "rejected"):
        seqs = [_sequences(p, side) for p in pairs]
        logps = reference_logps(model, [s[0] for s in seqs], [s[1] for s in seqs])
        for p, lp in zip(pairs, logps):
            p[f"ref_{side}_logp"] = lp


def pair_sample(pair: Mapping[str, Any], width: int) -> dict:
    """One pair as the trainer's sample: both sides right-padded to `width` tokens (see factory.train.objectives.dpo)."""
    sample = {}
    for side in ("chosen", "rejected"):
        ids, mask = _sequences(pair, side)
        sample[f"{side}_ids"] = F.pad(ids, (0, width - len(ids)))
        sample[f"{side}_mask"] = F.pad(mask, (0, width - len(mask)))
        sample[f"ref_{side}_logp"] = torch.tensor(pair[f"ref_{side}_logp"], dtype=torch.float32)
        sample[f"{side}_reward"] = torch.tensor(pair[f"{side}_reward"], dtype=torch.float32)
    return sample


def _policy_logps(model, pairs: Sequence[Mapping[str, Any]]) -> tuple[list[float], list[float]]:

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


