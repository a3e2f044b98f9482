"""The `factory` command.

    factory run examples/smoke.yaml            # compile and run the whole pipeline through kfp.local
    factory explain examples/smoke.yaml        # per step: reuse or rerun, and why
    factory plan examples/cluster.yaml --mfu 0.4 --price 2.5   # what each step will cost, before it runs
    factory step pretrain examples/smoke.yaml  # one stage in-process (building missing inputs first)
    factory curate page.html crawl.warc.gz --out corpus/   # the curate stage alone
    factory compile examples/smoke.yaml -o pipeline.yaml
    factory submit spec.yaml --host https://kfp.example.org
    factory status RUN_ID --host https://kfp.example.org
    factory eval runs/smoke/store/release/<fingerprint> --task task.yaml   # lm-eval task files on any model folder
    factory lineage runs/smoke/store/release/<fingerprint>

Every mistake a user can make (bad spec field, missing input, unreachable service) prints one message
and exits with code 2. Cluster jobs run it as `python -m cli step ...` (`factory.launch`).

Each command imports the library it drives inside its function: the spec and the executor take about 2 s to
import, kfp and the pipelines 3 s more, and `factory --help`, `status`, `sandbox` and `verify` need none of it.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Optional

import click
import typer

from cli.eval import eval_command
from cli.verify import sandbox_app, verify_app
from factory.errors import UserError
from factory.logs import configure, get_logger

log = get_logger("factory.cli")

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Nemotron-style model factory: raw web pages in, a Hugging Face model out.")

app.add_typer(sandbox_app, name="sandbox")
app.add_typer(verify_app, name="verify")
app.command("eval")(eval_command)


def _fail(message: str, code: int = 2) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def _load(spec_path: Path, resolve: bool = True):
    from factory.endpoints import with_cluster_defaults  # the spec: see the module docstring
    from factory.spec import load_spec

    spec = with_cluster_defaults(load_spec(spec_path))  # endpoints the spec leaves out: the chart's ConfigMap
    return spec.resolved() if resolve else spec


def _writable(spec, store: bool) -> None:
    """Stop in one line, before any work, when a local folder the command writes cannot be written: the work folder
    (and the default tracking database in it), and with `store` a local artifact store."""
    folders = [("work_dir", Path(spec.work_dir))]
    if store and not spec.storage.root.startswith("s3://"):
        folders.append(("storage.root", Path(spec.storage.root.removeprefix("file://"))))
    for field, folder in folders:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise UserError(f"{field}: cannot create the folder {folder} ({e.strerror}); name a folder this user may write") from None
        if not os.access(folder, os.W_OK | os.X_OK):  # also false on a read-only file system, even for root
            raise UserError(f"{field}: {folder} is not writable by this user (or is on a read-only file system)")


@app.command()
def curate(
    inputs: list[str] = typer.Argument(..., metavar="INPUT...", help="HTML, WARC/WET or JSONL files, or folders of them"),
    out: Path = typer.Option(..., "--out", help="Output folder (documents/part-*.jsonl.gz, stats.json, manifest.json)"),
    spec_path: Optional[Path] = typer.Option(None, "--spec", help="Take the curate settings from this spec"),
) -> None:
    """Run the curate stage alone on files or folders (the same code as the pipeline's curate step)."""
    from cli.curate import curate_files  # the curate stage and the executor: see the module docstring

    manifest = curate_files(inputs, out, spec_path)
    metrics = manifest.get("metrics", {})
    typer.echo(json.dumps({"out": str(out), "docs_in": metrics.get("docs_in"), "docs_out": metrics.get("docs_out")}))


@app.command()
def explain(spec_path: Path = typer.Argument(..., metavar="SPEC", help="Spec YAML file")) -> None:
    """Print, per step, whether it will be reused or rerun and why."""
    from factory.steps import Executor  # see the module docstring

    executor = Executor(_load(spec_path))
    for e in executor.explain():
        typer.echo(f"{e.name:<10} {e.action:<6} {e.key}")
        for reason in e.reasons:
            typer.echo(f"{'':<10} - {reason}")


@app.command()
def plan(
    spec_path: Path = typer.Argument(..., metavar="SPEC", help="Spec YAML file"),
    as_json: bool = typer.Option(False, "--json", help="Print the plan as JSON instead of a table"),
    context: Optional[int] = typer.Option(None, "--context", min=1, help="Serving context for evaluate and release (default: each step's own)"),
    mfu: float = typer.Option(0.4, "--mfu", help="Model FLOPs utilisation (of the precision's dense peak) for time and cost"),
    price: float = typer.Option(2.5, "--price", help="Price of one GPU-hour"),
    log: bool = typer.Option(False, "--log", help="Also record the plan as an MLflow run (`factory run` records the "
                                                  "plan it runs under its pipeline run anyway)"),
) -> None:
    """What every step will cost before it runs: FLOPs, memory per GPU, time and money."""
    from factory.cost import log_plan  # see the module docstring
    from factory.plan import plan_spec

    spec = _load(spec_path)
    report = plan_spec(spec, mfu=mfu, price_per_gpu_hour=price, context=context)
    run_id = None
    if log:
        _writable(spec, store=False)  # the plan is logged to the tracking store (by default in the work folder)
        run_id = log_plan(spec, report)
    if as_json:
        typer.echo(json.dumps({**report.to_dict(), "mlflow_run_id": run_id, "tracking_uri": spec.tracking_uri()}, indent=2))
    else:
        typer.echo(report.table())
        if run_id:
            typer.echo(f"mlflow run {run_id} in {spec.tracking_uri()}")


@app.command()
def step(
    name: str = typer.Argument(..., help="Step name (a stage name in a spec that lists `stages`)"),
    spec_path: Path = typer.Argument(..., metavar="SPEC", help="Spec YAML file"),
    parent_run_id: Optional[str] = typer.Option(None, "--parent-run-id", help="Log under this MLflow run (a pipeline's parent run)"),
) -> None:
    """Run one step in-process, building its missing inputs first."""
    from factory.steps import Executor, dist_rank  # see the module docstring

    spec = _load(spec_path)
    if name not in spec.enabled():
        _fail(f"no step {name[:60]!r} in {spec_path}; steps are: {', '.join(spec.enabled())}")
    _writable(spec, store=True)
    executor = Executor(spec)
    if dist_rank()[0] != 0:  # under torchrun, rank 0 alone tracks and publishes
        executor.run([name])
        return
    if parent_run_id:  # launched by a pipeline step, which owns the parent run
        executor.parent_run_id = parent_run_id
        typer.echo(executor.run([name])[name]["uri"])
        return
    executor.parent_run_id = executor.lineage.start_pipeline(f"{spec.name}-{name}", spec.to_yaml())
    status = "FAILED"
    try:
        manifests = executor.run([name])
        status = "FINISHED"
    finally:
        executor.lineage.end_pipeline(executor.parent_run_id, status)
    typer.echo(manifests[name]["uri"])


@app.command("compile")
def compile_(
    spec_path: Path = typer.Argument(..., metavar="SPEC", help="Spec YAML file"),
    output: Path = typer.Option(Path("pipeline.yaml"), "-o", "--output", help="Where to write the KFP IR YAML"),
) -> None:
    """Compile the spec's pipeline to KFP IR YAML (paths stay as written in the spec)."""
    compile_pipeline(_load(spec_path, resolve=False), output)
    typer.echo(str(output))


def compile_pipeline(spec, output: Path) -> Path:
    from kfp import compiler  # kfp and the pipelines: see the module docstring

    from pipelines.end_to_end import build_pipeline

    output.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(build_pipeline(spec), str(output))
    return output


@app.command()
def run(spec_path: Path = typer.Argument(..., metavar="SPEC", help="Spec YAML file"),
        force: bool = typer.Option(False, "--force", help="Run even when `factory plan` says a step does not fit")) -> None:
    """Run the pipeline locally: reuse what is published in-process, the rest through kfp.local (offline).

    The parent MLflow run is opened here and every published step is recorded under it as reused (a nested
    run), in-process. When every step is published, that is all: the KFP runner is not started. Otherwise
    only the steps that must run go through kfp.local's SubprocessRunner, as the sub-DAG of the pipeline
    holding them, each published input handed in by an importer; its verbose output goes to
    `WORK_DIR/logs/run-<time>.log`, and a failing step ends the command with one line naming the step, its
    error and that log (exit 1).
    """
    from cli.local_run import run_lock, run_pipeline_locally  # kfp, the pipelines, the spec: see the module docstring
    from factory.cost.tracking import TAG_PLAN_RUN, log_plan, spec_digest
    from factory.lineage import Lineage
    from factory.manifest import git_commit
    from factory.orchestrate import TAG_JOB, pipeline_run_name
    from factory.steps import Executor

    spec = _load(spec_path)  # also fails on a system program the spec needs and this machine lacks
    _writable(spec, store=True)
    report = _check_plan(spec, spec_path, force)
    lineage = Lineage(spec.tracking_uri(), spec.experiment())  # fails fast if the tracking store is unusable
    if spec.storage.root.startswith("s3://"):
        from factory.store import S3Store  # see the module docstring

        S3Store(spec.storage.root, spec.storage.endpoint_url, spec.storage.region).check()
    start = time.monotonic()
    work = Path(spec.work_dir)
    with run_lock(work):
        lineage.mark_killed()  # runs left RUNNING by an attempt whose process died
        executor = Executor(spec, lineage=lineage)
        plan = executor.plan()  # fails fast on missing inputs, before any subprocess starts
        missing = [name for name, step in plan.items() if executor.store.complete(step.key) is None]
        run_name = pipeline_run_name(spec.name)
        job_id = f"local-{run_name}"
        executor.parent_run_id = lineage.start_pipeline(
            run_name, spec.to_yaml(), tags={TAG_JOB: job_id},
            params={"spec": spec.name, "spec_digest": spec_digest(spec), "git_commit": git_commit(), "steps": len(plan)})
        plan_run = log_plan(spec, report, lineage, parent_run_id=executor.parent_run_id)  # nested under the pipeline run
        lineage.client.set_tag(executor.parent_run_id, TAG_PLAN_RUN, plan_run)
        summary = {"pipeline": spec.name, "mlflow_run_id": executor.parent_run_id, "tracking_uri": spec.tracking_uri(),
                   "reused": len(plan) - len(missing), "ran": len(missing)}
        status = "FAILED"
        try:  # each published step recorded as reused under the parent run, in-process
            published = {name: executor.reuse(step) for name, step in plan.items() if name not in missing}
            status = "FINISHED"
        finally:
            if not missing or status != "FINISHED":  # else the pipeline's exit handler closes the parent run
                lineage.end_pipeline(executor.parent_run_id, status)
        if missing:
            try:
                result = run_pipeline_locally(spec, work, executor.plan_json(), published=published, job_id=job_id)
            except Exception:  # the runner never reached the exit handler that closes the parent run
                lineage.end_pipeline(executor.parent_run_id, "FAILED")
                raise
            if result.failure is not None:
                _fail(result.failure, code=1)
            summary["log"] = str(result.log)
        releases = {name: executor.store.complete(step.key)["uri"] for name, step in plan.items()
                    if step.kind == "release" and executor.store.complete(step.key) is not None}
    seconds = round(time.monotonic() - start, 1)
    lineage.client.log_metric(executor.parent_run_id, "total_seconds", seconds)  # the run may be closed: still logged
    for name, uri in releases.items():
        lineage.client.set_tag(executor.parent_run_id, f"factory.release.{name}", uri)
    url = lineage.run_url(executor.parent_run_id)
    for name, uri in releases.items():  # what a person looks for first; the JSON line after it is for scripts
        typer.echo(f"release {name}: {uri.removeprefix('file://')}")
    typer.echo(f"mlflow: {url}")
    typer.echo(json.dumps({**summary, "seconds": seconds, "releases": releases, "mlflow_url": url}))


@app.command()
def submit(
    spec_path: Path = typer.Argument(..., metavar="SPEC", help="Spec YAML file"),
    host: str = typer.Option(..., "--host", help="KFP API endpoint, e.g. https://kfp.example.org/pipeline"),
    experiment: Optional[str] = typer.Option(None, "--experiment", help="KFP experiment name (default: the spec's name)"),
    run_name: Optional[str] = typer.Option(None, "--run-name", help="KFP run name"),
    namespace: Optional[str] = typer.Option(None, "--namespace", help="Kubeflow profile namespace (multi-user KFP)"),
    existing_token: Optional[str] = typer.Option(None, "--existing-token", envvar="KF_PIPELINES_TOKEN", help="Bearer token, as kfp.Client(existing_token=...)"),
    ssl_ca_cert: Optional[Path] = typer.Option(None, "--ssl-ca-cert", help="CA bundle for the KFP endpoint"),
    force: bool = typer.Option(False, "--force", help="Submit even when `factory plan` says a step does not fit"),
) -> None:
    """Compile the pipeline and submit it to a KFP server with kfp.Client."""
    spec = _load(spec_path, resolve=False)
    _check_plan(spec, spec_path, force)
    with tempfile.TemporaryDirectory() as tmp:
        package = compile_pipeline(spec, Path(tmp) / "pipeline.yaml")
        try:
            client = _kfp_client(host, existing_token, namespace, ssl_ca_cert)
            result = client.create_run_from_pipeline_package(
                str(package), arguments={}, run_name=run_name or spec.name, experiment_name=experiment or spec.name, namespace=namespace,
                service_account=spec.cluster.service_account,
            )
        except Exception as e:  # noqa: BLE001 - kfp raises many types for an unreachable or refusing server
            raise UserError(f"--host: cannot submit to KFP at {host}: {e}") from None
    typer.echo(json.dumps({"run_id": result.run_id, "host": host}))


def _check_plan(spec, spec_path: Path, force: bool):
    """Print `factory plan`'s summary line (to stderr: stdout stays the command's JSON) and stop before
    launch when a step cannot fit its devices, unless `--force`. Returns the plan (a `PlanReport`)."""
    from factory.plan import plan_spec  # see the module docstring

    report = plan_spec(spec)
    typer.echo(report.summary_line(), err=True)
    if not report.fits and not force:
        _fail(f"a step does not fit its devices (see `factory plan {spec_path}`); fix its resources, or pass --force")
    return report


def _kfp_client(host: str, existing_token: str | None, namespace: str | None, ssl_ca_cert: Path | None):
    import kfp  # see the module docstring

    return kfp.Client(host=host, existing_token=existing_token, namespace=namespace, ssl_ca_cert=str(ssl_ca_cert) if ssl_ca_cert else None)


@app.command()
def status(
    run_id: str = typer.Argument(..., help="KFP run id, as `factory submit` printed it"),
    host: str = typer.Option(..., "--host", help="KFP API endpoint"),
    namespace: Optional[str] = typer.Option(None, "--namespace", help="Kubeflow profile namespace (multi-user KFP)"),
    existing_token: Optional[str] = typer.Option(None, "--existing-token", envvar="KF_PIPELINES_TOKEN", help="Bearer token, as kfp.Client(existing_token=...)"),
    ssl_ca_cert: Optional[Path] = typer.Option(None, "--ssl-ca-cert", help="CA bundle for the KFP endpoint"),
) -> None:
    """Print a submitted run's state and the state of each of its steps."""
    try:
        run = _kfp_client(host, existing_token, namespace, ssl_ca_cert).get_run(run_id)
    except Exception as e:  # noqa: BLE001 - kfp raises many types for an unreachable or refusing server
        raise UserError(f"--host: cannot read run {run_id} from KFP at {host}: {e}") from None
    tasks = []
    details = getattr(run, "run_details", None)
    for task in (getattr(details, "task_details", None) or []):
        name = task.display_name or task.task_id
        if name and not name.startswith(("exit-handler", "root")):
            tasks.append({"step": name, "state": str(task.state)})
    typer.echo(json.dumps({"run_id": run.run_id, "name": run.display_name, "state": str(run.state),
                           "created_at": str(run.created_at), "finished_at": str(run.finished_at), "steps": tasks}))


@app.command()
def lineage(
    target: str = typer.Argument(..., metavar="PATH_OR_URI", help="An artifact folder, its manifest.json, or its s3:// URI"),
    spec_path: Optional[Path] = typer.Option(None, "--spec", help="Reach s3:// with this spec's storage settings "
                                             "(default: FACTORY_S3_ENDPOINT_URL and FACTORY_S3_REGION, as the chart's ConfigMap sets)"),
) -> None:
    """Print the chain from an artifact (a release, say) back to its raw inputs."""
    from factory.lineage import chain  # see the module docstring

    manifest = _read_manifest(target, spec_path)
    for depth, entry in enumerate(chain(manifest)):
        run = entry.get("mlflow_run_id") or "-"
        typer.echo(f"{'  ' * min(depth, 1)}{entry['stage']:<9} {entry['kind']:<11} {entry['fingerprint'][:16]}  run={run}  {entry['uri']}")
        for src in entry.get("sources", []):
            typer.echo(f"{'':<4}source {src['uri']}  {src['digest'][:23]}")


def _read_manifest(target: str, spec_path: Path | None = None) -> dict:
    from factory.store import MANIFEST  # see the module docstring

    if target.startswith("s3://"):
        from botocore.exceptions import BotoCoreError, ClientError  # boto3 and the spec only for s3://

        from factory.endpoints import store_for_uri, unreachable
        from factory.errors import ServiceError
        from factory.spec import load_spec

        store, key = store_for_uri(target.rstrip("/"), load_spec(spec_path) if spec_path else None)
        try:
            manifest = store.read_manifest(key)
        except (BotoCoreError, ClientError) as e:
            raise unreachable(target, store.endpoint_url, e) from None
        except ServiceError as e:  # the store names its spec field (storage.root); here the target came from the user
            raise unreachable(target, store.endpoint_url, e.cause or e) from None
        if manifest is None:
            raise UserError(f"{target}: no manifest.json there")
        return manifest
    path = Path(target.removeprefix("file://"))
    path = path / MANIFEST if path.is_dir() else path
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{path}: no manifest here; give an artifact folder from the store") from None
    except json.JSONDecodeError as e:
        raise UserError(f"{path}: not a valid manifest (JSON error at offset {e.pos})") from None


def _exit_on_sigterm() -> Callable[[], None]:
    """Exit on SIGTERM as a signalled process would (status 143), unwinding the stack on the way; returns the undo.

    Kubernetes stops a pod with SIGTERM, and a step pod's `factory` is PID 1 of its container, which the kernel
    spares every signal it installed no handler for: without this, a deleted or preempted step pod trains on for
    the whole grace period (30 s by default) and can publish after its replacement has started (which then waits
    on the step's lock). Raising SystemExit releases the step's lock and ends its MLflow run; checkpoints already
    written stay for the next attempt. Commands that launch jobs replace this handler while they wait (a SIGTERM
    then cancels the job first).

    A process forked from this one (a worker pool's, e.g. curate's) inherits the handler; there SIGTERM kills as it
    would without it: a pool terminates its workers with SIGTERM, and a worker raising SystemExit inside the pool's
    locks can hang the pool.
    """
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    installer = os.getpid()

    def handler(signum, frame):
        if os.getpid() != installer:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        log.warning("process.sigterm", action="exiting; finished checkpoints stay for the next attempt")
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, handler)
    return lambda: signal.signal(signal.SIGTERM, previous)


def main() -> None:
    configure()
    restore = _exit_on_sigterm()  # undone on the way out: main() also runs inside other programs (tests)
    try:
        # Outside standalone mode click returns (not raises) the code of a typer.Exit.
        rc = app(standalone_mode=False)
        sys.exit(rc if isinstance(rc, int) else 0)
    except UserError as e:
        typer.echo(f"error: {e}", err=True)
        sys.exit(e.exit_code)
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except Exception as e:  # click's usage errors

        if isinstance(e, click.exceptions.ClickException):
            e.show()
            sys.exit(2)
        raise
    finally:
        restore()

