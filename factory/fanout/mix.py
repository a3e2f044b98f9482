"""The mix step fanned out over pipeline tasks: each proxy its own pod, a KFP ParallelFor per search round.

`factory compile` / `submit` turn a mix step (`proxy_runner` parallel_for, or auto) into these tasks (`factory.fanout`):

    prepare_task        target set, embeddings, clusters, byte streams, prior; plans round 1  -> round 1's jobs
    work_task(job)      trains one proxy (a ParallelFor iteration)                            -> {"round", "index", "loss"}
    round_task(r)       after round r-1's proxies (dsl.Collected): fits the predictor, plans r -> round r's jobs
    finish_task         the step itself through the executor (`Executor.run_step`): replays the search on the
                        measured losses (`factory.stages.mix.stage.finish`) and publishes the artifact as every step does

What the mix stage computes (preparing, planning a round, training a proxy, finishing) is the stage's own
(`factory.stages.mix`); this module runs it as tasks. The tasks share their work through the store, beside the
step's artifact, under `<step key>.work/` (a key the executor never reads as an artifact): `prepared` (the streams
and `prepared.json`), `plan-R` (round R's mixtures and predicted losses) and `proxy-R-I` (one measured loss). Each
piece is published like an artifact, files first and manifest last, so a killed task leaves nothing that counts; a
retried task reuses every piece already there, so a proxy whose loss is in the store is not trained again. Every
plan is the one the in-process search makes (`factory.stages.mix.climb.plan_round`), and every proxy job the one
its process pool runs, so both forms publish the same corpus, blend and mixture. When the step is already
published, every task returns at once.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from factory.endpoints import with_cluster_defaults
from factory.errors import UserError
from factory.logs import get_logger
from factory.orchestrate import KfpArtifact, run_component
from factory.spec import parse_spec
from factory.stage import Artifact, StepContext
from factory.stages.mix.config import Config
from factory.stages.mix.prepare import Prepared, prepare
from factory.stages.mix.proxy_runs import ProxyPool
from factory.stages.mix.climb import Round, plan_round
from factory.stages.mix.stage import finish, proxy_jobs
from factory.steps import Executor, PlannedStep
from factory.store import Store

__all__ = ["RoundStore", "finish_task", "prepare_task", "round_task", "work_task"]

log = get_logger("factory.fanout.mix")


class RoundStore:
    """The search's pieces in the store under `<step key>.work/`, each published with its own manifest."""

    def __init__(self, store: Store, step_key: str, work_dir: Path) -> None:
        self.store = store
        self.root = f"{step_key}.work"
        self.work_dir = work_dir

    def key(self, piece: str) -> str:
        return f"{self.root}/{piece}"

    def get(self, piece: str) -> dict[str, Any] | None:
        """The piece's manifest, or None when it was never (completely) published."""
        return self.store.complete(self.key(piece))

    def put(self, piece: str, manifest: dict[str, Any],
            fill: Callable[[Path], Mapping[str, Any]] | None = None) -> dict[str, Any]:
        """Publish a piece: `fill(folder)` writes its files and returns more manifest fields; the manifest goes last."""
        key = self.key(piece)
        staging = self.store.staging_dir(key, self.work_dir)
        if staging.exists():  # left by a killed attempt
            shutil.rmtree(staging)
        staging.mkdir(parents=True)
        extra = fill(staging) if fill is not None else {}
        return self.store.publish(staging, key, {**manifest, **extra})

    def prepared_manifest(self) -> dict[str, Any]:
        """The prepared piece's manifest: the dataset names and the prior, without fetching the streams."""
        manifest = self.get("prepared")
        if manifest is None:
            raise UserError(f"{self.store.uri(self.key('prepared'))}: the mix step's prepare task has not published "
                            "its datasets; rerun the pipeline")
        return manifest

    def prepared(self) -> Path:
        """A local folder holding the prepared streams and `prepared.json`."""
        self.prepared_manifest()
        return self.store.materialize(self.key("prepared"))

    def plan(self, r: int) -> Round:
        manifest = self.get(f"plan-{r}")
        if manifest is None:
            raise UserError(f"{self.store.uri(self.key(f'plan-{r}'))}: round {r} was never planned; rerun the pipeline")
        predicted = manifest["predicted"]
        return Round(np.array(manifest["candidates"], dtype=np.float64), None if predicted is None else np.array(predicted))

    def losses(self, r: int, k: int) -> np.ndarray:
        """The measured losses of round r's k proxies; a UserError naming the first one missing."""
        out = []
        for i in range(k):
            manifest = self.get(f"proxy-{r}-{i}")
            if manifest is None:
                raise UserError(f"{self.store.uri(self.key(f'proxy-{r}-{i}'))}: proxy {i} of round {r} has no loss; "
                                "rerun the pipeline (finished proxies are not trained again)")
            out.append(manifest["loss"])
        return np.array(out, dtype=np.float64)

    def done(self, before: int, k: int) -> list[Round]:
        """Rounds 1..before-1, each with its measured losses."""
        rounds = []
        for r in range(1, before):
            planned = self.plan(r)
            planned.losses = self.losses(r, k)
            rounds.append(planned)
        return rounds

    def measured(self, weights: np.ndarray, r: int) -> np.ndarray:
        """Round r's losses for the mixtures the search replays, which must be the ones its proxies trained."""
        planned = self.plan(r)
        if not np.array_equal(planned.candidates, weights):
            raise UserError(f"{self.store.uri(self.key(f'plan-{r}'))}: round {r}'s proxies trained other mixtures than "
                            "the search replays (the code or config changed between tasks); rerun the pipeline")
        return self.losses(r, len(weights))

    def discard(self) -> None:
        """Remove the pieces once the artifact is published, from the store and from this pod's staging folders."""
        self.store.delete(self.root)
        shutil.rmtree(self.store.staging_dir(self.root, self.work_dir), ignore_errors=True)


