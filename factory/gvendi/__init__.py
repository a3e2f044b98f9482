"""G-Vendi, after Prismatic Synthesis (Jung et al. 2025): how diverse a dataset is where it matters for
training, in the loss gradients of a small proxy model.

For each example the proxy's loss gradient (every parameter) is taken on its completion tokens only: the
assistant turns of a conversation, or, for plain corpus text, which has no prompt, every token of the
document's first window of `seq_len + 1` tokens. Each gradient is projected to `dim` (1024) dimensions by
a seeded Rademacher (+-1) random projection, generated in row blocks so a params x 1024 matrix is never held,
and L2-normalised: G is (n, dim) with unit rows. The score is

    gvendi = exp(H(eig(G^T G / n)))      H: Shannon entropy of the eigenvalues, normalised to sum to 1

the Vendi score with a linear kernel: 1 for n identical gradients, n for n orthogonal ones. Per-example
gradients come from `torch.func` (`vmap(grad(...))` over a `functional_call` of the proxy, a batch at a
time), with a plain backward pass per example as the fallback for a model whose ops vmap cannot batch.

The proxy is a trained checkpoint when one is given (`model_dir`, with its tokenizer), else a freshly
initialised model of a factory preset (`tiny` by default, seeded) over UTF-8 bytes (`factory.model.byte_level`),
so the corpus can be measured before any tokenizer or checkpoint exists. Scores are comparable between datasets
measured with the same proxy, `seq_len`, `dim` and `seed`.

    settings     ProxySettings, GVendiSettings (the spec's `gvendi:`), TargetedSynthesis (synth's `targeted:`)
    examples     token windows with a completion mask, from corpus text, chats and dataset artifacts
    proxy        the proxy model and its tokenizer
    score        per-example gradients, the random projection, the score
    measure      the report of one dataset artifact
    hook         the executor's output hook (`factory.steps.OUTPUT_HOOKS`): gvendi.json and the `gvendi` metric of
                 every dataset artifact, when the spec sets `gvendi:`
    targeted     Prismatic-style targeted synthesis, which the synth stage runs when `targeted.enabled`

    from factory.gvendi import GVendiSettings, measure_artifact
    report = measure_artifact("store/curate/<fp>", "corpus", GVendiSettings(sample=64))   # {"gvendi": ..., ...}
"""

from factory.gvendi.config import DATASET_KINDS, GVendiSettings, ProxySettings, TargetedSynthesis
from factory.lazy import lazy_exports

# The settings are light (the spec embeds them); everything else needs torch, so it loads on first use.
_LAZY = {
    "Example": "examples", "conversation_example": "examples", "read_examples": "examples", "text_example": "examples",
    "Proxy": "proxy", "load_proxy": "proxy",
    "gradient_features": "score", "gvendi_score": "score", "per_example_gradients": "score",
    "rademacher_project": "score",
    "measure_artifact": "measure",
    "measure_output": "hook",
    "targeted_filter": "targeted", "targeted_selection": "targeted",
}

__getattr__ = lazy_exports(__name__, {name: f"factory.gvendi.{module}" for name, module in _LAZY.items()})

__all__ = ["DATASET_KINDS", "GVendiSettings", "ProxySettings", "TargetedSynthesis", *sorted(_LAZY)]
