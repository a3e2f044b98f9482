"""A GenRM-rewarded rl step end to end to a release: one import_model step brings in a tiny judge (always "Verdict: A",
tests/judge/verdict_model.py) that is the `judge` input of an rl step, whose environments are a verifier environment
and one scored by that judge pairwise against the task's reference (Nemotron 3's GenRM shape), of a preference step
that takes its pairs from the same GenRM, and of the evaluate step before the release. The judge always prefers the
response shown first, the policy's: every judged sample is a win, whatever the verifier says of it. The judge is
named by its step and identified by that step's fingerprint; a judge input missing or read by nothing fails the spec
load in one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from transformers import AutoModelForCausalLM, AutoTokenizer

from factory.errors import SpecError
from factory.spec import load_spec, parse_spec_text
from factory.steps import Executor
from tests.builders.architectures import model_folder_of
from tests.judge.verdict_model import verdict_model
from tests.spine import ROOT

SPEC = """
name: genrm-rl
work_dir: runs/work
storage: {root: runs/store}
steps:
  judge:
    kind: import_model
    config: {source: models/tiny-judge}
  policy:
    kind: import_model
    config: {source: models/policy}
  curate:
    kind: curate
    config: {sources: [pages]}
  tokenize:
    kind: tokenize
    config: {}
    inputs: {corpus: curate, model: policy}
  posttrain_data:
    kind: posttrain_data
    config:
      procedural:
        - {generator: chain_sum, size: 6, params: {max_digits: 1}, heldout_size: 2}
  rl:
    kind: rl
    config:
      steps: 2
      micro_batch_size: 4
      checkpoint_interval: 0
      log_reference_kl: false
      rollout:
        group_size: 2
        switch_format: false
        length_schedule: [{until_fraction: 1.0, max_new_tokens: 6}]
      rewards: {math_workers: 1}
      environments:
        - {name: sums, procedural: {generator: chain_sum, size: 8, params: {max_digits: 1}}, heldout: 2}
        - name: graded
          procedural: {generator: chain_sum, size: 8, seed: 7, params: {max_digits: 1}}
          heldout: 2
          scorer: judge
          judge: {generator: {kind: transformers}, mode: pairwise, max_new_tokens: 16}
    inputs: {model: policy, data: posttrain_data, judge: judge}
  dpo:
    kind: preference
    config:
      judge: genrm
      genrm: {generator: {kind: transformers}, mode: pairwise, max_new_tokens: 16}
      steps: 2
      micro_batch_size: 2
      seq_len: 320
      max_new_tokens: 6
      samples_per_prompt: 2
      heldout_prompts: 2
      warmup_steps: 0
      checkpoint_interval: 0
    inputs: {model: rl, data: posttrain_data, judge: judge}
  evaluate:
    kind: evaluate
    config:
      perplexity: false
      tasks: []
      prompts: []
      generation: {max_new_tokens: 4}
      benchmarks:
        - name: open
          source: questions
          task: data/open.jsonl
          judge: {generator: {kind: transformers}, mode: pairwise, max_new_tokens: 16}
    inputs: {model: dpo, judge: judge}
  release:
    kind: release
    config: {model_name: tiny-genrm}
    inputs: {model: dpo, tokens: tokenize, evaluation: evaluate}
"""


def spec_folder(root: Path) -> Path:
    """The spec's folder: the spec, the judge and policy model folders, a few web pages and a questions file."""
    home = root / "home"
    verdict_model(home / "models" / "tiny-judge", "Verdict: A")
    model_folder_of("llama", home / "models" / "policy", seed=1)
    (home / "pages").mkdir()
    for page in sorted((ROOT / "examples" / "data" / "smoke-html").glob("page-000[0-3].html")):
        (home / "pages" / page.name).write_bytes(page.read_bytes())
    (home / "data").mkdir()
    (home / "data" / "open.jsonl").write_text("".join(
        json.dumps({"id": f"q{i}", "question": f"What is {i} + {i}?", "reference": f"It is {i + i}."}) + "\n"
        for i in range(2)))
    (home / "spec.yaml").write_text(SPEC)
    return home