def _open(spec_text: str, step: str, plan_text: str) -> tuple[Executor, PlannedStep, Config, RoundStore]:
    spec = with_cluster_defaults(parse_spec(yaml.safe_load(spec_text)))  # the chart's ConfigMap fills unset endpoints
    executor = Executor(spec, plan_json=plan_text or None)
    planned = executor.plan().get(step)
    if planned is None or planned.kind != "mix":
        raise UserError(f"step {step}: not a mix step of this spec; recompile the pipeline")
    return executor, planned, planned.config, RoundStore(executor.store, planned.key, executor.work_dir)


def _jobs(r: int, config: Config, names: list[str] | None = None, planned: Round | None = None) -> list[dict[str, Any]]:
    """Round r's ParallelFor items. The weights are for people reading the run (rounded); the proxy task trains
    the exact mixture of the round's plan in the store. Without a plan (the step is published), no weights."""
    jobs = [{"round": r, "index": i} for i in range(config.proxies_per_round)]
    if planned is not None:
        for job, w in zip(jobs, planned.candidates):
            job["weights"] = {n: round(float(x), 6) for n, x in zip(names, w)}
    return jobs


def _plan(work: RoundStore, r: int, config: Config) -> list[dict[str, Any]]:
    """Plan round r (or read the plan a killed attempt published) and return its jobs."""
    meta = work.prepared_manifest()
    if work.get(f"plan-{r}") is None:
        planned = plan_round(np.array(meta["prior"]), config, work.done(r, config.proxies_per_round))
        work.put(f"plan-{r}", {"kind": "mix-plan", "round": r, "candidates": planned.candidates.tolist(),
                               "predicted": None if planned.predicted is None else planned.predicted.tolist()})
        log.info("mix.round_planned", round=r, proxies=len(planned.candidates))
    return _jobs(r, config, meta["names"], work.plan(r))


def prepare_task(spec_text: str, step: str, plan_text: str = "") -> list[dict[str, Any]]:
    """Prepare the search's datasets into the store (unless there already) and plan round 1: its jobs."""
    executor, planned, config, work = _open(spec_text, step, plan_text)
    if executor.store.complete(planned.key) is not None:
        log.info("mix.published", step=step, key=planned.key)
        return _jobs(1, config)
    if work.get("prepared") is None:
        inputs = executor.inputs(planned)  # the upstream artifacts, checked and materialised as for any step

        def fill(folder: Path) -> dict[str, Any]:
            prepared = prepare(config, inputs, folder, log.bind(step=step))
            return {"names": prepared.names, "prior": prepared.prior}  # what planning needs, without the streams

        work.put("prepared", {"kind": "mix-prepared"}, fill)
    return _plan(work, 1, config)


def round_task(spec_text: str, step: str, plan_text: str, r: int) -> list[dict[str, Any]]:
    """Plan round r from the losses of the rounds before it (in the store): its jobs."""
    executor, planned, config, work = _open(spec_text, step, plan_text)
    if executor.store.complete(planned.key) is not None:
        return _jobs(r, config)
    return _plan(work, r, config)


def work_task(spec_text: str, step: str, plan_text: str, job: Mapping[str, Any]) -> dict[str, Any]:
    """Train one proxy of a round (unless its loss is in the store already) and record its loss there."""
    r, i = int(job["round"]), int(job["index"])  # kfp.local hands numbers in a dict over as floats
    executor, planned, config, work = _open(spec_text, step, plan_text)
    if not (1 <= r <= config.rounds and 0 <= i < config.proxies_per_round):
        raise UserError(f"step {step}: no proxy {i} in round {r} ({config.rounds} rounds of {config.proxies_per_round}); "
                        "recompile the pipeline")
    if executor.store.complete(planned.key) is not None:
        return {"round": r, "index": i, "loss": None}
    done = work.get(f"proxy-{r}-{i}")
    if done is not None:
        log.info("mix.proxy_reused", round=r, index=i, loss=done["loss"])
        return {"round": r, "index": i, "loss": done["loss"]}
    folder = work.prepared()
    proxy = proxy_jobs(folder, Prepared.load(folder), config, work.plan(r).candidates, r)[i]
    with ProxyPool(1) as pool:  # in this process on one thread, as in the process pool, so the loss is the same number
        loss = pool.run([proxy])[0]
    work.put(f"proxy-{r}-{i}", {"kind": "mix-proxy", "round": r, "index": i, "loss": loss, "seed": proxy.seed,
                                "weights": list(proxy.weights)})
    log.info("mix.proxy_done", round=r, index=i, loss=loss)
    return {"round": r, "index": i, "loss": loss}


def finish_task(step: str, spec_text: str, job_id: str, upstream: Mapping[str, KfpArtifact | None], output: KfpArtifact,
                plan_text: str = "") -> dict[str, Any]:
    """The step itself, through the executor like any step: replay the search on the measured losses, write and
    publish the artifact (`factory.stages.mix.stage.finish`), then drop the pieces."""
    _, _, _, work = _open(spec_text, step, plan_text)

    def run(config: Config, inputs: Mapping[str, Artifact], out: Path, ctx: StepContext) -> dict[str, float]:
        folder = work.prepared()
        return finish(config, inputs, out, ctx, Prepared.load(folder), work.measured)

    manifest = run_component(step, spec_text, job_id, upstream, output, plan_text, run=run)
    work.discard()
    return manifest
