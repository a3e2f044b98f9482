"""posttrain_data as a named step of a spec, through the executor: a failing step publishes nothing; a good one
is published as a conversations artifact, its counts are in MLflow, and a second run reuses it."""

from __future__ import annotations

import json

import pytest

from factory.artifacts import Conversations
from factory.errors import InputError
from factory.spec import parse_spec
from factory.steps import Executor

CHAIN_SUM = {"generator": "chain_sum", "size": 4, "params": {"max_digits": 1}, "heldout_size": 2}


def spec(tmp, **config):
    return parse_spec({
        "name": "ptdata", "work_dir": str(tmp / "work"), "storage": {"root": str(tmp / "store")},
        "steps": {"ptdata": {"kind": "posttrain_data", "config": {"procedural": [CHAIN_SUM], **config}}},
    })


def test_step_fails_cleanly_then_publishes_logs_and_reuses(tmp_path):
    prompts = tmp_path / "mine.jsonl"
    prompts.write_text(json.dumps({"prompt": "Which is a prime?", "options": ["4", "7"], "answer": "B", "verifier": "choice"}) + "\n")
    # the procedural solver has no trace for the user's knowledge question: the step fails naming the set
    with pytest.raises(InputError, match=r"prompt set 'mine' \(.*mine.jsonl\): 0 verified solutions of 1 prompts"):
        Executor(spec(tmp_path, procedural=[], prompts=[str(prompts)])).run()
    assert not list((tmp_path / "store").glob("ptdata/*/manifest.json"))  # nothing published

    executor = Executor(spec(tmp_path))
    manifest = executor.run()["ptdata"]
    (published,) = [p.parent for p in (tmp_path / "store").glob("ptdata/*/manifest.json")]
    art = Conversations(published, "data").checked()
    assert len(art.train()) == 8 and len(art.heldout()) == 2 and art.stats().kept_by_teacher == {"procedural-solver": 8}
    assert {f["path"] for f in manifest["files"]} >= {"train.jsonl", "prompts.jsonl", "heldout.jsonl", "stats.json"}

    client = executor.lineage.client
    (run,) = client.search_runs([executor.lineage.experiment_id],
                                filter_string="tags.`factory.stage` = 'ptdata' and attributes.status = 'FINISHED'")
    assert run.data.metrics["kept"] == 8.0 and run.data.metrics["kept_on"] == 4.0 and run.data.metrics["prompts"] == 4.0
    assert [e.action for e in Executor(spec(tmp_path)).explain()] == ["reuse"]