def test_a_genrm_rewarded_rl_step_and_a_genrm_preference_step_run_end_to_end_to_a_release(tmp_path, monkeypatch):
    home = spec_folder(tmp_path)
    monkeypatch.chdir(home)
    spec = load_spec("spec.yaml").resolved()
    assert spec.stage_config("rl").environments[1].judge.generator.model_dir is None  # still the step's `judge` input
    executor = Executor(spec)
    plan = executor.plan()
    # the judge's identity is its step's fingerprint (lineage), for every step that reads it
    assert {plan[s].recipe["inputs"]["judge"] for s in ("rl", "dpo", "evaluate")} == {plan["judge"].fingerprint}
    manifests = executor.run()
    assert list(manifests)[-4:] == ["rl", "dpo", "evaluate", "release"]

    rl = executor.store.materialize(plan["rl"].key)
    table = json.loads((rl / "environments.json").read_text())
    assert list(table) == ["sums", "graded"] and table["graded"]["samples"] > 0
    # every judged sample was scored: no verdict was malformed, none lost for another reason
    assert table["graded"]["lost"] == {"raised": 0, "timeout": 0, "malformed": 0, "unreachable": 0}
    assert table["graded"]["dropped"] is None and table["graded"]["heldout"]["accuracy"] == 1.0
    records = [json.loads(line) for line in (rl / "rollouts.jsonl").read_text().splitlines()]
    assert len(records) == 2
    graded = [r["env/graded/reward"] for r in records if r.get("env/graded/groups")]
    assert graded and all(reward == 1.0 for reward in graded)  # the judge prefers the policy's reply every time
    assert all(r["env/graded/lost"] == 0 for r in records)

    dpo = executor.store.materialize(plan["dpo"].key)
    summary = json.loads((dpo / "preference.json").read_text())
    assert summary["genrm"]["step"] == "judge" and summary["genrm"]["digest"] == f"fingerprint:{plan['judge'].fingerprint}"
    assert summary["train_pairs"] > 0

    release = executor.store.materialize(plan["release"].key)
    model = AutoModelForCausalLM.from_pretrained(release, local_files_only=True)
    tokenizer = AutoTokenizer.from_pretrained(release, local_files_only=True)
    assert model.config.architectures == ["LlamaForCausalLM"] and tokenizer.chat_template
    manifest = json.loads((release / "manifest.json").read_text())
    assert manifest["fingerprint"] == plan["release"].fingerprint
    card = (release / "README.md").read_text()
    # two imported models are ancestors; the base model is the policy's, the judge only scored it
    assert card.split("starting from the imported model ", 1)[1].startswith(f"`{home / 'models' / 'policy'}`")
    lineage = card.split("## Lineage\n", 1)[1].split("\n## ", 1)[0]
    # the judge is an ancestor of the release (through rl, dpo and evaluate), named by its step and fingerprint
    assert f"| judge | checkpoint | `{plan['judge'].fingerprint[:16]}` |" in lineage
    for step in ("rl", "dpo", "policy"):
        assert f"| {step} | checkpoint | `{plan[step].fingerprint[:16]}` |" in lineage
    assert "- `open`: judge `judge (tiny-judge)` (`fingerprint:" in card
    # what trained the model, not the imported models' folders (the judge's, the policy's)
    training_data = card.split("## Training data\n", 1)[1].split("\n## ", 1)[0]
    assert str(home / "models") not in training_data, training_data


@pytest.mark.parametrize("edit, message", [
    # an environment's judge without a model folder reads the `judge` input, which must be wired
    (("inputs: {model: policy, data: posttrain_data, judge: judge}", "inputs: {model: policy, data: posttrain_data}"),
     (r"^steps.rl.config.environments.1.judge.generator: no model_dir, so the judge is the step's `judge` input, which "
      r"is not wired; wire `inputs: \{judge: STEP\}`")),
    # an input that no environment's judge reads is refused: it would change the fingerprint and be read by nothing
    (("judge: {generator: {kind: transformers}, mode: pairwise, max_new_tokens: 16}\n    inputs: {model: policy",
      "judge: {generator: {kind: openai, base_url: 'http://j', model: j}, mode: pairwise}\n    inputs: {model: policy"),
     r"^steps.rl.config.inputs.judge: no environment's judge reads it \(step 'judge'\)"),
])
def test_an_rl_judge_input_missing_or_read_by_nothing_fails_the_load_in_one_line(edit, message):
    assert edit[0] in SPEC
    with pytest.raises(SpecError, match=message) as raised:
        parse_spec_text(SPEC.replace(*edit), "genrm.yaml")
    assert "\n" not in str(raised.value)


def test_the_judge_input_reaches_only_the_environments_without_a_model_folder(tmp_path):
    from factory.stages.rl.config import Config

    served = {"kind": "openai", "base_url": "http://j", "model": "j"}
    config = Config(micro_batch_size=8, environments=[
        {"name": "sums", "procedural": "chain_sum"},
        {"name": "graded", "procedural": "chain_sum", "scorer": "judge", "judge": {"generator": {"kind": "transformers"}}},
        {"name": "served", "procedural": "chain_sum", "scorer": "judge", "judge": {"generator": served}}])
    assert config.input_judges == [1]
    given = config.with_judge_model(tmp_path / "model")
    assert given.environments[1].judge.generator.model_dir == str(tmp_path / "model")
    assert given.environments[0] == config.environments[0] and given.environments[2] == config.environments[2]
    assert config.environments[1].judge.generator.model_dir is None  # the step's own config is left as it was


def test_factory_plan_says_the_judges_verdicts_are_not_counted(tmp_path, monkeypatch):
    from factory.plan import plan_spec

    monkeypatch.chdir(spec_folder(tmp_path))
    (rl,) = [s for s in plan_spec(load_spec("spec.yaml").resolved()).steps if s.step == "rl"]
    assert "the judge's verdicts on environments graded are not counted" in rl.note and rl.data, rl.note
