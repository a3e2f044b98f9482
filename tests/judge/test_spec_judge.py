"""What a user writes in a spec for the three uses of a judge (an evaluate benchmark, preference pairs from a GenRM; rl
wires the same `JudgeConfig`): the spec loads, and a field the judge cannot honour fails the load with one line."""

from __future__ import annotations

import pytest

from factory.errors import SpecError
from factory.spec import parse_spec_text

SPEC = """
name: judged
work_dir: runs/judged
storage: {root: runs/judged/store}
steps:
  base:
    kind: import_model
    config: {source: models/base}
  posttrain_data:
    kind: posttrain_data
    config:
      procedural:
        - {generator: basic_arithmetic, size: 16, heldout_size: 8}
  eval_open:
    kind: evaluate
    config:
      perplexity: false
      tasks: []
      benchmarks:
        - name: open_questions
          source: questions
          task: data/open.jsonl
          judge:
            generator: {kind: openai, base_url: "http://judge:8000", model: judge}
            prompt: correctness
            error_budget: 0.05
    inputs: {model: base}
  dpo_genrm:
    kind: preference
    config:
      judge: genrm
      genrm:
        generator: {kind: transformers, model_dir: models/judge}
        mode: pairwise
        both_orders: true
        scale: [1, 5]
        error_budget: 0.1
    inputs: {model: base, data: posttrain_data}
"""


def test_a_spec_with_judges_loads():
    spec = parse_spec_text(SPEC, "judged.yaml")
    bench = spec.stage_config("eval_open").benchmarks[0]
    assert bench.judge.prompt_name == "correctness" and bench.judge.error_budget == 0.05
    genrm = spec.stage_config("dpo_genrm").genrm
    assert (genrm.mode, genrm.both_orders, genrm.scale, genrm.prompt_name) == ("pairwise", True, (1, 5), "pairwise")
    assert spec.stage_config("dpo_genrm").genrm_files == ["models/judge"]  # the judge's folder is a raw input


@pytest.mark.parametrize("edit, message", [
    (("mode: pairwise", "mode: score"), "steps.dpo_genrm.config.genrm: both_orders swaps the two responses"),
    (("scale: [1, 5]", "scale: [5, 1]"), r"steps.dpo_genrm.config.genrm: scale: \[5, 1\] must be"),
    (("prompt: correctness", "prompt: pairwise"), ("steps.eval_open.config.benchmarks.0.judge: prompt: judge prompt "
                                                  "'pairwise': a score prompt's user template lacks")),
    # no model folder: the GenRM is the step's `judge` input (tests/stages/evaluate/test_judge_input.py wires one)
    (("model_dir: models/judge", "dtype: bfloat16"), ("steps.dpo_genrm.config.genrm.generator: no model_dir, so the "
                                                     "GenRM is the step's `judge` input, which is not wired")),
    (("judge: genrm\n", "judge: verifier\n"), "genrm: set it exactly when judge is 'genrm'"),
])
def test_what_a_judge_cannot_honour_fails_the_load_in_one_line(edit, message):
    with pytest.raises(SpecError, match=message) as raised:
        parse_spec_text(SPEC.replace(*edit), "judged.yaml")
    assert "\n" not in str(raised.value)
