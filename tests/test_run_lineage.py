"""MLflow a person can read: parent runs named by start time, dead attempts KILLED, resumed steps linked,
the experiment opening on its training-runs view; and `factory run`'s work-folder lock."""

from __future__ import annotations

import re
from datetime import datetime, timezone
from pathlib import Path

import pytest

from factory.errors import UserError
from factory.lineage import EXPERIMENT_KIND, TAG_EXPERIMENT_KIND, TAG_RESUMED, Lineage
from cli.local_run import failure_line, run_lock
from factory.orchestrate import parent_run, pipeline_run_name


@pytest.fixture(scope="module")
def uri(tmp_path_factory):
    """One SQLite tracking database for the module (creating one costs seconds of migrations)."""
    uri = f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"
    Lineage(uri, "first")
    return uri


def test_parent_runs_are_named_by_start_time_and_the_experiment_is_tagged_for_model_training(uri):  # the view: tests/test_mlflow_ui.py
    lineage = Lineage(uri, "named")
    assert lineage.client.get_experiment(lineage.experiment_id).tags[TAG_EXPERIMENT_KIND] == EXPERIMENT_KIND
    assert pipeline_run_name("smoke", datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)) == "smoke-20260102-030405"
    run_id = parent_run(lineage, "job-1", "smoke", "name: smoke\n")
    assert re.fullmatch(r"smoke-\d{8}-\d{6}", lineage.client.get_run(run_id).info.run_name)
    assert parent_run(lineage, "job-1", "smoke", "name: smoke\n") == run_id  # the next step finds it


def test_an_experiment_made_before_gets_the_kind_tag(uri):
    from mlflow.tracking import MlflowClient

    exp_id = MlflowClient(uri).create_experiment("old")
    Lineage(uri, "old")
    assert MlflowClient(uri).get_experiment(exp_id).tags[TAG_EXPERIMENT_KIND] == EXPERIMENT_KIND


def test_dead_attempts_are_killed_and_the_resumed_step_links_to_them(uri):
    lineage = Lineage(uri, "killed")
    parent = parent_run(lineage, "job-1", "smoke", "name: smoke\n")
    steps = []
    with pytest.raises(KeyboardInterrupt):  # stands for the process dying: the run is left as it was
        with lineage.step_run(parent, "pretrain", {"lr": 0.1}, "f" * 64) as tracker:
            steps.append(tracker.run_id)
            lineage.client.set_terminated(tracker.run_id, "RUNNING")
            raise KeyboardInterrupt
    lineage.client.update_run(steps[0], "RUNNING")  # as a SIGKILL leaves it
    foreign = lineage.client.create_run(lineage.experiment_id, run_name="not the factory's").info.run_id

    killed = lineage.mark_killed()
    assert sorted(killed) == sorted([parent, steps[0]])
    assert {lineage.client.get_run(r).info.status for r in killed} == {"KILLED"}
    assert lineage.client.get_run(foreign).info.status == "RUNNING"  # only the factory's own runs

    with lineage.step_run(None, "pretrain", {"lr": 0.1}, "f" * 64) as tracker:
        resumed = tracker.run_id
    assert lineage.client.get_run(resumed).data.tags[TAG_RESUMED] == steps[0]
    with lineage.step_run(None, "evaluate", {}, "e" * 64) as tracker:
        fresh = tracker.run_id
    assert TAG_RESUMED not in lineage.client.get_run(fresh).data.tags


def test_one_factory_run_per_work_folder(tmp_path):
    with run_lock(tmp_path):
        with pytest.raises(UserError, match="another `factory run`"):
            with run_lock(tmp_path):
                pass
    with run_lock(tmp_path):  # released when the holder ends
        pass


def test_failure_line_names_the_step_and_its_own_error(tmp_path):
    log = ("06:09:47 - INFO - Executing task \x1b[96m'tokenize'\x1b[0m\n"
           "    Traceback (most recent call last):\n"
           '      File "x.py", line 1, in run\n'
           "    factory.errors.InputError: corpus/documents: no documents\n"
           "06:09:52 - ERROR - Task \x1b[96m'tokenize'\x1b[0m finished with status FAILURE\n"
           "    ValueError: a later task's noise\n")
    error = RuntimeError("Pipeline 'factory-spine' finished with status FAILURE. Inner task failed: \x1b[96m'tokenize'\x1b[0m inside 'exit-handler-1'.")
    line = failure_line(error, log, tmp_path / "run.log")
    assert line == f"step tokenize failed: corpus/documents: no documents (full log: {tmp_path / 'run.log'})"


def test_the_exit_handler_kills_step_runs_whose_pod_died(uri, tmp_path):
    """finish_pipeline (the KFP exit handler) against a real tracking store: a step run left RUNNING under the
    pipeline's parent run (its pod died) ends KILLED, a closed one keeps its status, another pipeline's is untouched."""
    import yaml

    from factory.lineage import TAG_STAGE
    from factory.orchestrate import finish_pipeline

    raw = yaml.safe_load((Path(__file__).parents[1] / "examples" / "smoke.yaml").read_text())
    raw.update(name="exit", work_dir=str(tmp_path), tracking={"uri": uri, "experiment": "exit"})
    spec_text = yaml.safe_dump(raw)
    lineage = Lineage(uri, "exit")
    parent = parent_run(lineage, "job-9", "exit", spec_text)
    other = parent_run(lineage, "job-10", "exit", spec_text)

    def step(parent_id, name):
        return lineage.client.create_run(lineage.experiment_id, run_name=name,
                                         tags={TAG_STAGE: name, "mlflow.parentRunId": parent_id}).info.run_id

    dead, done, elsewhere = step(parent, "pretrain"), step(parent, "tokenize"), step(other, "pretrain")
    lineage.client.set_terminated(done, "FINISHED")
    assert finish_pipeline(spec_text, "job-9", "FAILED") == parent
    status = {r: lineage.client.get_run(r).info.status for r in (dead, done, elsewhere, parent)}
    assert status == {dead: "KILLED", done: "FINISHED", elsewhere: "RUNNING", parent: "FAILED"}
