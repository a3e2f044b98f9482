"""A judge that is an imported model, wired as a step input: one import_model step (a tiny in-process judge that always
prefers the response shown first, tests/judge/verdict_model.py) is the `judge` input of an evaluate step (a questions
benchmark judged pairwise against the references) and of a preference step (its GenRM), run end to end through the
executor from a spec in another folder, its relative paths (the questions file, the judge's prompt file, the model
folders) resolved against that folder while the run's working folder is elsewhere. The judge is named by its step and
identified by that step's fingerprint; a judge input that is missing or read by nothing fails the spec load in one line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from factory.errors import SpecError
from factory.judge.prompt_file import judge_prompt_path
from factory.plan import plan_spec
from factory.spec import load_spec, parse_spec_text
from factory.stages.release.model_card import judge_lines
from factory.steps import Executor
from tests.builders.architectures import model_folder_of
from tests.judge.verdict_model import verdict_model

SPEC = """
name: judged-input
work_dir: runs/work
storage: {root: runs/store}
steps:
  judge:
    kind: import_model
    config: {source: models/tiny-judge}
  policy:
    kind: import_model
    config: {source: models/policy}
  posttrain_data:
    kind: posttrain_data
    config:
      procedural:
        - {generator: chain_sum, size: 6, params: {max_digits: 1}, heldout_size: 2}
  eval_judged:
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
          judge:
            generator: {kind: transformers}
            mode: pairwise
            prompt: prompts/compare.yaml
            max_new_tokens: 16
    inputs: {model: policy, judge: judge}
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
    inputs: {model: policy, data: posttrain_data, judge: judge}
"""
# loaded from any folder (the judge's prompt file is read when the spec loads): the built-in pairwise prompt
LOADABLE = SPEC.replace("prompt: prompts/compare.yaml", "prompt: pairwise")


def spec_folder(root: Path) -> Path:
    """The spec's folder: the spec, the judge and policy model folders, the questions file and a judge prompt file."""
    home = root / "home"
    verdict_model(home / "models" / "tiny-judge", "Verdict: A")
    model_folder_of("llama", home / "models" / "policy", seed=1)
    (home / "data").mkdir()
    (home / "data" / "open.jsonl").write_text("".join(
        json.dumps({"id": f"q{i}", "question": f"What is {i} + {i}?", "reference": f"It is {i}."}) + "\n"
        for i in range(3)))
    (home / "prompts").mkdir()
    shutil.copy(judge_prompt_path("pairwise"), home / "prompts" / "compare.yaml")
    (home / "spec.yaml").write_text(SPEC)
    return home


def test_an_imported_judge_scores_evaluate_and_ranks_preference_pairs(tmp_path, monkeypatch):
    home = spec_folder(tmp_path)
    monkeypatch.chdir(home)  # a spec's relative paths are read against the folder it is loaded and resolved from
    spec = load_spec("spec.yaml").resolved()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # the run goes on from another folder: every path it reads is absolute now
    bench = spec.stage_config("eval_judged").benchmarks[0]
    assert bench.task == str(home / "data" / "open.jsonl") and bench.judge.prompt == str(home / "prompts" / "compare.yaml")
    assert bench.judge.generator.model_dir is None  # still the step's `judge` input

    executor = Executor(spec)
    plan = executor.plan()
    # the judge's identity is its step's fingerprint (lineage), not a hash of a folder the config names
    assert plan["eval_judged"].recipe["inputs"]["judge"] == plan["dpo"].recipe["inputs"]["judge"] == plan["judge"].fingerprint
    manifests = executor.run()
    assert not any(elsewhere.iterdir())  # nothing was read or written relative to the working folder

    report = json.loads((Path(manifests["eval_judged"]["uri"].removeprefix("file://")) / "eval.json").read_text())
    judge = report["benchmarks"]["open"]["judge"]
    # the judge always prefers the response shown first, which is the model's answer: every verdict a win
    assert report["all_metrics"]["open_chat_judge_score"] == 1.0 and report["all_metrics"]["open_chat_judge_malformed"] == 0.0
    assert (judge["step"], judge["source"], judge["model"]) == ("judge", "tiny-judge", "judge (tiny-judge)")
    assert judge["digest"] == f"fingerprint:{plan['judge'].fingerprint}" and judge["prompt"].endswith("compare.yaml")
    assert any(line.startswith("- `open`: judge `judge (tiny-judge)` (`fingerprint:") for line in judge_lines(report))

    dpo = Path(manifests["dpo"]["uri"].removeprefix("file://"))
    summary = json.loads((dpo / "preference.json").read_text())
    assert summary["genrm"]["step"] == "judge" and summary["genrm"]["digest"] == judge["digest"]
    counts = summary["pair_counts"]["train"]
    # sample 0 shown first is always preferred: every comparison of two different samples is a pair, none a tie
    assert counts["pairs"] > 0 and not counts.get("genrm_ties") and summary["train_pairs"] == counts["pairs"]


def test_the_plan_costs_the_judge_on_the_inputs_model(tmp_path, monkeypatch):
    home = spec_folder(tmp_path)
    monkeypatch.chdir(home)
    steps = {s.step: s for s in plan_spec(load_spec("spec.yaml").resolved()).steps}
    assert "not counted" not in steps["eval_judged"].note and "GenRM" not in steps["dpo"].note


@pytest.mark.parametrize("edit, message", [
    # a judge without a model folder reads the `judge` input, which must be wired
    (("    inputs: {model: policy, judge: judge}\n  dpo", "    inputs: {model: policy}\n  dpo"),
     (r"^steps.eval_judged.config.benchmarks.0.judge.generator: no model_dir, so the judge is the step's `judge` input, "
     r"which is not wired; wire `inputs: \{judge: STEP\}`")),
    (("inputs: {model: policy, data: posttrain_data, judge: judge}", "inputs: {model: policy, data: posttrain_data}"),
     r"^steps.dpo.config.genrm.generator: no model_dir, so the GenRM is the step's `judge` input, which is not wired"),
    # an input that no judge reads is refused: it would change the fingerprint and be read by nothing
    (("generator: {kind: transformers}\n            mode", ("generator: {kind: openai, base_url: 'http://j', model: j}"
      "\n            mode")), r"^steps.eval_judged.config.inputs.judge: no benchmark's judge reads it \(step 'judge'\)"),
    (("genrm: {generator: {kind: transformers}", "genrm: {generator: {kind: openai, base_url: 'http://j', model: j}"),
     r"^steps.dpo.config.inputs.judge: nothing reads it \(step 'judge'\)"),
])
def test_a_judge_input_missing_or_read_by_nothing_fails_the_load_in_one_line(edit, message):
    assert edit[0] in LOADABLE
    with pytest.raises(SpecError, match=message) as raised:
        parse_spec_text(LOADABLE.replace(*edit), "judged.yaml")
    assert "\n" not in str(raised.value)


def test_several_judges_of_one_step_share_the_input():
    two = LOADABLE.replace("            max_new_tokens: 16\n", "            max_new_tokens: 16\n"
                       "        - {name: open2, source: questions, task: data/open.jsonl, "
                       "judge: {generator: {kind: transformers}, mode: pairwise}}\n")
    config = parse_spec_text(two, "judged.yaml").stage_config("eval_judged")
    assert config.input_judges == [0, 1] and config.judge_files == []  # built-in prompts; the model is an input
