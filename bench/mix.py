"""Mix benchmark: CLIMB's claim in miniature. At equal tokens, does the searched mixture beat the uniform one on
the target domain's validation loss?

A four-domain corpus of real text with quality tiers (`factory.data.domains`: standard-library docstrings, tier
4; standard-library source code, 2; German/French/Spanish prose, 1; number tables, 0). The target domain is
held-out docstrings (documents the corpus does not contain). The mix stage embeds, clusters, prunes and merges
the corpus, searches the mixture with proxy runs (3 rounds) and derives the two blend phases; tokenize writes
one dataset per super-cluster. Then pretrain trains the tiny preset at the same step and token budget on:

- `train`:      the whole corpus in its natural proportions (what you get without a mix step);
- `uniform`:    the super-clusters, equal weights (CLIMB's baseline);
- `searched`:   the super-clusters, the searched mixture (one phase);
- `two-phase`:  the blend the mix step writes (phase 1 diverse, phase 2 high quality).

It prints each one's loss on the target validation set, the search's proxy losses per round and the predictor's
Spearman correlation on held-out proxies (out-of-fold, and each later round scored by the predictor before it).

    .venv/bin/python bench/mix.py                          # a few minutes on 2 busy cores
    .venv/bin/python bench/mix.py --per-domain 80 --steps 300 --proxy-steps 60
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-domain", type=int, default=60, help="Corpus documents per domain.")
    parser.add_argument("--chars", type=int, default=600, help="Characters per document.")
    parser.add_argument("--target-docs", type=int, default=40, help="Held-out docstring documents in the target set.")
    parser.add_argument("--steps", type=int, default=150, help="Pretrain steps of each blend (the same token budget).")
    parser.add_argument("--proxy-steps", type=int, default=40)
    parser.add_argument("--proxies", type=int, default=6, help="Proxy runs per round.")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads of this process (proxies use one each).")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)  # on a shared machine, more threads than free cores only thrash

    from collections import Counter

    from factory.artifacts import Tokens
    from factory.data.domains import DOMAIN_TIERS, domain_corpus, domain_texts
    from factory.documents import document_files, read_records, write_parts
    from factory.embedding import EmbeddingConfig
    from factory.stages.mix import stage as mix
    from factory.stages.mix.config import Config, ProxyConfig
    from factory.model.checkpoints import lm_loss, load_model
    from factory.stage import Artifact, NullTracker, StepContext
    from factory.tokens import PackedSequences, write_indexed
    from factory.stages import tokenize
    from factory.stages import pretrain
    from factory.train.config import BlendPhase

    def artifact(path: Path) -> Artifact:
        return Artifact(path, {"fingerprint": "b" * 64, "uri": str(path)})

    root = Path(tempfile.mkdtemp(prefix="bench-mix-"))
    # Docstrings: the first ones go into the corpus, the last `target_docs` form the target set.
    docs = domain_texts("docs", args.per_domain + args.target_docs, args.chars, args.seed)
    assert len(set(docs)) == len(docs), "--per-domain + --target-docs exceeds the distinct docstring documents"
    records = domain_corpus({d: args.per_domain for d in DOMAIN_TIERS if d != "docs"}, args.chars, args.seed)
    records += [{"id": f"docs-{i:05d}", "text": t, "metadata": {"domain": "docs", "quality_tier": DOMAIN_TIERS["docs"]}}
                for i, t in enumerate(docs[: args.per_domain])]
    write_parts(records, root / "corpus" / "documents", per_part=1000)
    target = root / "target.jsonl"
    target.write_text("".join(json.dumps({"text": t}) + "\n" for t in docs[args.per_domain:]))

    config = Config(embedding=EmbeddingConfig(max_tokens=128), clusters=12, super_clusters=4, target=str(target),
                    proxies_per_round=args.proxies, proxy=ProxyConfig(steps=args.proxy_steps), workers=args.workers,
                    seed=args.seed)
    (root / "mix").mkdir()
    start = time.perf_counter()
    ctx = StepContext("mix", tracker=NullTracker())
    m = mix.run(config, {"corpus": artifact(root / "corpus")}, root / "mix", ctx)
    mix_s = time.perf_counter() - start
    summary = json.loads((root / "mix" / "mixture.json").read_text())

    (root / "tokens").mkdir()
    tokenize.run(tokenize.Config(vocab_size=1024), {"corpus": artifact(root / "mix")}, root / "tokens", StepContext("tokenize"))
    tokens = Tokens(root / "tokens")
    tokenizer = tokens.tokenizer()
    ids = [tokenizer(t, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id] for t in docs[args.per_domain:]]
    write_indexed(root / "target", ids, len(tokenizer))
    seq_len = 64
    target_windows = PackedSequences(root / "target", seq_len)
    windows = torch.stack([target_windows[i] for i in range(len(target_windows))])  # (N, seq_len + 1)

    names = list(summary["datasets"])
    blends = {
        "train": None,
        "uniform": [BlendPhase(until_fraction=1.0, weights={n: 1.0 for n in names})],
        "searched": [BlendPhase(until_fraction=1.0, weights={n: w["weight"] for n, w in summary["datasets"].items() if w["weight"] > 0})],
        "two-phase": [BlendPhase.model_validate(p) for p in summary["blend"]],
    }
    results = {}
    for label, blend in blends.items():
        out = root / f"pretrain-{label}"
        out.mkdir()
        cfg = pretrain.Config(steps=args.steps, warmup_steps=args.steps // 10, seq_len=seq_len, micro_batch_size=8,
                              checkpoint_interval=0, seed=args.seed, blend=blend or [BlendPhase(until_fraction=1.0, weights={"train": 1.0})])
        metrics = pretrain.run(cfg, {"tokens": artifact(root / "tokens")}, out, StepContext(f"pretrain-{label}"))
        model = load_model(out / "model")
        results[label] = (lm_loss(model, windows), metrics["tokens_seen"])

    print(f"\ncorpus: {len(records)} documents ({args.per_domain} per domain: {', '.join(DOMAIN_TIERS)}); target: "
          f"{args.target_docs} held-out docstring documents, {windows.numel()} tokens")
    print(f"mix stage: {mix_s:.0f} s; {int(m['clusters_kept'])} clusters kept, {int(m['clusters_pruned'])} pruned "
          f"({int(m['documents_pruned'])} documents), {int(m['super_clusters'])} super-clusters")
    print("\nsuper-cluster  domains (documents)                      mean tier  prior   searched")
    per: dict[str, Counter] = {}
    for r in read_records(document_files(root / "mix"), Counter()):
        per.setdefault(r["metadata"]["mix_dataset"] or "pruned", Counter())[r["metadata"]["domain"]] += 1
    for name, d in summary["datasets"].items():
        print(f"{name:14s} {', '.join(f'{k} {v}' for k, v in per.get(name, Counter()).most_common()):40s} "
              f"{d['mean_tier']:9.2f}  {d['prior']:.3f}   {d['weight']:.3f}")
    print(f"{'pruned':14s} {', '.join(f'{k} {v}' for k, v in per.get('pruned', Counter()).most_common())}")

    print("\nround  proxies  best proxy loss  mean proxy loss   (nats/byte on the target)")
    for r in sorted({p["round"] for p in summary["proxies"]}):
        losses = [p["loss"] for p in summary["proxies"] if p["round"] == r]
        print(f"{r:5d}  {len(losses):7d}  {min(losses):15.4f}  {sum(losses) / len(losses):15.4f}")
    pred = summary["predictor"]
    def fmt(x):
        return "undefined (constant predictions)" if x is None else f"{x:.3f}"

    print(f"predictor Spearman on held-out proxies: {fmt(pred['spearman_held_out'])} (out-of-fold); next round "
          "(the predictor fitted before it): " + ", ".join(fmt(s) for s in pred["spearman_next_round"]))
    print("blend phases:", json.dumps(summary["blend"]))

    print(f"\nblend       target valid loss (nats/token)   tokens   (tiny preset, {args.steps} steps each)")
    for label, (loss, seen) in results.items():
        print(f"{label:10s}  {loss:30.4f}   {int(seen)}")
    better = results["searched"][0] < results["uniform"][0]
    print(f"\nsearched {'beats' if better else 'does NOT beat'} uniform on the target: "
          f"{results['searched'][0]:.4f} vs {results['uniform'][0]:.4f} ({results['searched'][0] - results['uniform'][0]:+.4f})")


if __name__ == "__main__":
    main()
