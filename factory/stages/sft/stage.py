"""The SFT stage (Llama-Nemotron): supervised fine-tuning on verified conversations, loss on assistant tokens only.

Inputs: "model" (a checkpoint: `model/` is a save_pretrained folder with its tokenizer, as pretrain and
distill write it) and "data" (a conversations artifact, `factory.chat.records`: `train.jsonl` trains,
`heldout.jsonl` measures the reasoning switch). Output:

    model/          the fine-tuned `NemotronHForCausalLM` with the tokenizer and the chat template; its
                    generation config stops at `<|im_end|>` as well as EOS
    metrics.jsonl   one record per step: loss per assistant token, lr, grad_norm, tokens (assistant tokens)
    loss.png        the training-loss curve
    sft.json        the run's summary (the metrics below)

Data. Each conversation is rendered with the factory's chat template (`factory.chat.template`): its system
turn is the reasoning switch, `detailed thinking on|off`, and the template's generation markers give the
assistant mask. `reasoning_on_fraction` sets the share of `on` conversations (subsampling the larger mode).
A conversation longer than `seq_len` tokens is skipped and counted (`truncated_fraction`), never cut through
its answer. A `valid_fraction` of the prompts (by a stable hash of the user turn, so a prompt's two modes
stay on one side) is held out for the assistant-token loss before and after training.

Packing: none. One conversation per row, right-padded, padding masked out of the loss. transformers'
NemotronH Mamba mixer takes no sequence boundaries, so packing would carry one conversation's SSM and
convolution state into the next (leakage across documents); rows avoid that without state resets.

Preflight: the step fails with one message naming the data set when it holds no conversations, when none
fits `seq_len`, when the reasoning mix leaves nothing, or when a batch's assistant mask is empty or covers
every token (`factory.train.objectives.chat_lm.ChatLMObjective`). It never trains on nothing.

Training runs through the training-stage shell (`factory.train.shell`): the precision converters, DDP / FSDP2 under
torchrun, resumable checkpoints (`checkpoints/step-NNNNNN/`, removed once `model/` is written; a restarted attempt
reproduces the uninterrupted run), the metrics and loss-plot callbacks and the Hugging Face export.

Metrics: `valid_loss_before` / `valid_loss_after` (held-out assistant tokens), `think_rate_on` /
`think_rate_off` (share of held-out prompts whose greedy answer opens with `<think>` under each switch),
`assistant_tokens`, `conversations`, `truncated_fraction`, `final_loss`, `steps`.

    from factory.stages import sft
    sft.run(sft.Config(steps=200), {"model": ckpt, "data": conversations}, out_dir, StepContext("sft"))
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from factory.artifacts import Checkpoint, Conversations
from factory.chat.template import THINK_OPEN, chat_tokenizer, encode_chat, render_prompt, stop_token_ids
from factory.errors import InputError
from factory.model.checkpoints import load_model
from factory.stage import Artifact, StepContext
from factory.stages.sft.config import Config
from factory.train.objectives.chat_lm import ChatLMObjective, chat_example
from factory.train.shell import TrainingShell, write_summary


def run(config: Config, inputs: Mapping[str, Artifact], output: Path, ctx: StepContext) -> dict[str, float]:
    """Fine-tune the "model" input on the "data" input's conversations; write `model/`, `metrics.jsonl`,
    `loss.png`, `sft.json` (rank 0)."""
    model_dir = Checkpoint.of(inputs, "model").model_dir
    data = Conversations.of(inputs, "data")
    where = str(data.path / "train.jsonl")
    if not (model_dir / "tokenizer.json").is_file():
        raise InputError(f"{model_dir}: no tokenizer.json; the 'model' checkpoint must carry its tokenizer "
                         "(pretrain and distill save it beside the weights)")
    tokenizer = chat_tokenizer(model_dir)

    conversations = data.train()
    if not conversations:
        raise InputError(f"{where}: no conversations; SFT never trains on nothing (did every teacher solution fail "
                         "verification? see stats.json)")
    chosen = mix_reasoning(conversations, config.reasoning_on_fraction, config.seed, where)
    train_set, valid_set = split_heldout(chosen, config.valid_fraction, config.seed)
    encoded, truncated = encode_all(tokenizer, train_set, config.seq_len)
    valid_encoded, _ = encode_all(tokenizer, valid_set[: config.valid_max], config.seq_len)
    if not encoded:
        raise InputError(f"{where}: all {len(train_set)} training conversations are longer than seq_len = "
                         f"{config.seq_len} tokens; raise seq_len")
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    length = max(len(ids) for ids, _ in encoded + valid_encoded)  # one row shape for the whole run
    rows = [chat_example(ids, mask, length, pad_id) for ids, mask in encoded]
    valid_rows = [chat_example(ids, mask, length, pad_id) for ids, mask in valid_encoded]
    assistant_tokens = sum(sum(mask) for _, mask in encoded)
    n_on = sum(c.reasoning == "on" for c in train_set)
    profile = {"conversations": len(train_set), "kept": len(rows), "truncated": truncated, "on": n_on,
               "off": len(train_set) - n_on, "valid": len(valid_rows), "assistant_tokens": assistant_tokens,
               "row_length": length}
    ctx.log.info("sft_data", **profile)

    with TrainingShell(config, output, ctx, plot_title="SFT loss (assistant tokens)") as shell:
        if shell.rank == 0:
            ctx.log_dataset(name="conversations/train", uri=inputs["data"].uri,
                            digest=inputs["data"].manifest.get("fingerprint", ""), context="training", profile=profile)
        model = load_model(model_dir)
        if len(tokenizer) > model.config.vocab_size:
            raise InputError(f"{model_dir}: the tokenizer has {len(tokenizer)} tokens, more than the model's vocab_size "
                             f"{model.config.vocab_size}")
        # a chat reply ends with its turn: EOS and the template's end-of-turn marker
        model.generation_config.eos_token_id = [tokenizer.eos_token_id,
                                                *[i for i in stop_token_ids(tokenizer) if i != tokenizer.eos_token_id]]
        model.generation_config.pad_token_id = pad_id
        model = shell.prepare(model)
        objective = ChatLMObjective(model, where)
        trainer = shell.trainer(objective, rows, tokenizer=tokenizer)
        # after the trainer has built its optimizer: an FSDP2 forward before that breaks the optimizer's state dict;
        # before fit, so a resumed attempt measures the same starting model (fit restores the checkpoint)
        valid_before = assistant_loss(objective, valid_rows, config.micro_batch_size, shell.device)
        result = shell.fit(trainer)
        valid_after = assistant_loss(objective, valid_rows, config.micro_batch_size, shell.device)
        switch = think_rates(model, tokenizer, data.heldout()[: config.switch_prompts], shell.device)
    if shell.rank != 0:
        return result.summary
    summary = {**result.summary, "valid_loss_before": valid_before, "valid_loss_after": valid_after, **switch,
               "conversations": float(len(rows)), "assistant_tokens": float(assistant_tokens),
               "truncated_fraction": truncated / len(train_set), "reasoning_on_fraction": n_on / len(train_set)}
    write_summary(output / "sft.json", summary)
    ctx.log.info("sft_done", **{k: round(v, 6) for k, v in summary.items()})
    return summary


def mix_reasoning(conversations: Sequence[Any], on_fraction: float | None, seed: int, where: str) -> list[Any]:
    """The conversations with `on_fraction` of them in `detailed thinking on` (the larger mode subsampled,
    seeded, order kept); all of them when `on_fraction` is None."""
    if on_fraction is None:
        return list(conversations)
    on = [i for i, c in enumerate(conversations) if c.reasoning == "on"]
    off = [i for i, c in enumerate(conversations) if c.reasoning == "off"]
    wanted = [("on", on, on_fraction), ("off", off, 1 - on_fraction)]
    missing = [mode for mode, idx, share in wanted if share > 0 and not idx]
    if missing:
        raise InputError(f"{where}: no conversations in reasoning mode {missing[0]!r}, but reasoning_on_fraction = "
                         f"{on_fraction} asks for them")
    total = min(len(idx) / share for _, idx, share in wanted if share > 0)
    rng = random.Random(seed)
    keep = set()
    for _, idx, share in wanted:
        keep |= set(rng.sample(idx, min(len(idx), round(total * share))))
    return [c for i, c in enumerate(conversations) if i in keep]


def split_heldout(conversations: Sequence[Any], fraction: float, seed: int) -> tuple[list[Any], list[Any]]:
    """(train, valid): a conversation is held out when a stable hash of its user turns falls below `fraction`,
    so both reasoning modes of one prompt land on the same side. Training keeps everything when the split would
    leave it empty."""
    def held(c) -> bool:
        text = "\x1f".join(m.content for m in c.messages if m.role == "user")
        digest = hashlib.sha256(f"{seed}\x1e{text}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64 < fraction

    valid = [c for c in conversations if held(c)]
    train = [c for c in conversations if not held(c)]
    return (train, valid) if train else (list(conversations), [])


def encode_all(tokenizer, conversations: Sequence[Any], max_len: int) -> tuple[list[tuple[list[int], list[int]]], int]:
    """(ids, assistant mask) of each conversation that fits `max_len`, and how many did not."""
    kept, truncated = [], 0
    for c in conversations:
        out = encode_chat(tokenizer, [m.model_dump(exclude_none=True) for m in c.messages], max_len)
        if out is None:
            truncated += 1
        else:
            kept.append(out)
    return kept, truncated


def assistant_loss(objective, rows: Sequence[Mapping[str, Any]], batch_size: int, device: str) -> float:
    """Mean cross entropy per assistant token over `rows` (NaN without rows)."""
    if not rows:
        return math.nan
    total, count = 0.0, 0
    was_training = objective.training
    objective.eval()
    with torch.no_grad():
        for start in range(0, len(rows), batch_size):
            chunk = rows[start: start + batch_size]
            batch = {k: torch.stack([r[k] for r in chunk]).to(device) for k in chunk[0]}
            out = objective(batch)
            total += float(out.loss_sum)
            count += out.tokens
    objective.train(was_training)
    return total / max(count, 1)


def think_rates(model, tokenizer, prompts: Sequence[Any], device: str) -> dict[str, float]:
    """Share of `prompts` whose greedy answer opens with `<think>`, under `detailed thinking on` and `off`.

    Greedy decoding's first token is the argmax after the prompt, so one forward pass per prompt decides it."""
    think = tokenizer.convert_tokens_to_ids(THINK_OPEN)
    if not prompts or think in (None, tokenizer.unk_token_id):  # a kept template without a <think> token: not measured
        return {}
    rates = {}
    model.eval()
    with torch.no_grad():
        for mode in ("on", "off"):
            hits = 0
            for prompt in prompts:
                ids = torch.tensor([render_prompt(tokenizer, prompt.chat(mode))], device=device)
                logits = model(input_ids=ids, use_cache=False).logits[0, -1]
                hits += int(int(logits.argmax()) == think)
            rates[f"think_rate_{mode}"] = hits / len(prompts)
    return rates
