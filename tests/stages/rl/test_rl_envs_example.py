"""examples/rl_envs.yaml end to end at tiny size: web pages to a release whose rl step trained over five environments,
one of them served over HTTP by the reference server (started here, as the example's header says to)."""

from __future__ import annotations

import json
import threading

import yaml

from factory.envs import EnvironmentConfig, open_environment
from factory.envs.serve import make_server
from factory.spec import load_spec
from factory.steps import Executor
from tests.spine import ROOT

EXAMPLE = ROOT / "examples" / "rl_envs.yaml"


def tiny(data: dict, tmp, url: str) -> dict:
    """The example at test size: the same steps and environments, fewer and shorter of everything."""
    steps = data["steps"]
    steps["curate"]["config"]["sources"] = [str(ROOT / "examples" / "data" / "smoke-html")]
    steps["tokenize"]["config"]["vocab_size"] = 512
    steps["pretrain"]["config"].update(steps=12, seq_len=64, micro_batch_size=4, warmup_steps=2, checkpoint_interval=0)
    steps["posttrain_data"]["config"]["procedural"][0].update(size=16, heldout_size=4)
    steps["sft"]["config"].update(steps=6, micro_batch_size=8, warmup_steps=1, checkpoint_interval=0)
    rl = steps["rl"]["config"]
    rl.update(steps=2, checkpoint_interval=0, curriculum={"window": 2, "threshold": 0.9, "min_environments": 2})
    rl["rollout"]["length_schedule"] = [{"until_fraction": 1.0, "max_new_tokens": 6}]
    rl["rewards"] = {"math_workers": 1, "sandbox": {"isolation": "none", "timeout_s": 10}}
    for env in rl["environments"]:
        env["heldout"] = min(env["heldout"], 4)
        if env["name"] == "sums_http":
            env["url"] = url
        if env.get("limits"):
            env["limits"]["max_new_tokens"] = 6
        for source in ("procedural", "instructions"):
            if isinstance(env.get(source), dict):
                env[source]["size"] = 16
    steps["evaluate"]["config"].update(seq_len=64, max_new_tokens=4, generation={"max_new_tokens": 8})
    return {**data, "work_dir": str(tmp / "work"), "storage": {"root": str(tmp / "store")}, "steps": steps}


def test_the_example_trains_one_rl_step_over_five_environments_to_a_release(tmp_path):
    header = EXAMPLE.read_text().split("--env '", 1)[1].split("' &", 1)[0]
    served = EnvironmentConfig.model_validate_json(header.replace("\n#", " "))  # the server the header starts
    server = make_server(open_environment(served))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        path = tmp_path / "rl_envs.yaml"
        url = f"http://127.0.0.1:{server.server_address[1]}"
        path.write_text(yaml.safe_dump(tiny(yaml.safe_load(EXAMPLE.read_text()), tmp_path, url)))
        spec = load_spec(path)
        executor = Executor(spec)
        executor.parent_run_id = executor.lineage.start_pipeline(spec.name, spec.to_yaml())
        manifests = executor.run()
        executor.lineage.end_pipeline(executor.parent_run_id)
    finally:
        server.shutdown()
        server.server_close()
    assert list(manifests)[-3:] == ["rl", "evaluate", "release"]
    rl_dir = executor.store.materialize(executor.plan()["rl"].key)
    table = json.loads((rl_dir / "environments.json").read_text())
    assert list(table) == ["sums", "sums_http", "sums_tool", "ifeval", "mcq"]
    assert table["sums_http"]["samples"] > 0 and table["sums_http"]["dropped"] != "unreachable"
    records = [json.loads(line) for line in (rl_dir / "rollouts.jsonl").read_text().splitlines()]
    assert len(records) == 2 and all(f"env/{n}/reward" in records[0] for n in table)
    release = executor.store.materialize(executor.plan()["release"].key)
    assert (release / "model.safetensors").exists() or any(release.rglob("*.safetensors"))
