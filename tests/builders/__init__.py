"""Tiny real artifacts for the whole suite, one builder per artifact kind, each returning a `factory.stage.Artifact`
whose `manifest.json` is shaped as the executor's (fingerprint, inputs, lineage, sources, producer):

    tok = tokenizer("bpe", random_sentences(400, seed=0), vocab_size=2048)     # or "word", or "chat"
    data = tokens(root / "tokens", tok, {"valid": texts}, corpus=corpus(root / "corpus"))
    model = checkpoint(root / "model", tok, "tiny", seed=0)                  # trained too with train=TrainConfig(...)
    chats = conversations(root / "conversations", additions(24), heldout=addition_heldout())
    evaluation = stage_output("evaluate", evaluate.Config(...), {"model": model, "tokens": data}, root / "evaluation")
    task = lm_eval_task(root / "tasks", "heldout_mc")      # an lm-eval task file (YAML) over JSONL docs

A folder a test writes by hand becomes an artifact with `publish(folder, step, kind, ...)`. The artifacts that tests
in several folders only read are built once per session by the fixtures of tests/conftest.py.
"""

from factory.lazy import lazy_exports

# The builders import torch and transformers; the names load their module on first use, so tests/conftest.py can
# name this package without a run of light tests paying for those imports. (The modules' names differ from the
# builders': importing a module sets the package attribute of its name.)
_LAZY = {
    "GPT2": "checkpoints", "TEACHER": "checkpoints", "TINY_256": "checkpoints", "checkpoint": "checkpoints", "generator": "checkpoints",
    "model_folder": "checkpoints", "teacher": "checkpoints",
    "addition_heldout": "chats", "addition_tokenizer": "chats", "additions": "chats", "choice_prompt": "chats",
    "choice_tokenizer": "chats", "conversations": "chats", "copy_task": "chats", "copy_tokenizer": "chats",
    "corpus": "corpora",
    "HELDOUT": "lm_eval_tasks", "heldout_docs": "lm_eval_tasks", "lm_eval_task": "lm_eval_tasks",
    "manifest": "manifests", "publish": "manifests", "stage_output": "manifests",
    "PASSAGE": "text", "WORD_VOCAB": "text", "WORDS": "text", "grammar_sentences": "text", "learnable_docs": "text",
    "random_sentences": "text",
    "ENDOFTEXT": "tokenizers", "S_TOKENS": "tokenizers", "tokenizer": "tokenizers",
    "grammar_tokens": "token_data", "tokens": "token_data",
}

__getattr__ = lazy_exports(__name__, {name: f"tests.builders.{module}" for name, module in _LAZY.items()})

__all__ = sorted(_LAZY)
