"""Every field a trainer kind accepts changes its run, or is refused at spec load (STYLE rule 21).

The walk runs each kind's tiny run (`tests.train.trainer_kinds`) with one field changed and compares the run's
signature (per-step loss, lr, gradient norm and tokens; converters; optimizer settings; checkpoints; tracked steps;
the stage's records and summary; the exported weights; or the error it raised) with the same run without the change.

The shell's own parts (`factory.train.config`: Loop, Precision, Parallelism) are read by the shell alone, so they are
walked once, on pretrain, and for every other kind the test proves that the shell trains it with the very config
object the stage was given. Fields a kind reads itself are walked on that kind. A field whose effect needs a second
process or a real data condition is proven by the named test instead. Every field of every trainer kind must have an
entry: a new field fails here until it is walked.
"""

from __future__ import annotations

import ast
import shutil
from typing import Any

import pytest

from factory.kinds import KINDS
from factory.train.config import Loop, Parallelism, Precision
from tests.spine import ROOT
from tests.train.trainer_kinds import BASE, SCORED, TRAINERS, run_kind

SHELL_FIELDS = (set(Loop.model_fields) | set(Precision.model_fields) | set(Parallelism.model_fields)) - {"content_hash"}

# field -> (new value, scenario): the scenario is set in both runs, so the field is compared where it can act
SHELL_WALK: dict[str, tuple[Any, dict[str, Any]]] = {
    "micro_batch_size": (2, {}),
    "grad_accum": (2, {}),
    "steps": (4, {}),
    "lr": (3e-2, {}),
    "min_lr_ratio": (0.5, {"decay_fraction": 0.5}),
    "warmup_steps": (3, {}),
    "decay_fraction": (0.5, {}),
    "weight_decay": (0.5, {}),
    "betas": ((0.5, 0.9), {}),
    "grad_clip": (1e-3, {}),
    "seed": (1, {}),
    "checkpoint_interval": (2, {}),
    "keep_checkpoints": (1, {"checkpoint_interval": 1}),
    "log_interval": (1, {}),
    "max_consecutive_nonfinite": (1, {"lr": 1e30, "grad_clip": 0.0}),
    "fused_optimizer": (True, {}),
    "precision": ("bf16", {}),
    "precision_options": ({"fp8_grad_format": "e4m3"}, {"precision": "fp8"}),
    "activation_checkpointing": (True, {}),
    "compile": (True, {"stop_at_start": True}),  # the converter is recorded; compiling the blocks is not waited for
}
# fields whose effect a single-process run cannot show, and the test that shows it
PROVEN_BY = {
    "data_parallel": "tests/train/test_parallel.py::test_two_ranks_match_one_process",
}

RL_ENVS = [{"name": "letters", "data": "choice", "heldout": 0}, {"name": "ifeval", "instructions": {"size": 8}, "heldout": 0}]

