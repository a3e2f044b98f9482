"""The model card of a post-trained release names its post-training data, the teacher and the steps."""

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
