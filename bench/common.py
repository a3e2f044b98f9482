"""What several post-training benchmarks share (bench/posttrain.py, bench/rl_envs.py): the tiny base model they
fine-tune, built from their own data.

    from common import build_base          # bench/ is on sys.path when a bench script runs
    base = build_base(data_dir, work / "base", seed=0)   # an Artifact whose model/ holds the model and tokenizer
"""

from __future__ import annotations

from pathlib import Path


def build_base(data_dir: Path, out: Path, seed: int):
    """A randomly initialised tiny NemotronH and a BPE tokenizer (chat markers reserved) trained on the data's
    conversations and prompts, written to `out/model`."""
    import torch  # the benches import their heavy libraries after parsing arguments, so --help stays instant

    from factory.chat.records import read_conversations, read_prompts
    from factory.chat.template import CHAT_TOKENS, with_chat_template
    from factory.model.build import build_model
    from factory.model.presets import tiny
    from factory.stage import Artifact
    from factory.stages.tokenize.bpe import as_transformers, train_bpe
    from factory.stages.tokenize.config import Config as TokenizeConfig

    texts = [m.content for c in read_conversations(data_dir / "train.jsonl") for m in c.messages]
    texts += [p.question for p in read_prompts(data_dir / "prompts.jsonl")]
    config = TokenizeConfig(vocab_size=512, extra_special_tokens=CHAT_TOKENS)
    tok = with_chat_template(as_transformers(train_bpe(iter(texts), len(texts), config), config))
    torch.manual_seed(seed)
    model = build_model(tiny(), len(tok), bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                        pad_token_id=tok.pad_token_id)
    model.save_pretrained(out / "model")
    tok.save_pretrained(out / "model")
    return Artifact(out, {"fingerprint": "base", "kind": "checkpoint", "stage": "base"})
