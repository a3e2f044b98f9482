"""Mix fan-out benchmark: the mix step's proxies as a KFP ParallelFor of tasks (what a cluster runs, one pod per
proxy) against its one-step process pool (what `factory run` uses), on the same corpus in the same run.

The corpus (`factory.data.domains`, four domains with quality tiers) is published as a curate step's artifact;
then the mix step runs twice:

- `pool`:          `stage.run` in this process, its proxies in a process pool of `--workers`;
- `parallel_for`:  the compiled pipeline's tasks (`mix-prepare`, a ParallelFor of `mix-proxy-R` per round,
                   `mix-round-R`, `mix`) through kfp.local, each task its own process, as on a cluster each
                   its own pod.

It prints the wall time of each, whether the two published the same files (mixture.json, blend.json, the
annotated documents), and every proxy's loss. kfp.local starts a Python process per task, so locally the
fan-out costs process start-ups; on a cluster it is what spreads a round's proxies over nodes.

    .venv/bin/python bench/mix_fanout.py                   # about two minutes on 2 busy cores
    .venv/bin/python bench/mix_fanout.py --rounds 3 --proxies 4 --proxy-steps 20
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-domain", type=int, default=12, help="Corpus documents per domain.")
    parser.add_argument("--chars", type=int, default=300, help="Characters per document.")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--proxies", type=int, default=3, help="Proxy runs per round.")
    parser.add_argument("--proxy-steps", type=int, default=6)
    parser.add_argument("--workers", type=int, default=2, help="Processes of the pool (and kfp.local's parallel tasks).")
    args = parser.parse_args()

    from factory.data.domains import domain_corpus
    from factory.documents import document_files, read_records, write_parts
    from factory.embedding import EmbeddingConfig
    from cli.local_run import run_pipeline_locally
    from factory.stages.mix import stage as mix
    from factory.stages.mix.config import Config, ProxyConfig
    from factory.model import ModelSpec
    from factory.spec import parse_spec
    from factory.stage import Artifact, NullTracker, StepContext
    from factory.steps import Executor

    config = Config(embedding=EmbeddingConfig(max_tokens=32), clusters=6, super_clusters=3, rounds=args.rounds,
                    proxies_per_round=args.proxies, candidates_per_round=256, predictor_trees=20, predictor_folds=3,
                    workers=args.workers, proxy_runner="parallel_for", proxy_pods=args.workers,
                    proxy=ProxyConfig(model=ModelSpec(overrides={"pattern": "*-"}), steps=args.proxy_steps, seq_len=32,
                                      micro_batch_size=4, warmup_steps=1, eval_windows=16))
    with tempfile.TemporaryDirectory(prefix="mix-fanout-") as tmp:
        tmp = Path(tmp)
        (tmp / "html").mkdir()
        (tmp / "html" / "a.html").write_text("<html><body><p>Some text.</p></body></html>")  # curate's listed source
        data = {"name": "fanout", "work_dir": str(tmp / "work"), "storage": {"root": str(tmp / "store")},
                "steps": {"curate": {"kind": "curate", "config": {"sources": [str(tmp / "html")]}},
                          "mix": {"kind": "mix", "config": config.model_dump(mode="json", exclude_none=True),
                                  "inputs": {"corpus": "curate"}}}}
        spec = parse_spec(data)
        executor = Executor(spec)
        curate = executor.plan()["curate"]
        staging = executor.store.staging_dir(curate.key, executor.work_dir)
        write_parts(domain_corpus(args.per_domain, chars=args.chars), staging / "documents", per_part=1000)
        corpus = executor.store.publish(staging, curate.key, {"kind": "corpus", "stage": "curate", "fingerprint": curate.fingerprint})

        pool = tmp / "pool"
        pool.mkdir()
        start = time.monotonic()
        mix.run(config, {"corpus": Artifact(executor.store.materialize(curate.key), corpus)}, pool, StepContext("mix", NullTracker()))
        pool_s = time.monotonic() - start

        start = time.monotonic()
        result = run_pipeline_locally(spec, tmp / "work", executor.plan_json(), published={"curate": corpus}, job_id="bench")
        fan_s = time.monotonic() - start
        if result.failure:
            sys.exit(result.failure)
        fanned = executor.store.materialize(executor.plan()["mix"].key)

        same = {name: (pool / name).read_text() == (fanned / name).read_text() for name in ("mixture.json", "blend.json")}
        same["documents"] = (list(read_records(document_files(pool), Counter()))
                             == list(read_records(document_files(fanned), Counter())))
        tasks = 1 + args.proxies * args.rounds + (args.rounds - 1) + 1
        print(f"{'form':<14} {'seconds':>8}  tasks")
        print(f"{'pool':<14} {pool_s:>8.1f}  1 (workers={args.workers})")
        print(f"{'parallel_for':<14} {fan_s:>8.1f}  {tasks} (kfp.local, parallelism {args.workers})")
        print("same files:", ", ".join(f"{k} {'yes' if v else 'NO'}" for k, v in same.items()))
        summary = json.loads((fanned / "mixture.json").read_text())
        for p in summary["proxies"]:
            print(f"  round {p['round']}  loss {p['loss']:.6f}")
        if not all(same.values()):
            sys.exit("the two forms published different files")


if __name__ == "__main__":  # the proxy process pool needs the guard
    main()
