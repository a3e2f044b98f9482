"""The model card of a post-trained release names its post-training data, the teacher and the steps."""

import math
from pathlib import Path

from factory.stages.release import Config, run
from factory.stage import Artifact, StepContext

from tests.builders import manifest, publish


def test_model_card_lists_post_training_data_teacher_and_steps(upstream, tmp_path: Path):
    metrics = {"prompts": 150.0, "generated": 300.0, "kept": 296.0, "kept_on": 148.0, "kept_off": 148.0,
               "kept_by_teacher.procedural-solver": 296.0}
    data = publish(tmp_path / "conversations", "posttrain_data", "conversations", metrics=metrics)
    base = upstream["model"]
    sft = Artifact(base.path, manifest("sft", "checkpoint", inputs={"model": base, "data": data}))
    rl = Artifact(base.path, manifest("rl_math", "checkpoint", inputs={"model": sft, "data": data}, stage_kind="rl"))
    out = tmp_path / "release"
    out.mkdir()
    run(Config(model_name="tiny-posttrained"), {"model": rl, "tokens": upstream["tokens"], "evaluation": upstream["evaluation"]},
        out, StepContext("release"))
    card = (out / "README.md").read_text()
    section = card.split("## Post-training\n", 1)[1].split("\n## ", 1)[0]
    assert (f"- data `{data.uri}` (step posttrain_data, fingerprint `{data.fingerprint[:16]}`): 296 verified conversations "
            "kept of 300 generated for 150 prompts; 148 with `detailed thinking on`, 148 with `detailed thinking off`; "
            "teacher: `procedural-solver`.") in section
    assert "`procedural-solver` is not a language model" in section
    assert f"Post-training steps, from the base model to this release: sft (`{sft.uri}`) → rl_math (`{rl.uri}`)." in section
    front = card.split("---\n", 2)[1]
    assert data.uri not in front and data.uri in card  # local post-training data: named in the body, not as Hub metadata
    assert "This model was not post-trained" not in card



def test_model_card_gives_parameters_each_training_step_and_the_evaluations_before_and_after(upstream, tmp_path: Path):
    from safetensors import safe_open

    base = upstream["model"]
    data = publish(tmp_path / "conversations", "posttrain_data", "conversations", metrics={"kept": 10.0})
    sft = Artifact(base.path, manifest("sft", "checkpoint", inputs={"model": base, "data": data},
                                       config={"lr": 3e-3, "micro_batch_size": 16, "grad_accum": 2, "seq_len": 128},
                                       metrics={"steps": 150.0, "tokens_seen": 307200.0, "initial_loss": 4.5,
                                                "final_loss": 0.61, "world_size": 1.0}))
    rl = Artifact(base.path, manifest("rl_math", "checkpoint", inputs={"model": sft, "data": data}, stage_kind="rl",
                                      config={"lr": 2e-4, "micro_batch_size": 32},
                                      metrics={"steps": 10.0, "initial_loss": 0.1, "final_loss": 0.05, "reward_first": 0.15,
                                               "reward_last": 0.29, "accuracy_first": 0.15, "accuracy_last": 0.29}))
    before = publish(tmp_path / "eval_sft", "eval_sft", "evaluation", inputs={"model": sft}, stage_kind="evaluate",
                     metrics={"valid_perplexity": 412.5, "valid_perplexity_stderr": 20.0, "arith_pass@1": 0.25})
    after = publish(tmp_path / "eval_rl", "eval_rl", "evaluation", inputs={"model": rl, "baseline": before},
                    stage_kind="evaluate", metrics={"valid_perplexity": 430.0, "arith_pass@1": 0.5})
    import shutil

    shutil.copy(upstream["evaluation"].path / "eval.json", after.path / "eval.json")
    out = tmp_path / "release"
    out.mkdir()
    run(Config(model_name="tiny-posttrained"), {"model": rl, "tokens": upstream["tokens"], "evaluation": after},
        out, StepContext("release"))
    card = (out / "README.md").read_text()
    training = card.split("## Training\n", 1)[1].split("\n## ", 1)[0]
    with safe_open(str(out / "model.safetensors"), "pt") as f:
        params = sum(math.prod(f.get_slice(k).get_shape()) for k in f.keys())
    assert f"{params:,} parameters" in training
    rows = [line for line in training.splitlines() if line.startswith("| sft") or line.startswith("| rl_math")]
    assert rows == ["| sft | sft | 150 | 307,200 | 0.003 | 32 x 128 | 4.5000 → 0.6100 | - | - |",
                    "| rl_math | rl | 10 | - | 0.0002 | 32 x - | 0.1000 → 0.0500 | 0.1500 → 0.2900 | 0.1500 → 0.2900 |"]
    evaluations = card.split("## Evaluations along the lineage\n", 1)[1].split("\n## ", 1)[0]
    assert "| eval_sft | sft | 0.2500 | 412.5000 (20) |" in evaluations
    assert "| eval_rl (this release's) | rl_math | 0.5000 | 430 |" in evaluations
