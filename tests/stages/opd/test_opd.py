"""The opd stage for real on tiny models: the student (random init) moves toward a teacher that learned to answer
multiple-choice prompts with a letter (tests/stages/rl/letter_policy.py), the reverse KL is exactly zero when the
student is the teacher, a teacher with another tokenizer is refused at the run's start, and a run stopped mid-way
resumes with bit-identical losses and weights."""

from __future__ import annotations

import pytest
import torch

from factory.errors import InputError, SpecError
from factory.spec import load_spec, parse_spec
from factory.stage import NullTracker, StepContext
from factory.stages import opd
from factory.train.callbacks import read_metrics
from factory.train.objectives.opd import OnPolicyDistillationObjective, reverse_kl
from factory.train.trainer import Callback
from tests.builders import choice_prompt, conversations
from tests.spine import ROOT

CONFIG = {"steps": 12, "lr": 1e-2, "micro_batch_size": 8, "samples_per_prompt": 2, "max_new_tokens": 4,
          "reasoning": "off", "checkpoint_interval": 2, "keep_checkpoints": 2}
PER_STEP = {"reverse_kl", "student_logprob", "teacher_logprob", "response_length", "truncation_rate", "prompts"}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return conversations(tmp_path_factory.mktemp("opd") / "data", prompts=[choice_prompt(i) for i in range(16)])


def test_the_reverse_kl_is_the_closed_form_and_zero_for_the_same_model():
    torch.manual_seed(0)
    s, t = torch.randn(3, 5), torch.randn(3, 5)
    p, q = s.softmax(-1), t.softmax(-1)
    assert torch.allclose(reverse_kl(s, t), (p * (p / q).log()).sum(-1), atol=1e-6)
    assert torch.equal(reverse_kl(s, s), torch.zeros(3))


def test_the_student_moves_toward_the_teacher_and_every_figure_is_logged(choice_policy, letter_policy, data, tmp_path):
    tracker = NullTracker()
    result = opd.run(opd.Config(**CONFIG), {"model": choice_policy, "teacher": letter_policy, "data": data},
                     tmp_path, StepContext("opd", tracker=tracker))
    records = read_metrics(tmp_path / "opd.jsonl")
    assert [r["step"] for r in records] == list(range(1, 13)) and PER_STEP <= set(records[0])
    # the loss is the reverse KL of the student's sampled tokens; it falls, and the teacher likes the samples more
    losses = [r["loss"] for r in read_metrics(tmp_path / "metrics.jsonl")]
    assert losses == pytest.approx([r["reverse_kl"] for r in records], rel=1e-5)
    assert result["reverse_kl_last"] < 0.5 * result["reverse_kl_first"]
    assert result["teacher_logprob_last"] > result["teacher_logprob_first"]
    assert all(1 <= r["response_length"] <= 4 for r in records)
    tracked = {name for logged, _ in tracker.metrics for name in logged}
    assert {f"opd/{k}" for k in PER_STEP} <= tracked
    assert (tmp_path / "model" / "config.json").is_file() and (tmp_path / "opd.json").is_file()
    assert not (tmp_path / "checkpoints").exists()


def test_the_kl_is_exactly_zero_when_the_student_is_the_teacher(letter_policy, data, tmp_path):
    config = opd.Config(**{**CONFIG, "steps": 2})
    result = opd.run(config, {"model": letter_policy, "teacher": letter_policy, "data": data}, tmp_path,
                     StepContext("opd", tracker=NullTracker()))
    records = read_metrics(tmp_path / "opd.jsonl")
    # step 1 scores the very weights that sampled: KL exactly 0, the same log-probability from both, and a gradient
    # of rounding error only (p * (1 - sum p) in float32)
    assert records[0]["reverse_kl"] == 0.0 and records[0]["student_logprob"] == records[0]["teacher_logprob"]
    assert read_metrics(tmp_path / "metrics.jsonl")[0]["grad_norm"] < 1e-4
    assert result["steps"] == 2.0