KIND_WALK: dict[str, dict[str, tuple[Any, dict[str, Any]]]] = {
    "pretrain": {
        "seq_len": (16, {}),
        "blend": ([{"until_fraction": 1.0, "weights": {"train": 1.0, "valid": 1.0}}], {}),
        "model": ({"preset": "tiny", "overrides": {"pattern": "M*"}}, {}),
    },
    "sft": {
        "seed": (1, {}), "seq_len": (40, {}),
        "reasoning_on_fraction": (0.25, {}), "valid_fraction": (0.3, {}), "valid_max": (1, {}), "switch_prompts": (0, {}),
    },
    "rl": {
        "seed": (1, {}),
        "steps_per_rollout": (2, {}),
        "eps_low": (0.01, {"steps_per_rollout": 2}),  # the ratio leaves 1 only off-policy
        "eps_high": (0.01, {"steps_per_rollout": 2}),
        "kl_coef": (0.5, {}),
        "log_reference_kl": (False, {}),
        "verifiers": (["math"], {}),
        "max_prompts": (4, {}),
        "rollout": ({"group_size": 4, "reasoning": "off",
                     "length_schedule": [{"until_fraction": 1.0, "max_new_tokens": 3}]}, {}),
        "environments": ([{"name": "letters", "data": "choice", "heldout": 0}], {}),
        # the letter policy meets the generated constraints the same way whatever letter it says: no signal
        "weight_schedule": ([{"until_fraction": 1.0, "weights": {"ifeval": 0.0}}], {"environments": RL_ENVS}),
        "curriculum": ({"window": 2, "threshold": 0.5}, {"environments": RL_ENVS}),
        "heldout_interval": (1, {"environments": [{"name": "ifeval", "instructions": {"size": 8}, "heldout": 4}]}),
    },
    "preference": {
        "seed": (1, {}), "seq_len": (27, {}),  # the prompts (22 tokens) no longer fit with 6 new tokens
        "loss": ("rpo", {}), "beta": (0.5, {}), "label_smoothing": (0.2, {}),
        "rpo_distance": ("sq", {"loss": "rpo"}), "eta": (2.0, {"loss": "rpo"}),
        "judge": ("verifier", {}), "reward_weights": ({"correctness": 1.0}, {}), "min_reward_gap": (0.05, {}),
        "samples_per_prompt": (3, {}), "pairs_per_prompt": (2, {"samples_per_prompt": 4}), "max_prompts": (4, {}),
        "heldout_prompts": (1, {}), "reasoning": ("on", {}), "max_new_tokens": (4, {}), "temperature": (0.5, {}),
        "top_p": (0.5, {}),
    },
    "reward_model": {
        "seed": (1, {}), "seq_len": (24, {}),
        "data": (None, {}),  # a copy of the scored responses without its last 20 records (made in the test)
        "attributes": (["helpfulness"], {}), "valid_fraction": (0.5, {}),
    },
    "distill": {
        "seed": (1, {}), "seq_len": (16, {}),
        "temperature": (2.0, {}), "kl_weight": (0.5, {}), "lm_weight": (0.5, {}), "train_split": ("valid", {}),
        "valid_split": ("train", {}), "valid_samples": (2, {}),
    },
    "opd": {
        "seed": (1, {}), "max_new_tokens": (2, {}), "temperature": (0.5, {}), "samples_per_prompt": (4, {}),
        "reasoning": ("on", {}), "max_prompts": (4, {}),
    },
}
KIND_PROVEN_BY = {
    # the Megatron engine's fields: a whole run on another engine, and parallel layouts that need two processes
    # how many prompts are sampled together: a NemotronH policy's samples do not depend on it (the factory's decoder
    # gives every sample its own seed; only speed and memory change), other architectures' batched generate pads them
    ("preference", "generation_batch"): "tests/generate/test_decode.py::test_sampled_same_for_every_slot_count_and_the_reference_step",
    ("pretrain", "engine"): "tests/stages/pretrain/test_engine_megatron.py::test_the_smoke_recipe_runs_end_to_end_on_the_megatron_engine",
    ("pretrain", "layout"): "tests/engines/test_megatron_engine.py::test_tensor_and_data_parallel_on_two_ranks_give_the_single_process_run",
    # expert parallelism needs GPUs: on a CPU it is refused at spec load, and read by engine megatron only
    ("pretrain", "expert_parallel"): "tests/stages/pretrain/test_engine_megatron.py::test_a_setting_the_engine_cannot_honour_is_refused_at_spec_load",
    # the reward settings act on math and code prompts (worker pools, timeouts, the sandbox)
    ("rl", "rewards"): "tests/stages/rl/test_rl_rollout.py::test_each_verifier_scores_right_and_wrong_replies",
    # a GenRM needs a judge model answering in its verdict format, and read responses a responses file: both
    # change which pairs are trained on, shown pair by pair against the verifier's
    ("preference", "genrm"): "tests/stages/preference/test_preference_genrm.py::test_pairs_from_the_genrm",
    ("preference", "responses_file"): "tests/stages/preference/test_preference_genrm.py::test_pairs_from_responses_read_instead_of_sampled",
    # faults need an environment that misbehaves
    ("rl", "error_budget"): "tests/stages/rl/test_rl_envs.py::test_faults_cost_samples_within_the_budget_and_a_gone_server_is_dropped",
}


