"""The spec: loads the smoke spec, and every wrong field is one error that names its path."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from factory.errors import InputError, SpecError
from factory.spec import MAX_SPEC_NODES, MAX_STEP_NAME, STEP_NAME, load_spec, parse_spec, parse_spec_text

ROOT = Path(__file__).resolve().parent.parent
SMOKE = ROOT / "examples" / "smoke.yaml"


def smoke_data() -> dict:
    return yaml.safe_load(SMOKE.read_text())


def test_smoke_spec_loads_and_orders_stages():
    spec = load_spec(SMOKE)
    assert spec.name == "smoke"
    assert spec.enabled() == ["quality", "curate", "tokenize", "pretrain", "evaluate", "release"]
    assert spec.inputs_of("curate") == {"quality": "quality"} and spec.inputs_of("tokenize") == {"corpus": "curate"}
    # The top-level model preset is handed to the pretrain stage.
    assert spec.stages.pretrain.model.preset == "tiny"
    assert spec.tracking_uri().startswith("sqlite:///")


def test_spec_is_frozen():
    spec = load_spec(SMOKE)
    with pytest.raises(Exception):
        spec.name = "other"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d["stages"]["pretrain"].update(lr="fast"), r"^stages\.pretrain\.lr: Input should be a valid number"),
        (lambda d: d["stages"]["tokenize"].update(vocab_sise=10), r"^stages\.tokenize\.vocab_sise: unknown field"),
        (lambda d: d.update(name="Bad Name"), r"^name: String should match pattern"),
        (lambda d: d["resources"].update(pretrian={"cpu": "1"}), r"^resources\.pretrian: no such step"),
        (lambda d: d["stages"].pop("tokenize"), r"^stages\.pretrain: needs stage 'tokenize', which is absent"),
        (lambda d: d["stages"]["curate"].update(gopher_quality={"min_doc_words": "x"}),
         r"^stages\.curate\.gopher_quality\.min_doc_words: Input should be a valid integer"),
        (lambda d: d["model"].update(preset="huge"), r"^model\.preset: unknown preset 'huge'"),
    ],
)
def test_bad_field_names_its_path(edit, message):
    data = smoke_data()
    edit(data)
    with pytest.raises(SpecError, match=message):
        parse_spec(data)


def test_bad_yaml_names_line(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("name: smoke\nstages: [\n")
    with pytest.raises(SpecError, match=r"bad.yaml: not valid YAML at line 3"):
        load_spec(p)


def test_missing_spec_file(tmp_path):
    with pytest.raises(InputError, match="spec file not found"):
        load_spec(tmp_path / "nope.yaml")


def test_resolved_makes_local_paths_absolute(tmp_path):
    spec = load_spec(SMOKE).resolved(tmp_path)
    assert spec.work_dir == str(tmp_path / "runs" / "smoke")
    assert spec.stages.curate.sources == [str(tmp_path / "examples" / "data" / "smoke-html")]
    s3 = parse_spec({**smoke_data(), "storage": {"root": "s3://bucket/x"}}).resolved(tmp_path)
    assert s3.storage.root == "s3://bucket/x"


def test_cluster_example_loads_and_launches_pretrain():
    spec = load_spec(ROOT / "examples" / "cluster.yaml")
    assert spec.storage.root.startswith("s3://")
    assert spec.needs_launcher("pretrain") and not spec.needs_launcher("evaluate")
    assert spec.image_for("evaluate") == "nemotron-factory/factory-gpu:0.1.0"
    assert spec.image_for("tokenize") == "nemotron-factory/factory-cpu:0.1.0"
    assert spec.stages.pretrain.model.preset == "small_20m"
    assert spec.enabled() == ["quality", "curate", "synth", "tokenize", "pretrain", "evaluate", "release"]
    assert spec.inputs_of("tokenize") == {"corpus": "curate", "synthetic": "synth"} and spec.needs_launcher("curate")


def test_evaluate_task_files_join_curate_decontamination_sets(tmp_path):
    data = smoke_data()
    data["stages"]["evaluate"]["task_files"] = ["evals/qa.jsonl", "evals/cloze.jsonl"]
    data["stages"]["evaluate"]["multiple_choice_files"] = ["evals/mc.jsonl"]
    data["stages"]["evaluate"]["benchmarks"] = [{"name": "mine", "source": "file", "task": "evals/code.jsonl"},
                                                {"name": "gsm", "source": "procedural", "task": "gcd"}]
    data["stages"]["curate"]["decontamination_sets"] = ["./evals/qa.jsonl", "more/"]
    spec = parse_spec(data)
    assert spec.stages.curate.decontamination_sets == [
        "./evals/qa.jsonl", "more/", "evals/cloze.jsonl", "evals/mc.jsonl", "evals/code.jsonl"]
    assert spec.stages.evaluate.task_files == ["evals/qa.jsonl", "evals/cloze.jsonl"]
    # resolved against the spec's folder like any other external input, so curate's fingerprint digests them
    (tmp_path / "evals").mkdir()
    assert str(tmp_path / "evals/cloze.jsonl") in spec.resolved(tmp_path).stages.curate.decontamination_sets


def named_data() -> dict:
    """The smoke spec as named steps, evaluating the pretrained model twice with different settings."""
    data = smoke_data()
    stages = data.pop("stages")
    data["steps"] = {
        "quality": {"kind": "quality", "config": stages["quality"]},
        "curate": {"kind": "curate", "config": stages["curate"], "inputs": {"quality": "quality"}},
        "tokenize": {"kind": "tokenize", "config": stages["tokenize"], "inputs": {"corpus": "curate"}},
        "pretrain": {"kind": "pretrain", "config": stages["pretrain"], "inputs": {"tokens": "tokenize"}},
        "eval_final": {"kind": "evaluate", "config": {**stages["evaluate"], "task_files": ["tasks/b.jsonl"]},
                       "inputs": {"model": "pretrain", "tokens": "tokenize"}},
        "release": {"kind": "release", "config": stages["release"], "inputs": {"model": "pretrain", "tokens": "tokenize", "evaluation": "eval_final"}},
        "eval_base": {"kind": "evaluate", "config": {**stages["evaluate"], "task_files": ["tasks/a.jsonl"]},
                      "inputs": {"model": "pretrain", "tokens": "tokenize"}},
    }
    return data


def test_named_steps_hold_two_steps_of_one_kind_in_dependency_order():
    spec = parse_spec(named_data())
    assert spec.enabled() == ["quality", "curate", "tokenize", "pretrain", "eval_final", "release", "eval_base"]
    assert spec.kind_of("eval_base") == spec.kind_of("eval_final") == "evaluate"
    assert spec.inputs_of("release") == {"model": "pretrain", "tokens": "tokenize", "evaluation": "eval_final"}
    assert spec.stage_config("eval_final").task_files != spec.stage_config("eval_base").task_files
    # The spec-level rules hold for named steps: the model preset reaches pretrain, and every evaluate
    # step's task files join curate's decontamination sets.
    assert spec.stage_config("pretrain").model.preset == "tiny"
    assert spec.stage_config("curate").decontamination_sets == ["tasks/b.jsonl", "tasks/a.jsonl"]
    again = parse_spec(json.loads(spec.model_dump_json()))
    assert again.enabled() == spec.enabled() and again.stage_config("eval_base") == spec.stage_config("eval_base")


def test_named_steps_are_the_default_recipe_when_wired_like_it():
    stages, steps = load_spec(SMOKE), parse_spec(named_data())
    for name in ("quality", "curate", "tokenize", "pretrain"):
        assert steps.inputs_of(name) == stages.inputs_of(name)
        assert steps.stage_config(name) == stages.stage_config(name) or name == "curate"  # curate gains the task files
    assert steps.stage_config("eval_final").model_copy(update={"task_files": []}) == stages.stage_config("evaluate")


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda s: s["eval_final"]["inputs"].update(model="x"), r"^steps\.eval_final\.inputs\.model: no step 'x'$"),
        (lambda s: s["eval_final"]["inputs"].update(model="tokenize"),
         r"^steps\.eval_final\.inputs\.model: step 'tokenize' makes a 'tokens' artifact, but this input takes 'checkpoint'"),
        (lambda s: s["eval_final"]["inputs"].update(modle="pretrain"), r"^steps\.eval_final\.inputs\.modle: kind evaluate has no input 'modle'"),
        (lambda s: s["eval_final"]["inputs"].pop("tokens"), r"^steps\.eval_final\.inputs: missing input 'tokens'"),
        (lambda s: s["eval_final"]["config"].update(seq_len="long"), r"^steps\.eval_final\.config\.seq_len: Input should be a valid integer"),
        (lambda s: s["eval_final"].update(kind="evaluation"), r"^steps\.eval_final\.kind: no stage kind 'evaluation' \(kinds are (\w+, )*quality, curate"),
        (lambda s: s["eval_final"].pop("kind"), r"^steps\.eval_final\.kind: missing"),
        (lambda s: s.update(Eval={"kind": "quality"}), r"^steps\.Eval: a step name is at most 40 lowercase"),
        (lambda s: s.update({"eval-final": {"kind": "quality"}}), r"^steps\.eval-final: clashes with step 'eval_final'"),
        (lambda s: s["curate"]["inputs"].update(quality="release"), r"^steps\.curate\.inputs\.quality: step 'release' makes a 'release'"),
    ],
)
def test_a_wiring_mistake_names_its_path(edit, message):
    data = named_data()
    edit(data["steps"])
    with pytest.raises(SpecError, match=message):
        parse_spec(data)


RELATIVE = "valid_perplexity <= 1.03 * eval_base.valid_perplexity"


def test_a_relative_gate_is_wired_through_the_baseline_input():
    data = named_data()
    data["steps"]["eval_final"]["config"]["gates"] = [RELATIVE]
    data["steps"]["eval_final"]["inputs"]["baseline"] = "eval_base"
    spec = parse_spec(data)
    assert spec.inputs_of("eval_final")["baseline"] == "eval_base"
    assert spec.enabled().index("eval_base") < spec.enabled().index("eval_final")  # the baseline runs first
    data["steps"]["eval_final"]["inputs"].pop("baseline")
    with pytest.raises(SpecError, match=r"^steps\.eval_final\.inputs: missing input 'baseline' \(a 'evaluation' artifact\)"):
        parse_spec(data)
    data["steps"]["eval_final"]["config"]["gates"] = ["valid_perplexity <= 1.03 * eval_bf16.valid_perplexity"]
    data["steps"]["eval_final"]["inputs"]["baseline"] = "eval_base"
    with pytest.raises(SpecError, match=r"^steps\.eval_final\.config\.gates\[0\]: .* compares with step 'eval_bf16', but "
                                        r"this step's baseline input is 'eval_base'; wire `inputs: \{baseline: eval_bf16\}`"):
        parse_spec(data)
    stages = smoke_data()
    stages["stages"]["evaluate"]["gates"] = [RELATIVE]
    with pytest.raises(SpecError, match=r"^stages\.evaluate: needs input 'baseline', which no stage of the default recipe "
                                        r"makes; declare named steps"):
        parse_spec(stages)


def test_a_cycle_and_a_mixed_spec_are_refused():
    data = named_data()
    data["steps"]["rewrite_a"] = {"kind": "synth", "inputs": {"corpus": "rewrite_b"}}
    data["steps"]["rewrite_b"] = {"kind": "synth", "inputs": {"corpus": "rewrite_a"}}
    with pytest.raises(SpecError, match=r"^steps\.rewrite_a\.inputs: the steps form a cycle \(rewrite_a -> rewrite_b -> rewrite_a\)"):
        parse_spec(data)
    both = {**named_data(), "stages": smoke_data()["stages"]}
    with pytest.raises(SpecError, match=r"give either `stages` \(the default recipe\) or `steps` \(named steps\), not both"):
        parse_spec(both)
    data = named_data()
    data["resources"] = {"eval_base": {"cpu": "1"}, "evaluate": {"cpu": "1"}}
    with pytest.raises(SpecError, match=r"^resources\.evaluate: no such step \(steps are quality, curate"):
        parse_spec(data)


# --- spec files that would stall, exhaust or mislead the loader -------------------------------------------------

def test_a_key_written_twice_is_an_error_naming_both_lines(tmp_path):
    """PyYAML keeps the last of two keys silently: `max_error_fraction: 0.0` then `1.0` meant 1.0."""
    p = tmp_path / "dup.yaml"
    p.write_text("name: smoke\nstages:\n  curate:\n    sources: [x]\n    max_error_fraction: 0.0\n"
                 "    max_error_fraction: 1.0\n")
    with pytest.raises(SpecError, match=r"dup.yaml: not valid YAML at line 6, column 5: key 'max_error_fraction' appears "
                                        r"twice in one mapping \(lines 5 and 6\)"):
        load_spec(p)
    # a merge key's values may be overridden beside it: that is what `<<` is for
    merged = ("name: smoke\nstages:\n  curate: &curate {sources: [x], max_error_fraction: 0.1}\n  tokenize: {vocab_size: 512}\n"
              "resources:\n  curate: {cpu: '1'}\n  tokenize:\n    <<: {cpu: '1', memory: 1G}\n    cpu: '2'\n")
    assert load_spec(_write(tmp_path / "merge.yaml", merged)).resources_for("tokenize").cpu == "2"


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _alias_bomb(levels: int = 9) -> str:
    """Each level an anchor of nine aliases of the one below: 9^levels values once expanded, 4.7 GB as JSON."""
    lines = ["    a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"    a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, levels + 1)]
    return "name: smoke\nmodel:\n  preset: tiny\n  overrides:\n" + "\n".join(lines) + "\nstages:\n  curate: {sources: [x]}\n"


def test_an_alias_bomb_is_refused_before_anything_walks_it(tmp_path):
    import time

    started = time.monotonic()
    with pytest.raises(SpecError, match=r"bomb.yaml: more than 1,000,000 values once its YAML aliases are expanded"):
        load_spec(_write(tmp_path / "bomb.yaml", _alias_bomb()))
    assert time.monotonic() - started < 5
    with pytest.raises(SpecError, match=r"a YAML alias refers to a value that contains it"):
        load_spec(_write(tmp_path / "self.yaml", "name: smoke\nmodel: &m {overrides: {x: *m}}\n"))
    with pytest.raises(SpecError, match=r"nested too deeply to be a spec"):
        load_spec(_write(tmp_path / "deep.yaml", "name: smoke\nx: " + "[" * 20000 + "]" * 20000 + "\n"))
    # a few aliases, as a spec uses them, are fine
    shared = "name: smoke\nstages:\n  curate: {sources: &src [examples/data/smoke-html]}\n  quality: {max_reference_docs: 10}\n"
    assert load_spec(_write(tmp_path / "ok.yaml", shared)).stages.curate.sources == ["examples/data/smoke-html"]


def test_a_device_a_folder_and_an_oversized_file_are_not_specs(tmp_path):
    """`/dev/zero` as a spec was read whole (4.7 GB) before anything checked it."""
    for device in ("/dev/zero", "/dev/urandom"):
        with pytest.raises(InputError, match=rf"^{device}: not a regular file \(a device or socket cannot be a spec\)"):
            load_spec(device)
    with pytest.raises(InputError, match="a folder, not a spec file"):
        load_spec(tmp_path)
    big = tmp_path / "big.yaml"
    big.write_text("name: smoke\n# " + "x" * (1 << 20) + "\n")
    with pytest.raises(InputError, match=r"big.yaml: larger than 1 MiB"):
        load_spec(big)
    latin = tmp_path / "latin.yaml"
    latin.write_bytes(b"name: caf\xe9\n")
    with pytest.raises(InputError, match=r"latin.yaml: not UTF-8 text \(byte 9\)"):
        load_spec(latin)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d["steps"].update({"a" * 300: {"kind": "quality"}}),
         r"^steps\.a{60}\.\.\. \(300 characters\): a step name is at most 40 lowercase"),
        (lambda d: d["steps"].update({"ev/../../x": {"kind": "quality"}}), r"^steps\.ev/\.\./\.\./x: a step name is at most 40"),
        (lambda d: d.update(name="n" * 41), r"^name: String should have at most 40 characters"),
        (lambda d: d.update(work_dir=""), r"^work_dir: empty: name a folder"),
        (lambda d: d.update(work_dir="/"), r"^work_dir: the file system's root cannot be the factory's folder"),
        (lambda d: d.update(storage={"root": " "}), r"^storage\.root: empty: name a folder"),
    ],
)
def test_names_and_folders_are_checked_at_load(edit, message):
    """A 300-character step name failed only when `factory step` made its folder ("File name too long"), and an empty
    work_dir was the folder the command ran in."""
    data = named_data()
    edit(data)
    with pytest.raises(SpecError, match=message):
        parse_spec(data)


# --- fuzzers: path shapes and YAML shapes ---------------------------------------------------------------------------

NAMES = st.one_of(
    st.text(max_size=80),
    st.text(alphabet="ab-_/.\x00\n\t é", max_size=400),
    st.from_regex(r"[a-z][a-z0-9_-]{0,60}", fullmatch=True),
)


@settings(max_examples=300, deadline=None)
@given(name=NAMES)
def test_fuzz_step_name_shapes(name):
    """Any step name is either a folder name of its own (at most 40 characters, no separator, no dot-dot, nothing a
    shell or Kubernetes would choke on) or one short line naming it."""
    data = named_data()
    data["steps"][name] = {"kind": "quality", "config": data["steps"]["quality"]["config"]}
    try:
        parse_spec(data)
    except SpecError as e:
        assert str(e).startswith("steps.") and "\n" not in str(e) and len(str(e)) < 300, str(e)
        return
    assert STEP_NAME.match(name) and len(name) <= MAX_STEP_NAME and Path(name).name == name != ".."


@settings(max_examples=150, deadline=None)
@given(levels=st.integers(1, 14), fanout=st.integers(1, 12), under=st.sampled_from(["overrides", "resources"]),
       duplicate=st.booleans())
def test_fuzz_alias_shapes(levels, fanout, under, duplicate):
    """Anchors of `fanout` aliases of the level below, `levels` deep, under model.overrides or resources, maybe with a
    key written twice: refused in well under a second when the expansion is large, never an exception but a
    `SpecError`."""
    import time

    lines = [f"    a0: &a0 [{', '.join(['x'] * fanout)}]"]
    lines += [f"    a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * fanout)}]" for i in range(1, levels + 1)]
    body = "\n".join(lines)
    text = ("name: smoke\n" + (f"model:\n  preset: tiny\n  overrides:\n{body}\n" if under == "overrides" else
                               f"resources:\n  curate:\n    node_selector:\n{body}\n")
            + "stages:\n  curate: {sources: [x]}\n" + ("name: again\n" if duplicate else ""))
    started = time.monotonic()
    with pytest.raises(SpecError) as refused:
        parse_spec_text(text, "fuzz.yaml")
    assert time.monotonic() - started < 2
    expanded = sum(fanout ** i for i in range(1, levels + 2))
    if duplicate:
        assert "appears twice" in str(refused.value)
    elif expanded > 2 * MAX_SPEC_NODES:
        assert "once its YAML aliases are expanded" in str(refused.value)
    elif expanded < MAX_SPEC_NODES // 2:
        assert "aliases" not in str(refused.value)  # refused for what it is (an unknown field, a wrong type)


def test_resolved_makes_nested_judge_and_benchmark_paths_absolute(tmp_path, monkeypatch):
    """A benchmark's task file and prompt file and a judge's prompt file and model folder sit inside lists and optional
    settings, which `external_fields` does not walk: they are resolved like every other path; built-in names are not."""
    from factory.judge.prompt_file import judge_prompt_path
    from factory.tasks.prompts import builtin_prompt_configs

    (tmp_path / "prompts").mkdir()
    (tmp_path / "prompts" / "compare.yaml").write_text(judge_prompt_path("pairwise").read_text())
    (tmp_path / "prompts" / "ask.yaml").write_text("system: ''\nuser: '{question}'\n")
    judge = {"generator": {"kind": "transformers", "model_dir": "models/judge"}, "mode": "pairwise",
             "prompt": "prompts/compare.yaml"}
    data = named_data()
    data["steps"]["eval_base"]["config"]["benchmarks"] = [
        {"name": "open", "source": "questions", "task": "data/open.jsonl", "prompt": "prompts/ask.yaml", "judge": judge},
        {"name": "gsm", "source": "procedural", "task": "gcd", "prompt": builtin_prompt_configs()[0],
         "judge": {**judge, "prompt": "pairwise"}}]
    data["steps"]["eval_base"]["config"]["content_hash"] = ["data/open.jsonl"]
    monkeypatch.chdir(tmp_path)  # the judge's prompt file is read when the spec loads
    spec = parse_spec(data).resolved(tmp_path)
    monkeypatch.chdir(ROOT)
    open_bench, gsm = spec.stage_config("eval_base").benchmarks
    assert open_bench.task == str(tmp_path / "data" / "open.jsonl") and open_bench.prompt == str(tmp_path / "prompts/ask.yaml")
    assert open_bench.judge.prompt == str(tmp_path / "prompts" / "compare.yaml")
    assert open_bench.judge.generator.model_dir == gsm.judge.generator.model_dir == str(tmp_path / "models" / "judge")
    # built-in names stay names: the procedural generator, the prompt configs, the judge's built-in prompt
    assert (gsm.task, gsm.prompt, gsm.judge.prompt) == ("gcd", builtin_prompt_configs()[0], "pairwise")
    # content_hash names the nested file as written, and is resolved with it
    assert spec.stage_config("eval_base").content_hash == [str(tmp_path / "data" / "open.jsonl")]
    assert spec.stage_config("eval_base").judge_files == [str(tmp_path / "prompts" / "compare.yaml"),
                                                          str(tmp_path / "models" / "judge")]


@pytest.mark.parametrize("example", sorted((ROOT / "examples").glob("*.yaml")), ids=lambda p: p.name)
def test_every_example_resolves_as_factory_run_resolves_it(example):
    """`factory run` resolves a spec (defaults written back, paths made absolute) before it plans: a default that a
    check reads as set (examples/rl_envs.yaml's environments' retries did) would refuse the spec there only."""
    spec = load_spec(example)
    resolved = spec.resolved(ROOT)
    assert resolved.name == spec.name and list(resolved.step_defs()) == list(spec.step_defs())
