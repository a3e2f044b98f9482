"""Prismatic-style targeted synthesis in the synth stage (`synth.targeted.enabled`): of the rewrites, keep those that
land in the smallest gradient clusters of the source corpus.

The stage runs for real through its OpenAI client against the test server on 127.0.0.1; the server's replies
are scripted (no LLM runs offline here): most rewrites are more standard-library docstrings, like the source,
and three are from other domains (a HumanEval prompt, standard-library source, an arithmetic problem).
"""

from __future__ import annotations

import json
import sysconfig
from pathlib import Path

from factory.stages import synth
from factory.stage import StepContext
from tests import builders
from tests.spine import corpus_records
from tests.stages.synth.fake_openai import FakeOpenAI

SOURCE_DOCS = 12


def texts() -> tuple[list[str], list[str]]:
    from factory.curate.quality.reference_text import stdlib_docstrings
    from factory.tasks.humaneval import humaneval
    from factory.tasks.procedural import procedural

    docs = stdlib_docstrings(n_docs=2 * SOURCE_DOCS - 3, seed=3)
    source_code = (Path(sysconfig.get_paths()["stdlib"]) / "bisect.py").read_text(encoding="utf-8")
    other = [humaneval()[40].prompt, source_code[source_code.find("\ndef ") + 1 :][:2000],
             procedural("simple_equations", 1, 7)[0].problem]
    return docs[:SOURCE_DOCS], docs[SOURCE_DOCS:] + other  # sources; one rewrite per source, the last 3 off-domain


def test_targeted_synthesis_keeps_the_rewrites_that_fill_sparse_clusters(tmp_path):
    sources, rewrites = texts()
    corpus = builders.corpus(tmp_path / "corpus", [{"id": f"doc{i}", "text": t, "metadata": {"quality_tier": 0}}
                                                    for i, t in enumerate(sources)])

    def reply(user: str) -> str:  # the rewrite of source i is rewrites[i]
        passage = user.split("Passage:\n", 1)[1].strip()
        return rewrites[next(i for i, s in enumerate(sources) if s.strip()[:200] in passage)]

    output = tmp_path / "out"
    output.mkdir()
    with FakeOpenAI(reply=reply) as server:
        config = synth.Config(generator={"kind": "openai", "base_url": server.url + "/v1", "model": "m"},
                              targeted={"enabled": True, "clusters": 4, "keep_fraction": 0.25,
                                                                 "reference_docs": SOURCE_DOCS})
        metrics = synth.run(config, {"corpus": corpus}, output,
                            StepContext("synth", scratch=tmp_path / "scratch"))
    kept = [d["id"] for d in corpus_records(output)]
    print(f"kept {kept}; G-Vendi reference {metrics['targeted_gvendi_reference']}, with kept "
          f"{metrics['targeted_gvendi_with_kept']}, with all {metrics['targeted_gvendi_with_all']}")
    assert metrics["docs_out"] == SOURCE_DOCS and metrics["targeted_candidates"] == SOURCE_DOCS
    assert metrics["targeted_kept"] == 3 and len(kept) == 3
    off_domain = {f"doc{i}/wikipedia" for i in range(SOURCE_DOCS - 3, SOURCE_DOCS)}
    assert len(off_domain & set(kept)) >= 2, kept  # what the source lacks is what it keeps
    assert metrics["targeted_gvendi_with_kept"] > metrics["targeted_gvendi_reference"]
    assert json.loads((output / "stats.json").read_text())["counts"]["targeted_kept"] == 3
    assert not list((tmp_path / "scratch").iterdir())  # the spooled candidates are gone