@pytest.fixture(scope="module")
def walk(trainer_inputs, tmp_path_factory):
    root = tmp_path_factory.mktemp("walk")
    inputs = trainer_inputs
    fewer = root / "scored-fewer.jsonl"
    fewer.write_text("".join(SCORED.read_text().splitlines(keepends=True)[:-20]))
    cache: dict[str, dict[str, Any]] = {}

    def run(kind: str, overrides: dict[str, Any]) -> dict[str, Any]:
        stop = overrides.pop("stop_at_start", False)
        key = repr((kind, sorted(overrides.items()), stop))
        if key not in cache:
            out = root / f"run{len(cache)}"
            cache[key] = run_kind(kind, overrides, inputs, out, stop_at_start=stop)
            shutil.rmtree(out, ignore_errors=True)
        return cache[key]

    return run, str(fewer)


def _changed(run, kind: str, field: str, value: Any, scenario: dict[str, Any]) -> tuple[dict, dict]:
    before = run(kind, dict(scenario))
    after = run(kind, {**scenario, field: value})
    return before, after


def test_every_trainer_field_has_a_walk_entry():
    for kind in TRAINERS:
        fields = set(KINDS[kind].config.model_fields) - {"content_hash"}
        shell = fields & SHELL_FIELDS
        own = fields - SHELL_FIELDS
        assert shell <= set(SHELL_WALK) | set(PROVEN_BY), (kind, shell - set(SHELL_WALK) - set(PROVEN_BY))
        walked = set(KIND_WALK[kind]) | {f for k, f in KIND_PROVEN_BY if k == kind}
        assert own <= walked, (kind, own - walked)
    for where in [*PROVEN_BY.values(), *KIND_PROVEN_BY.values()]:
        path, _, name = where.partition("::")
        tree = ast.parse((ROOT / path).read_text())
        assert name in {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}, where


@pytest.mark.parametrize("field", sorted(SHELL_WALK))
def test_each_shell_field_changes_the_run(walk, field):
    run, _ = walk
    value, scenario = SHELL_WALK[field]
    before, after = _changed(run, "pretrain", field, value, scenario)
    assert "refused" not in before and "refused" not in after, (before.get("refused"), after.get("refused"))
    assert before != after, f"pretrain: {field}={value!r} did not change the run"


@pytest.mark.parametrize("kind", [k for k in TRAINERS if k != "pretrain"])
def test_the_shell_trains_every_kind_with_the_stages_own_config(walk, kind):
    run, _ = walk
    signature = run(kind, {})
    assert "error" not in signature, signature.get("error")
    assert signature["shell_config_is_the_stage_config"]
    assert signature["callbacks"][:1] == ["CheckpointCallback"] and signature["callbacks"][-1] == "HFExportCallback"
    assert {"MetricsCallback", "LossPlotCallback", "Probe"} <= set(signature["callbacks"])


@pytest.mark.parametrize("kind,field", [(k, f) for k in TRAINERS for f in sorted(KIND_WALK[k])])
def test_each_kind_field_changes_the_run(walk, kind, field):
    run, fewer = walk
    value, scenario = KIND_WALK[kind][field]
    if (kind, field) == ("reward_model", "data"):
        value = fewer
    before, after = _changed(run, kind, field, value, scenario)
    assert "refused" not in after, after["refused"]
    assert before != after, f"{kind}: {field}={value!r} did not change the run"


def test_a_field_a_kind_cannot_honour_is_refused_at_spec_load():
    from factory.errors import SpecError
    from factory.spec import parse_spec

    steps = {"posttrain_data": {"kind": "posttrain_data", "config": {}},
             "rl": {"kind": "rl", "config": {"seq_len": 64}, "inputs": {"model": "m", "data": "posttrain_data"}}}
    with pytest.raises(SpecError, match=r"steps\.rl\.config\.seq_len: unknown field"):
        parse_spec({"name": "x", "steps": steps})
    for kind, field, value in (("sft", "blend", [{"until_fraction": 1.0, "weights": {"train": 1.0}}]),
                               ("rl", "data_parallel", "fsdp"), ("rl", "compile", True),
                               ("sft", "precision_options", {"fp8_grad_format": "e4m3"}),  # with precision fp32
                               ("distill", "content_hash", ["x.jsonl"])):
        with pytest.raises(ValueError, match=field):
            KINDS[kind].config(**{**BASE[kind], field: value})
