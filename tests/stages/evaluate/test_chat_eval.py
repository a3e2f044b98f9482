"""Chat-model evaluation: a model with a chat template is asked through it, per reasoning mode and thinking budget,
and scored on the answer after its think block; the figures equal what bench/posttrain.py measures for the same model,
items and decoding; a template without a switch asked for a mode is refused in one line."""

from __future__ import annotations

import importlib.util
import sys
import json
from pathlib import Path

import pytest

from factory.chat.records import Prompt, read_prompts
from factory.errors import InputError
from factory.stage import Artifact, StepContext
from factory.stages import evaluate, sft
from factory.stages.evaluate.benchmarks import BenchmarkConfig
from factory.stages.rl.rewards import RewardConfig, VerifierRewards
from factory.tasks.prompts import read_prompt_config
from tests.builders import addition_heldout, additions, conversations, generator

ROOT = Path(__file__).resolve().parents[3]
MAX_NEW = 24


def _bench_module():
    """bench/posttrain.py as `python bench/posttrain.py` runs it: its own folder first on the path (it imports
    bench/common.py as `common`), for the load only."""
    spec = importlib.util.spec_from_file_location("bench_posttrain", ROOT / "bench" / "posttrain.py")
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(ROOT / "bench"))
        sys.modules.pop("common", None)
    return module


@pytest.fixture(scope="module")
def post_trained(chat_checkpoint, tmp_path_factory):
    """A tiny NemotronH fine-tuned for 60 steps on additions in both modes (it learns the switch), and a conversations
    artifact whose 16 "held-out" prompts are training additions (so that accuracy is not zero) and 8 unseen ones."""
    root = tmp_path_factory.mktemp("chat_eval")
    train = additions(150)
    seen = [Prompt(id=f"seen-{i}", task="addition", verifier="math", answer=c.answer, messages=c.messages[1:2])
            for i, c in enumerate(train[:32:2])]
    data = conversations(root / "data", train, heldout=[*seen, *addition_heldout(8)])
    out = root / "sft"
    out.mkdir()
    sft.run(sft.Config(steps=60, micro_batch_size=8, lr=3e-3, seq_len=128, checkpoint_interval=0, log_interval=10),
            {"model": chat_checkpoint, "data": data}, out, StepContext("sft"))
    return Artifact(out, {"fingerprint": "sft", "kind": "checkpoint", "stage": "sft"}), data


def _evaluate(model, data, folder: Path, **config) -> tuple[dict[str, float], dict]:
    folder.mkdir()
    quick = {"perplexity": False, "tasks": [], "prompts": [], "generator": {"batch_size": 32},
             "generation": {"max_new_tokens": MAX_NEW}, "benchmarks": [BenchmarkConfig(name="heldout", source="heldout")]}
    metrics = evaluate.run(evaluate.Config(**(quick | config)), {"model": model, "data": data}, folder,
                           StepContext("evaluate"))
    return metrics, json.loads((folder / "eval.json").read_text())


def test_per_mode_figures_equal_the_bench_s_for_the_same_model_items_and_decoding(post_trained, tmp_path):
    model, data = post_trained
    metrics, report = _evaluate(model, data, tmp_path / "eval")
    assert report["benchmarks"]["heldout"]["prompting"] == "chat"
    assert report["benchmarks"]["heldout"]["prompt"] == "generic"
    assert set(report["benchmarks"]["heldout"]["runs"]) == {"on", "off"}

    bench = _bench_module()
    with VerifierRewards(RewardConfig(math_workers=1)) as rewards:
        row, _ = bench.score(model.path / "model", read_prompts(data.path / "heldout.jsonl"), MAX_NEW, rewards,
                             samples=0, temperature=1.0)
    for mode in ("on", "off"):
        assert metrics[f"heldout_{mode}_pass@1"] == pytest.approx(row[f"acc_{mode}"])
        assert metrics[f"heldout_{mode}_think_closed"] + metrics[f"heldout_{mode}_think_malformed"] == \
            pytest.approx(row[f"think_{mode}"])
        assert metrics[f"heldout_{mode}_items"] == 24
    # the model learned the switch: thinking on, none off (what makes the comparison more than zeros)
    assert metrics["heldout_on_think_closed"] == 1.0 and metrics["heldout_off_think_closed"] == 0.0
    assert metrics["heldout_on_thinking_tokens"] > 0 and metrics["heldout_off_thinking_tokens"] == 0
    assert 0 < metrics["heldout_on_answer_tokens"] < MAX_NEW and metrics["heldout_on_truncated"] == 0.0