def test_a_teacher_with_another_tokenizer_is_refused_at_the_start(choice_policy, chat_checkpoint, data, tmp_path):
    with pytest.raises(InputError, match=r"teacher .*: its tokenizer is not the student's") as e:
        opd.run(opd.Config(**CONFIG), {"model": choice_policy, "teacher": chat_checkpoint, "data": data}, tmp_path,
                StepContext("opd", tracker=NullTracker()))
    assert "\n" not in str(e.value) and not (tmp_path / "checkpoints").exists()


def test_the_config_refuses_steps_that_do_not_split_into_groups():
    with pytest.raises(ValueError, match="samples_per_prompt"):
        opd.Config(micro_batch_size=6, samples_per_prompt=4)


class StopAt(Callback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, trainer, metrics) -> None:
        if metrics.step == self.step:
            raise KeyboardInterrupt(f"stopped at step {self.step}")


def test_a_stopped_run_resumes_with_bit_identical_losses(choice_policy, letter_policy, data, tmp_path):
    config = opd.Config(**{**CONFIG, "steps": 8, "checkpoint_interval": 1, "grad_accum": 2, "micro_batch_size": 4})
    inputs = {"model": choice_policy, "teacher": letter_policy, "data": data}
    opd.run(config, inputs, tmp_path / "straight", StepContext("opd", tracker=NullTracker()))
    # grad_accum 2: the stop lands after a step whose batch the next step does not share, and a checkpoint every step
    with pytest.raises(KeyboardInterrupt):
        opd.run(config, inputs, tmp_path / "killed", StepContext("opd", tracker=NullTracker(), callbacks=[StopAt(5)]))
    assert not (tmp_path / "killed" / "model").exists()
    opd.run(config, inputs, tmp_path / "killed", StepContext("opd", tracker=NullTracker()))
    for name in ("metrics.jsonl", "opd.jsonl"):
        want = [{k: v for k, v in r.items() if "per_s" not in k} for r in read_metrics(tmp_path / "straight" / name)]
        got = [{k: v for k, v in r.items() if "per_s" not in k} for r in read_metrics(tmp_path / "killed" / name)]
        assert [r["step"] for r in got] == list(range(1, 9)) and got == want
    assert (tmp_path / "killed" / "model" / "model.safetensors").read_bytes() == \
        (tmp_path / "straight" / "model" / "model.safetensors").read_bytes()


def test_the_objective_holds_only_the_student():
    student, teacher = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    objective = OnPolicyDistillationObjective(student, teacher)
    assert set(objective.state_dict()) == {"model.weight", "model.bias"} and not teacher.weight.requires_grad


def test_a_spec_wires_the_teacher_by_name_and_the_default_recipe_refuses_opd(tmp_path):
    where = {"work_dir": str(tmp_path / "w"), "storage": {"root": str(tmp_path / "s")}}
    steps = {"data": {"kind": "posttrain_data", "config": {}},
             "teacher": {"kind": "import_model", "config": {"source": str(tmp_path)}},
             "student": {"kind": "import_model", "config": {"source": str(tmp_path)}},
             "opd": {"kind": "opd", "config": {"steps": 4}, "inputs": {"model": "student", "teacher": "teacher", "data": "data"}}}
    spec = parse_spec({"name": "opd", **where, "steps": steps})
    assert spec.step_defs()["opd"].inputs == {"model": "student", "teacher": "teacher", "data": "data"}
    with pytest.raises(SpecError, match=r"stages\.opd: needs input 'teacher', which no stage of the default recipe makes"):
        parse_spec({"name": "opd", **where, "stages": {"import_model": {"source": str(tmp_path)}, "posttrain_data": {},
                                                       "opd": {}}})


def test_the_example_spec_loads_with_its_opd_step_and_budget_control_data():
    spec = load_spec(ROOT / "examples" / "opd.yaml")
    steps = spec.step_defs()
    assert steps["opd"].inputs == {"model": "sft", "teacher": "sft_teacher", "data": "posttrain_data"}
    assert steps["posttrain_data"].inputs == {"model": "pretrain"}
    assert steps["posttrain_data"].config.budget_control.candidates == (0, 2, 4, 8)
