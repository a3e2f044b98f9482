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
initialised model of a factory preset (`tiny` by default, seeded) over UTF-8 bytes (a 256-token
vocabulary), so the corpus can be measured before any tokenizer or checkpoint exists. Scores are
comparable between datasets measured with the same proxy, `seq_len`, `dim` and `seed`.

Prismatic-style targeted synthesis (`targeted_selection`, `targeted_filter`): k-means on the gradients of
the existing data and the generated candidates together, a cluster's size being its number of existing
examples; then keep the candidates that land in the smallest clusters (greedily: each kept candidate comes
from the cluster that is smallest at that moment), which fills the gaps of the dataset.

    from factory.gvendi import GVendiSettings, gvendi_score, measure_artifact
    report = measure_artifact("store/curate/<fp>", "corpus", GVendiSettings(sample=64))   # {"gvendi": ..., ...}

The executor calls `measure_output` for every dataset artifact (corpus, conversations) when the spec sets
`gvendi:`; synth calls `targeted_filter` when its config sets `targeted.enabled`. Importing this module loads no
torch.
"""

from __future__ import annotations

import json
import math
import random
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import Field

from factory.errors import InputError
from factory.logs import get_logger
from factory.stage import StageConfig, no_effect

__all__ = ["DATASET_KINDS", "Example", "GVendiSettings", "Proxy", "ProxySettings", "TargetedSynthesis", "conversation_example",
           "gradient_features", "gvendi_score", "load_proxy", "measure_artifact", "measure_output", "per_example_gradients",
           "rademacher_project", "read_examples", "targeted_filter", "targeted_selection", "text_example"]

log = get_logger("factory.gvendi")

# Artifact kinds that are datasets, and so get a G-Vendi score when the spec asks for one.
DATASET_KINDS = ("corpus", "conversations")
BYTE_VOCAB = 256
_PROJECTION_ROWS = 4096  # parameters per block of the random projection (fixed: the matrix depends on it)
_MARKERS = ("<|im_start|>", "<|im_end|>")  # the chat markers conversations are rendered with


class ProxySettings(StageConfig):
    """The proxy model whose gradients define the space, and how examples are cut and projected."""

    preset: str = Field("tiny", description="Model preset (factory.model.PRESETS) of the freshly initialised proxy "
                                            "used when model_dir is unset; its vocabulary is UTF-8 bytes.")
    model_dir: str | None = Field(None, json_schema_extra={"external_input": True},
                                  description="A trained proxy: a save_pretrained NemotronH folder (a checkpoint "
                                              "artifact's model/).")
    tokenizer_dir: str | None = Field(None, json_schema_extra={"external_input": True},
                                      description="Folder with the proxy's tokenizer.json (a tokens artifact's "
                                                  "tokenizer/); default: model_dir itself.")
    seq_len: int = Field(512, ge=8, description="Tokens per example window (the proxy sees seq_len + 1). Shorter windows "
                                               "give noisier gradients: below ~256 bytes, domains blur into each other.")
    dim: int = Field(1024, ge=8, description="Dimensions of the Rademacher random projection of each gradient.")
    seed: int = Field(0, description="Seed of the fresh proxy's weights, the projection and the sampling.")
    batch_size: int = no_effect(16, "Examples per vmap'd gradient call (memory against speed).")


class GVendiSettings(ProxySettings):
    """G-Vendi of a dataset artifact: how many examples to draw, and the proxy (see ProxySettings)."""

    sample: int = Field(64, ge=2, description="Examples drawn (seeded, uniformly) from the dataset; the cost is one "
                                              "forward and backward pass of the proxy per example, plus the projection.")


class TargetedSynthesis(StageConfig):
    """Prismatic-style targeted synthesis: keep the generated documents that land in the smallest gradient
    clusters of the source data."""

    enabled: bool = Field(False, description="Filter the generated documents this way; off keeps every one.")
    clusters: int = Field(8, ge=2, description="k of the k-means over the source and generated documents' gradients.")
    keep_fraction: float = Field(0.5, gt=0.0, le=1.0, description="Share of the generated documents kept.")
    reference_docs: int = Field(256, ge=2, description="Source documents (a seeded sample) whose gradients are clustered.")
    proxy: ProxySettings = Field(default_factory=ProxySettings, description="Proxy model and projection.")


# ------------------------------------------------------------------------------------------------ examples

@dataclass(frozen=True)
class Example:
    """Token ids (T,) and a 0/1 mask (T,) of the tokens that are completion; the loss is on targets ids[1:]
    whose mask is 1."""

    ids: tuple[int, ...]
    mask: tuple[int, ...]


def byte_encode(text: str) -> list[int]:
    """The byte proxy's tokenizer: the text's UTF-8 bytes."""
    return list(text.encode("utf-8"))


def text_example(text: str, encode: Callable[[str], list[int]], seq_len: int) -> Example | None:
    """Plain corpus text: the first window of seq_len + 1 tokens, every token a completion token (there is no
    prompt). None for a text of fewer than 2 tokens."""
    ids = encode(text)[: seq_len + 1]
    return Example(tuple(ids), (1,) * len(ids)) if len(ids) >= 2 else None


def conversation_example(messages: Sequence[Mapping[str, Any]], encode: Callable[[str], list[int]], seq_len: int) -> Example | None:
    """A chat, rendered ChatML-style (`<|im_start|>role\\ncontent<|im_end|>\\n`), with the assistant turns'
    content and end markers as completion tokens. Long chats keep a window that starts a quarter window before
    the first completion token. None when no assistant turn has content."""
    ids: list[int] = []
    mask: list[int] = []
    for message in messages:
        role, content = str(message.get("role", "")), message.get("content") or ""
        if message.get("tool_calls"):
            content = f"{content}{json.dumps(message['tool_calls'], sort_keys=True)}"
        completion = int(role == "assistant")
        for piece, is_completion in ((f"{_MARKERS[0]}{role}\n", 0), (str(content), completion), (f"{_MARKERS[1]}\n", completion)):
            tokens = encode(piece)
            ids += tokens
            mask += [is_completion] * len(tokens)
    if 1 not in mask[1:]:
        return None
    first = mask.index(1, 1)
    start = max(0, min(first - seq_len // 4, len(ids) - (seq_len + 1)))
    window = slice(start, start + seq_len + 1)
    return Example(tuple(ids[window]), tuple(mask[window]))


def _sample(items: Iterable[Any], k: int, seed: int) -> list[Any]:
    """A uniform sample of k items in one pass (reservoir sampling), in stream order."""
    rng = random.Random(seed)
    reservoir: list[tuple[int, Any]] = []
    for i, item in enumerate(items):
        if i < k:
            reservoir.append((i, item))
        elif (j := rng.randint(0, i)) < k:
            reservoir[j] = (i, item)
    return [item for _, item in sorted(reservoir, key=lambda pair: pair[0])]


def read_examples(path: str | Path, kind: str, encode: Callable[[str], list[int]], seq_len: int, sample: int,
                  seed: int, skipped: Counter | None = None) -> list[Example]:
    """A seeded sample of `sample` examples of a dataset artifact folder (one pass over its records).

    corpus: `documents/*.jsonl.gz` records' `text`; conversations: `train.jsonl` records' `messages`.
    Records without usable text count in `skipped`.
    """
    from factory.documents import document_files, read_records

    skipped = Counter() if skipped is None else skipped
    path = Path(path)
    if kind == "corpus":
        records: Iterable[Any] = read_records(document_files(path), skipped)
    elif kind == "conversations":
        records = _jsonl(path / "train.jsonl", skipped)
    else:
        raise InputError(f"{path}: G-Vendi measures dataset artifacts ({', '.join(DATASET_KINDS)}), not {kind!r}")
    examples = []
    for record in _sample(records, sample, seed):
        example = None
        if kind == "corpus" and isinstance(record, dict) and isinstance(record.get("text"), str):
            example = text_example(record["text"], encode, seq_len)
        elif kind == "conversations" and isinstance(record, dict) and isinstance(record.get("messages"), list):
            example = conversation_example([m for m in record["messages"] if isinstance(m, dict)], encode, seq_len)
        if example is None:
            skipped["gvendi_unusable_records"] += 1
        else:
            examples.append(example)
    return examples


def _jsonl(path: Path, skipped: Counter) -> Iterator[Any]:
    if not path.is_file():
        raise InputError(f"{path}: missing; a conversations artifact holds train.jsonl")
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            try:
                yield json.loads(line)
            except json.JSONDecodeError:
                skipped["bad_json"] += 1


# --------------------------------------------------------------------------------------------------- proxy

@dataclass
class Proxy:
    """A proxy model, its tokenizer as an `encode` function, and what it is (for the record)."""

    model: Any  # a NemotronHForCausalLM in eval mode
    encode: Callable[[str], list[int]]
    name: str

    @property
    def parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters() if p.requires_grad)


def load_proxy(settings: ProxySettings) -> Proxy:
    """The trained proxy in `settings.model_dir` (with its tokenizer), or a fresh seeded preset over bytes."""
    import torch

    if settings.model_dir is not None:
        from transformers import AutoTokenizer

        from factory.model.checkpoints import load_model

        model_dir = Path(settings.model_dir)
        tokenizer_dir = Path(settings.tokenizer_dir or settings.model_dir)
        if not (model_dir / "config.json").is_file():
            raise InputError(f"{model_dir}: no config.json; gvendi model_dir must be a save_pretrained model folder")
        if not (tokenizer_dir / "tokenizer.json").is_file():
            raise InputError(f"{tokenizer_dir}: no tokenizer.json; set gvendi tokenizer_dir to the proxy's tokenizer "
                             "folder (a tokens artifact's tokenizer/)")
        tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir, local_files_only=True)
        model = load_model(model_dir)
        return Proxy(model, lambda text: tokenizer(text, add_special_tokens=False)["input_ids"], f"checkpoint:{model_dir.name}")

    from factory.model import ModelSpec, build_model

    config = ModelSpec(preset=settings.preset).resolve()
    with torch.random.fork_rng(devices=[]):  # seeded weights, without moving the caller's random stream
        torch.manual_seed(settings.seed)
        model = build_model(config, BYTE_VOCAB).eval()
    return Proxy(model, byte_encode, f"fresh:{settings.preset}:bytes:seed{settings.seed}")


# ----------------------------------------------------------------------------------------------- gradients

def per_example_gradients(model: Any, examples: Sequence[Example], batch_size: int = 16) -> Any:
    """(n, P) float32: each example's gradient of its mean completion-token loss, over every trainable parameter
    (in `named_parameters` order). `torch.func.vmap(grad(...))` a batch at a time (right-padded, the padding
    masked out: the model is causal, so trailing pads change nothing before them); a backward pass per example
    when the model's ops cannot be vmap'd."""
    import torch

    names = [name for name, p in model.named_parameters() if p.requires_grad]
    rows = []
    for start in range(0, len(examples), batch_size):
        ids, mask = _pad(examples[start : start + batch_size])
        try:
            rows.append(_vmap_gradients(model, names, ids, mask))
        except (RuntimeError, NotImplementedError) as e:  # an op without a batching rule
            log.info("gvendi.vmap_fallback", reason=str(e).splitlines()[0][:200])
            rows.append(_loop_gradients(model, names, ids, mask))
    if not rows:
        return torch.zeros((0, sum(p.numel() for n, p in model.named_parameters() if n in set(names))))
    return torch.cat(rows)


def _pad(batch: Sequence[Example]) -> tuple[Any, Any]:
    import torch

    length = max(len(e.ids) for e in batch)
    ids = torch.zeros((len(batch), length), dtype=torch.long)
    mask = torch.zeros((len(batch), length), dtype=torch.float32)
    for row, example in enumerate(batch):
        ids[row, : len(example.ids)] = torch.tensor(example.ids)
        mask[row, : len(example.mask)] = torch.tensor(example.mask, dtype=torch.float32)
    return ids, mask


def _completion_loss(logits: Any, ids: Any, mask: Any) -> Any:
    """Mean cross entropy of the completion targets: logits (T-1, V), ids (T,), mask (T,)."""
    import torch.nn.functional as F

    weights = mask[1:]
    losses = F.cross_entropy(logits.float(), ids[1:], reduction="none")
    return (losses * weights).sum() / weights.sum().clamp_min(1.0)


def _vmap_gradients(model: Any, names: list[str], ids: Any, mask: Any) -> Any:
    import torch
    from torch.func import functional_call, grad, vmap

    params = {n: p.detach() for n, p in model.named_parameters() if n in set(names)}
    buffers = {n: b.detach() for n, b in model.named_buffers()}

    def loss(p: dict[str, Any], x: Any, m: Any) -> Any:
        logits = functional_call(model, (p, buffers), (x[None, :-1],), {"use_cache": False}).logits[0]
        return _completion_loss(logits, x, m)

    grads = vmap(grad(loss), in_dims=(None, 0, 0))(params, ids, mask)
    return torch.cat([grads[n].reshape(ids.shape[0], -1) for n in names], dim=1)


def _loop_gradients(model: Any, names: list[str], ids: Any, mask: Any) -> Any:
    import torch

    params = dict(model.named_parameters())
    rows = []
    for x, m in zip(ids, mask):
        model.zero_grad(set_to_none=True)
        logits = model(input_ids=x[None, :-1], use_cache=False).logits[0]
        _completion_loss(logits, x, m).backward()
        rows.append(torch.cat([(params[n].grad if params[n].grad is not None else torch.zeros_like(params[n])).reshape(-1)
                               for n in names]))
    model.zero_grad(set_to_none=True)
    return torch.stack(rows)


def rademacher_project(grads: Any, dim: int, seed: int) -> Any:
    """(n, P) -> (n, dim): grads @ R / sqrt(dim), R a (P, dim) matrix of +-1 signs drawn from `seed`.

    R is generated in blocks of rows (8 signs per random byte) and never held whole, and it depends only on
    (P, dim, seed), so two datasets measured with the same proxy share it.
    """
    import torch

    grads = torch.as_tensor(grads, dtype=torch.float32)
    n, params = grads.shape
    generator = torch.Generator().manual_seed(seed)
    shifts = torch.arange(8, dtype=torch.uint8)
    out = torch.zeros((n, dim), dtype=torch.float32)
    for start in range(0, params, _PROJECTION_ROWS):
        rows = min(_PROJECTION_ROWS, params - start)
        bits = torch.randint(0, 256, (rows, (dim + 7) // 8), generator=generator, dtype=torch.uint8)
        signs = ((bits.unsqueeze(-1) >> shifts) & 1).reshape(rows, -1)[:, :dim].float().mul_(2.0).sub_(1.0)
        out.addmm_(grads[:, start : start + rows], signs)
    return out / math.sqrt(dim)


def gradient_features(examples: Sequence[Example], proxy: Proxy, settings: ProxySettings) -> Any:
    """(n, dim) float32 unit rows: projected, L2-normalised per-example gradients. An example whose gradient is
    zero (no completion token left in its window) cannot be normalised: InputError naming it."""
    import torch

    grads = per_example_gradients(proxy.model, examples, settings.batch_size)
    features = rademacher_project(grads, settings.dim, settings.seed)
    norms = features.norm(dim=1, keepdim=True)
    if len(examples) and float(norms.min()) == 0.0:
        bad = int(norms.squeeze(1).argmin())
        raise InputError(f"gvendi: example {bad} has a zero gradient (no completion tokens in its window?)")
    return features / norms if len(examples) else torch.zeros((0, settings.dim))


# ------------------------------------------------------------------------------------------------- score

def gvendi_score(features: Any) -> float:
    """exp(entropy of the normalised eigenvalues of G^T G / n), G the rows of `features` L2-normalised.

    Computed in float64 from whichever of G^T G / n (d x d) and G G^T / n (n x n) is smaller: they share
    their nonzero eigenvalues. 1 when every row points the same way, n when the rows are orthogonal.
    """
    import torch

    g = torch.as_tensor(features, dtype=torch.float64)
    if g.ndim != 2 or g.shape[0] == 0:
        raise ValueError(f"gvendi_score: features must be (n >= 1, d), got shape {tuple(g.shape)}")
    norms = g.norm(dim=1, keepdim=True)
    if float(norms.min()) == 0.0:
        raise ValueError(f"gvendi_score: row {int(norms.squeeze(1).argmin())} is zero and has no direction")
    g = g / norms
    n, d = g.shape
    kernel = g @ g.T if n <= d else g.T @ g
    eigenvalues = torch.linalg.eigvalsh(kernel / n).clamp_min(0.0)
    p = eigenvalues / eigenvalues.sum()
    p = p[p > 0]
    return float(torch.exp(-(p * p.log()).sum()))


# ---------------------------------------------------------------------------------------- targeted synthesis

def targeted_selection(reference: Any, candidates: Any, clusters: int, keep: int, seed: int = 0) -> list[int]:
    """Indices (ascending) of the `keep` candidates that land in the smallest clusters of the existing data.

    k-means (scikit-learn) over the reference and candidate features together, so a region that only new
    candidates reach forms its own cluster; a cluster's size is its number of reference members. Then, `keep`
    times, the cluster with the fewest members so far (reference plus candidates already kept) that still
    has candidates gives up its next one (input order) and counts it. So the candidates fill the sparse
    regions of the gradient space first, and no region gets them all.
    """
    import numpy as np
    from sklearn.cluster import KMeans

    reference, candidates = np.asarray(reference, dtype=np.float64), np.asarray(candidates, dtype=np.float64)
    if len(candidates) == 0 or keep <= 0:
        return []
    points = np.concatenate([reference, candidates])
    k = max(1, min(clusters, len(points)))
    labels = KMeans(n_clusters=k, n_init=4, random_state=seed).fit_predict(points).tolist()
    sizes = np.bincount(labels[: len(reference)], minlength=k).tolist()
    queues: dict[int, list[int]] = {c: [] for c in range(k)}
    for index, cluster in enumerate(labels[len(reference) :]):
        queues[cluster].append(index)
    kept: list[int] = []
    while len(kept) < keep and any(queues.values()):
        cluster = min((c for c in queues if queues[c]), key=lambda c: (sizes[c], c))
        kept.append(queues[cluster].pop(0))
        sizes[cluster] += 1
    return sorted(kept)


def targeted_filter(candidates: Iterable[dict], reference: Iterable[Any], settings: TargetedSynthesis, scratch: Path | None,
                    stats: Counter) -> Iterator[dict]:
    """Of the generated documents `candidates` ({"text", ...}), yield those `targeted_selection` keeps against
    a seeded sample of the source documents `reference`, in input order.

    The candidates are spooled to a temporary file (under `scratch` when given), so only their token windows
    and features are held. Counts go into `stats`: targeted_candidates, targeted_kept, and the G-Vendi of the
    reference alone, with the kept documents, and with all candidates (`targeted_gvendi_*`).
    """
    p = settings.proxy
    proxy = load_proxy(p)
    texts = [r["text"] for r in _sample((r for r in reference if isinstance(r, dict) and isinstance(r.get("text"), str)),
                                         settings.reference_docs, p.seed)]
    ref_examples = [e for e in (text_example(t, proxy.encode, p.seq_len) for t in texts) if e is not None]
    if len(ref_examples) < 2:
        raise InputError(f"synth.targeted: {len(ref_examples)} usable source documents; clustering needs at least 2")
    if scratch is not None:
        Path(scratch).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=scratch) as spool_dir:
        spool = Path(spool_dir) / "candidates.jsonl"
        cand_examples: list[Example] = []
        usable: list[int] = []
        with spool.open("w", encoding="utf-8") as out:
            for index, doc in enumerate(candidates):
                out.write(json.dumps(doc, ensure_ascii=False) + "\n")
                text = doc.get("text") if isinstance(doc, dict) else None
                example = text_example(text, proxy.encode, p.seq_len) if isinstance(text, str) else None
                if example is not None:
                    cand_examples.append(example)
                    usable.append(index)
        stats["targeted_candidates"] += len(cand_examples)
        features = gradient_features(ref_examples + cand_examples, proxy, p)
        n_ref = len(ref_examples)
        keep = math.ceil(settings.keep_fraction * len(cand_examples))
        chosen = targeted_selection(features[:n_ref].numpy(), features[n_ref:].numpy(), settings.clusters, keep, p.seed)
        kept = {usable[i] for i in chosen}
        stats["targeted_kept"] += len(kept)
        stats["targeted_gvendi_reference"] = round(gvendi_score(features[:n_ref]), 4)
        if chosen:
            stats["targeted_gvendi_with_kept"] = round(gvendi_score(features[[*range(n_ref), *(n_ref + i for i in chosen)]]), 4)
            stats["targeted_gvendi_with_all"] = round(gvendi_score(features), 4)
        log.info("gvendi.targeted", proxy=proxy.name, candidates=len(cand_examples), kept=len(kept),
                 clusters=settings.clusters, reference=n_ref)
        with spool.open(encoding="utf-8") as lines:
            for index, line in enumerate(lines):
                if index in kept:
                    yield json.loads(line)


# ------------------------------------------------------------------------------------------- dataset hook

def measure_artifact(path: str | Path, kind: str, settings: GVendiSettings, proxy: Proxy | None = None) -> dict[str, Any]:
    """The G-Vendi report of the dataset artifact folder `path` of artifact kind `kind`: score, examples
    measured and skipped, the proxy and the settings."""
    proxy = proxy or load_proxy(settings)
    skipped: Counter = Counter()
    examples = read_examples(path, kind, proxy.encode, settings.seq_len, settings.sample, settings.seed, skipped)
    report: dict[str, Any] = {"examples": len(examples), "skipped": dict(skipped), "proxy": proxy.name,
                              "proxy_parameters": proxy.parameters, "settings": settings.result_fields()}
    if examples:
        report["gvendi"] = gvendi_score(gradient_features(examples, proxy, settings))
    return report


def measure_output(output_kind: str, folder: Path, inputs: Mapping[str, Any], settings: GVendiSettings | None) -> dict[str, float]:
    """The executor's hook, run on a step's staging folder before it is published: for a dataset artifact,
    write `gvendi.json` into it and return the metrics {"gvendi", "gvendi_examples"} (for the step's MLflow run
    and its manifest). Nothing for other kinds or when `settings` is None.

    The proxy is `settings.model_dir` when set; else a checkpoint input of the step (`model/`) whose tokenizer
    is found (a tokens input's `tokenizer/`, or tokenizer.json in the model folder); else a fresh one.
    """
    if settings is None or output_kind not in DATASET_KINDS:
        return {}
    settings = _with_checkpoint_input(settings, inputs)
    report = measure_artifact(folder, output_kind, settings)
    (Path(folder) / "gvendi.json").write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    if "gvendi" not in report:
        log.info("gvendi.skipped", reason="no usable examples", skipped=report["skipped"])
        return {}
    log.info("gvendi", score=round(report["gvendi"], 4), examples=report["examples"], proxy=report["proxy"])
    return {"gvendi": report["gvendi"], "gvendi_examples": float(report["examples"])}


def _with_checkpoint_input(settings: GVendiSettings, inputs: Mapping[str, Any]) -> GVendiSettings:
    if settings.model_dir is not None:
        return settings
    kinds = {name: (art.manifest or {}).get("kind") for name, art in inputs.items()}
    tokenizers = [Path(inputs[n].path) / "tokenizer" for n, k in kinds.items() if k == "tokens"]
    for name, kind in kinds.items():
        model_dir = Path(inputs[name].path) / "model"
        if kind != "checkpoint" or not (model_dir / "config.json").is_file():
            continue
        found = ([Path(settings.tokenizer_dir)] if settings.tokenizer_dir else []) + tokenizers + [model_dir]
        tokenizer = next((t for t in found if (t / "tokenizer.json").is_file()), None)
        if tokenizer is not None:
            return settings.model_copy(update={"model_dir": str(model_dir), "tokenizer_dir": str(tokenizer)})
        log.info("gvendi.checkpoint_without_tokenizer", input=name, model_dir=str(model_dir))
    return settings