def test_budgets_are_swept_in_mode_on_and_logged_as_a_table_and_a_plot(post_trained, tmp_path):
    model, data = post_trained
    metrics, report = _evaluate(model, data, tmp_path / "eval", budgets=[0, 4], modes=["on"])
    assert set(report["benchmarks"]["heldout"]["runs"]) == {"on", "on_budget0", "on_budget4"}
    assert metrics["heldout_on_budget0_thinking_tokens"] == 0  # "<think>\n</think>": nothing inside
    # the budget counts the reply's tokens from its first, the opening marker and its newline included
    assert 0 < metrics["heldout_on_budget4_thinking_tokens"] <= 2
    assert metrics["heldout_on_budget0_think_closed"] == 1.0  # the cut closes the block itself
    table = (tmp_path / "eval" / "budget_curve.md").read_text().splitlines()
    assert [line.split(" | ")[1] for line in table[2:]] == ["0", "4", "none"]
    assert (tmp_path / "eval" / "budget_curve.png").stat().st_size > 0


def test_a_template_without_a_switch_asked_for_a_mode_is_refused_in_one_line(tmp_path, post_trained):
    template = "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}<|assistant|>"
    folder = generator(tmp_path / "plain-chat", chat_template=template)
    with pytest.raises(ValueError, match=r"stages\.evaluate\.modes: \['on'\] asks for the reasoning switch"):
        evaluate.Config(modes=["on"], generator={"model_dir": str(folder)})
    # the step's own model is checked when it runs, with the same line
    with pytest.raises(InputError, match=r"benchmarks\[0\]\.modes: \['on'\] asks for the reasoning switch"):
        evaluate.run(evaluate.Config(perplexity=False, tasks=[], prompts=[], benchmarks=[
            BenchmarkConfig(name="arith", source="procedural", task="basic_arithmetic", size=2, modes=["on"])]),
            {"model": _checkpoint_of(folder, tmp_path)}, tmp_path / "out", StepContext("evaluate"))


def _checkpoint_of(folder: Path, tmp_path: Path):
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "model").symlink_to(folder)
    (tmp_path / "out").mkdir()
    return Artifact(tmp_path / "ckpt", {"fingerprint": "x", "kind": "checkpoint", "stage": "x"})


def test_a_base_model_without_a_template_is_asked_in_plain_text(upstream, tmp_path):
    out = tmp_path / "eval"
    out.mkdir()
    metrics = evaluate.run(evaluate.Config(perplexity=False, tasks=[], prompts=[], generation={"max_new_tokens": 4},
                                           benchmarks=[BenchmarkConfig(name="arith", source="procedural",
                                                                       task="basic_arithmetic", size=2)]),
                           {"model": upstream["model"]}, out, StepContext("evaluate"))
    report = json.loads((out / "eval.json").read_text())
    assert report["benchmarks"] == {"arith": {"prompting": "plain"}}
    assert "arith_pass@1" in metrics and not any(k.startswith("arith_on") for k in metrics)


def test_heldout_without_data_input_names_the_input(upstream, tmp_path):
    config = evaluate.Config(perplexity=False, tasks=[], prompts=[],
                             benchmarks=[BenchmarkConfig(name="h", source="heldout")])
    assert "data" in config.required_inputs()
    with pytest.raises(InputError, match="wire the step's `data` input"):
        evaluate.run(config, {"model": upstream["model"]}, tmp_path, StepContext("evaluate"))


def test_prompt_configs_are_files_checked_at_spec_load(tmp_path):
    own = tmp_path / "boxed.yaml"
    own.write_text('system: "Be brief."\nuser: "Solve: {question} Put the answer in \\\\boxed{{}}."\n')
    config = evaluate.Config(benchmarks=[BenchmarkConfig(name="a", source="procedural", task="basic_arithmetic",
                                                         prompt=str(own)),
                                         BenchmarkConfig(name="b", source="procedural", task="basic_arithmetic")])
    assert config.prompt_files == [str(own)]  # its contents join the fingerprint; built-in ones ship with the code
    assert read_prompt_config(str(own)).messages("2 + 3") == [
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": "Solve: 2 + 3 Put the answer in \\boxed{}."}]
    with pytest.raises(ValueError, match=r"benchmarks\[0\]\.prompt: prompt config 'nope' is neither a built-in one"):
        evaluate.Config(benchmarks=[BenchmarkConfig(name="a", source="procedural", task="basic_arithmetic", prompt="nope")])
    (tmp_path / "bad.yaml").write_text('user: "no question here"\n')
    with pytest.raises(ValueError, match=r"bad\.yaml: user: .*lacks \{question\}"):
        evaluate.Config(benchmarks=[BenchmarkConfig(name="a", source="procedural", task="basic_arithmetic",
                                                    prompt=str(tmp_path / "bad.yaml"))])
