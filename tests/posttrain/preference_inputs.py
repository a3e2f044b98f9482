"""Tiny real inputs for the preference and reward-model tests: a conversations artifact of a copy task ("Repeat
47." -> "47", checked by the math verifier; the schema of `factory.chat.records`) and a policy checkpoint: a
tiny NemotronH with the factory's chat tokenizer, fine-tuned on the task with the trainer just long enough to
answer some prompts right and some wrong when it samples. Copying generalises to numbers never trained on,
which is what lets preference training move the margin on held-out prompts."""

from __future__ import annotations

import json
import random
from pathlib import Path

import torch

from factory.stage import Artifact

# The numbers 10..99, split: held-out numbers never appear in prompts.jsonl or train.jsonl.
NUMBERS = list(range(10, 100))
# SFT also sees three-digit numbers, so the policy learns copying as a rule rather than a table of answers.
EXTRA_SFT = random.Random(1).sample(range(100, 1000), 300)


def _split() -> tuple[list[int], list[int]]:
    numbers = list(NUMBERS)
    random.Random(0).shuffle(numbers)
    return numbers[:60], numbers[60:]


def _prompt(n: int, split: str) -> dict:
    return {"id": f"{split}-{n}", "task": "repeat_number", "verifier": "math", "answer": str(n),
            "messages": [{"role": "user", "content": f"Repeat {n}."}], "meta": {"n": n}}


def manifest(stage: str, kind: str) -> dict:
    return {"format": 1, "kind": kind, "stage": stage, "fingerprint": f"{stage}-fp", "uri": f"file://{stage}", "lineage": []}


def conversations_artifact(root: Path, prompts: list[dict] | None = None, heldout: list[dict] | None = None) -> Artifact:
    """train.jsonl (answered, reasoning off), prompts.jsonl, heldout.jsonl (other numbers), stats.json."""
    from factory.chat.records import Conversation, DataStats, Prompt, write_records, write_stats

    train_pairs, heldout_pairs = _split()
    folder = root / "conversations"
    folder.mkdir(parents=True)
    convs = [Conversation.model_validate({**_prompt(n, "train"), "reasoning": "off", "teacher": "procedural-solver",
                                          "messages": [{"role": "system", "content": "detailed thinking off"},
                                                       {"role": "user", "content": f"Repeat {n}."},
                                                       {"role": "assistant", "content": str(n)}]})
             for n in train_pairs + EXTRA_SFT]
    write_records(folder / "train.jsonl", convs)
    prompts = prompts if prompts is not None else [_prompt(n, "train") for n in train_pairs]
    heldout = heldout if heldout is not None else [_prompt(n, "heldout") for n in heldout_pairs]
    (folder / "prompts.jsonl").write_text("".join(json.dumps(p) + "\n" for p in prompts))
    write_records(folder / "heldout.jsonl", [Prompt.model_validate(p) for p in heldout])
    write_stats(folder / "stats.json", DataStats(prompts=len(prompts), heldout=len(heldout), generated=len(convs),
                                                 kept=len(convs)))
    (folder / "manifest.json").write_text(json.dumps(manifest("posttrain_data", "conversations")))
    return Artifact(folder, manifest("posttrain_data", "conversations"))


def chat_tokenizer():
    """A byte-level BPE with the chat markers reserved (the tokenize stage's code) and the chat template set."""
    from factory.chat.template import CHAT_TOKENS, with_chat_template
    from factory.stages.tokenize.bpe import as_transformers, train_bpe
    from factory.stages.tokenize.config import Config

    # No digits in the tokenizer's corpus: every digit stays its own byte token, so the answer's digits are the
    # very tokens of the prompt and copying them is a rule the model can apply to numbers it never saw.
    texts = ["Repeat. detailed thinking off system user assistant"] * 50
    config = Config(vocab_size=320, extra_special_tokens=CHAT_TOKENS)
    return with_chat_template(as_transformers(train_bpe(iter(texts), len(texts), config), config))


def policy_checkpoint(root: Path, conversations: Artifact, steps: int = 150, seed: int = 0, lr: float = 6e-3) -> Artifact:
    """A tiny NemotronH fine-tuned on train.jsonl (loss on the assistant tokens) for `steps` steps: it has learnt
    the answer format and some sums, so its samples are a mix of right and wrong."""
    import torch.nn.functional as F

    from factory.model import PRESETS
    from factory.model.build import build_model
    from factory.chat.template import encode_chat
    from factory.chat.records import read_conversations
    from factory.train.config import TrainConfig
    from factory.train.objectives.causal_lm import IGNORE_INDEX, CausalLMObjective
    from factory.train.trainer import Trainer

    tokenizer = chat_tokenizer()
    encoded = [encode_chat(tokenizer, [m.model_dump(exclude_none=True) for m in c.messages])
               for c in read_conversations(conversations.path / "train.jsonl")]
    width = max(len(ids) for ids, _ in encoded)
    samples = []
    for ids, mask in encoded:
        ids_t = F.pad(torch.tensor(ids), (0, width - len(ids)), value=tokenizer.pad_token_id)
        labels = torch.where(F.pad(torch.tensor(mask), (0, width - len(mask))).bool(), ids_t, IGNORE_INDEX)
        samples.append({"input_ids": ids_t, "labels": labels})
    torch.manual_seed(seed)
    model = build_model(PRESETS["tiny"](), len(tokenizer), eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
                        pad_token_id=tokenizer.pad_token_id)
    config = TrainConfig(seq_len=width, micro_batch_size=16, steps=steps, lr=lr, warmup_steps=5, decay_fraction=0.0,
                         checkpoint_interval=0, seed=seed)
    Trainer(CausalLMObjective(model), samples, config).fit()
    folder = root / "policy"
    (folder / "model").mkdir(parents=True)
    model.eval().save_pretrained(folder / "model")
    tokenizer.save_pretrained(folder / "model")
    (folder / "manifest.json").write_text(json.dumps(manifest("sft", "checkpoint")))
    return Artifact(folder, manifest("sft", "checkpoint"))
