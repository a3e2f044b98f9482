"""`factory eval MODEL_DIR --task FILE ... [--tokens DIR] [--config FILE] [--out DIR]`: the evaluate stage on any
model folder, without a spec.

    factory eval runs/smoke/store/release/<fingerprint> --task tasks/heldout.yaml --out eval-smoke
    factory eval ckpt/model --task mc.jsonl --tokens runs/smoke/store/tokenize/<fingerprint>

MODEL_DIR is a release, a checkpoint (the artifact folder or its `model/`), or an imported model: any folder
`AutoModelForCausalLM` loads. `--task` takes lm-evaluation-harness task files (`.yaml`: scored with their own prompt,
as lm-eval scores them) and the factory's task files (`.jsonl`: undeclared {context, target} cloze sets, declared
multiple_choice files, and math, code, short-answer and tool-call benchmarks). `--config` is a YAML mapping of the
evaluate stage's settings, as a spec's `stages.evaluate` holds them (seq_len, batch_size, prompts, tasks,
throughput_contexts, gates, ...); `--task` files join its lists, and the built-in sets are scored only when it names
them.

Held-out perplexity needs held-out text, which a model folder does not carry: it is measured only with `--tokens`,
a tokens artifact (tokenize's output: `valid.bin`/`valid.idx` and the tokenizer the model was trained with), whose
tokenizer is then the one evaluated with; without it the model folder's own tokenizer is used and eval.json has no
held-out figures.

The output is the evaluate stage's (eval.json, eval_table.md, samples.jsonl, lm_eval_items.jsonl, benchmarks.jsonl,
throughput.png when asked) plus a manifest.json (fingerprint over the config, the model's and the tokens'
identities, the task files and docs, the code and library versions). `--out` (default `./eval-<MODEL_DIR name>`)
must be absent, empty or a previous `factory eval` output, which is replaced; the output is built beside it and
renamed into place, so an interrupted run leaves nothing half-written. Nothing is logged to MLflow (there is no spec
to name a tracking store).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import typer
import yaml

from factory.errors import InputError, UserError

STEP = "eval"  # the manifest's step name: what a later `factory eval` into the same folder recognises


def eval_command(
    model_dir: Path = typer.Argument(..., metavar="MODEL_DIR",
                                     help="A model folder: a release, a checkpoint (or its model/), an imported model"),
    tasks: Optional[list[Path]] = typer.Option(
        None, "--task", help="An lm-eval task file (.yaml) or a factory task file (.jsonl); repeat for several"),
    tokens: Optional[Path] = typer.Option(
        None, "--tokens", help="A tokens artifact (tokenize's output): held-out perplexity on its valid split, with its "
        "tokenizer. Without it no perplexity is reported: a model folder holds no held-out text"),
    config_path: Optional[Path] = typer.Option(
        None, "--config", help="YAML of evaluate settings, as a spec's stages.evaluate (seq_len, batch_size, ...)"),
    out: Optional[Path] = typer.Option(None, "--out", help="Output folder (default ./eval-<MODEL_DIR name>)"),
) -> None:
    """Evaluate any model folder on task files, without a spec: the evaluate stage's eval.json, table and plots."""
    manifest = evaluate_folder(model_dir, tasks or [], out=out, tokens=tokens, config_path=config_path)
    typer.echo(json.dumps({"out": manifest["uri"], "fingerprint": manifest["fingerprint"], "metrics": manifest["metrics"]}))


def evaluate_folder(model_dir: Path, tasks: list[Path], out: Path | None = None, tokens: Path | None = None,
                    config_path: Path | None = None) -> dict[str, Any]:
    """Evaluate the model in `model_dir` on `tasks` into `out`; returns the manifest written to `out/manifest.json`."""
    # `factory` imports this module for every command: the evaluate stage, the executor's fingerprints and torch load
    # only for this one
    from cli.standalone import check_out, run_into

    model_dir = Path(model_dir).expanduser().resolve()
    config = _config(tasks, tokens, config_path)
    out = Path(out or Path.cwd() / f"eval-{_model_name(model_dir)}").expanduser().resolve()
    replace = check_out(out, step=STEP, kind="evaluation", command="factory eval")

    def inputs(scratch: Path) -> dict[str, Any]:
        found = {"model": _model_input(model_dir, scratch)}
        if tokens is not None:
            found["tokens"] = _tokens_input(Path(tokens).expanduser().resolve())
        return found

    return run_into(out, replace, step=STEP, kind_name="evaluate", config=config, inputs=inputs)


def _config(tasks: list[Path], tokens: Path | None, config_path: Path | None):
    """The evaluate config: `--config`'s settings (none: the stage's defaults but no built-in sets), the task files
    added to the fields that score them, perplexity on exactly when there are tokens to measure it on."""
    from pydantic import ValidationError  # see evaluate_folder

    from factory.jsonl import validation_reason
    from factory.kinds import KINDS

    raw: dict[str, Any] = {}
    if config_path is not None:
        try:
            loaded = yaml.safe_load(Path(config_path).read_text())
        except FileNotFoundError:
            raise InputError(f"--config {config_path}: no such file") from None
        except (OSError, yaml.YAMLError) as e:
            raise InputError(f"--config {config_path}: not readable as YAML ({e})") from None
        if not isinstance(loaded, dict):
            raise InputError(f"--config {config_path}: a mapping of evaluate settings (as a spec's stages.evaluate)")
        raw = dict(loaded)
    raw.setdefault("tasks", [])
    raw.setdefault("perplexity", tokens is not None)
    if raw["perplexity"] is True and tokens is None:
        raise UserError(f"--config {config_path}: perplexity needs held-out text: give --tokens DIR (a tokens artifact)")
    for task in tasks:
        field, value = _route(Path(task).expanduser().resolve())
        raw[field] = [*raw.get(field, []), value]
    if not any(raw.get(k) for k in ("tasks", "task_files", "multiple_choice_files", "lm_eval_tasks", "benchmarks",
                                    "prompts")) and not raw["perplexity"]:
        raise UserError("nothing to evaluate: give --task FILE, --tokens DIR or a --config that names some")
    try:
        return KINDS["evaluate"].config.model_validate(raw)
    except ValidationError as e:
        raise UserError(f"{config_path or '--task'}: {validation_reason(e)}") from None


def _route(path: Path) -> tuple[str, Any]:
    """The evaluate config field that scores task file `path`, and the entry to add there."""
    from factory.jsonl import json_objects  # see evaluate_folder

    if path.suffix in (".yaml", ".yml"):
        return "lm_eval_tasks", str(path)
    if not path.is_file():
        raise InputError(f"--task {path}: no such file")
    head = next((record for _, record in json_objects(path)), None)
    kind = head.get("task_type") if head else None
    if kind is None:
        return "task_files", str(path)  # undeclared: {context, target} cloze items
    if kind == "multiple_choice":
        return "multiple_choice_files", str(path)
    if kind == "cloze":
        raise InputError(f"--task {path}: a declared cloze file; cloze sets are read undeclared (drop its first line)")
    return "benchmarks", {"name": head.get("name") or path.stem, "source": "file", "task": str(path)}


def _model_name(model_dir: Path) -> str:
    return model_dir.parent.name if model_dir.name == "model" else model_dir.name


def _identity(folder: Path) -> str:
    """A folder's identity as a raw input's (its files' listing), for a folder no manifest describes."""
    from factory.sources import input_identity  # see evaluate_folder
    from factory.steps import fingerprint_of

    return fingerprint_of(input_identity(str(folder)))


def _model_input(model_dir: Path, scratch: Path):
    """The model as the stage takes it, an artifact folder holding `model/`: a checkpoint as it is, any other model
    folder linked into `scratch`; its manifest (a release's, a checkpoint's) or else its listing identifies it."""
    from cli.standalone import read_manifest  # see evaluate_folder
    from factory.stage import Artifact

    if (model_dir / "model" / "config.json").is_file():
        folder, model, manifest = model_dir, model_dir / "model", read_manifest(model_dir)
    elif (model_dir / "config.json").is_file():
        model = model_dir
        manifest = read_manifest(model_dir.parent) if model_dir.name == "model" else read_manifest(model_dir)
        folder = scratch / "model-input"
        folder.mkdir()
        (folder / "model").symlink_to(model)
    else:
        raise InputError(f"{model_dir}: no config.json (nor model/config.json); give a model folder: a release, a "
                         "checkpoint or its model/, an imported model")
    return Artifact(folder, {**manifest, "fingerprint": manifest.get("fingerprint") or _identity(model),
                             "uri": model.as_uri(), "kind": manifest.get("kind", "checkpoint"),
                             "stage": manifest.get("stage", "model")})


def _tokens_input(folder: Path):
    from cli.standalone import read_manifest  # see evaluate_folder
    from factory.artifacts import Tokens
    from factory.stage import Artifact

    Tokens(folder, "--tokens").checked()
    manifest = read_manifest(folder)
    return Artifact(folder, {**manifest, "fingerprint": manifest.get("fingerprint") or _identity(folder),
                             "uri": folder.as_uri(), "kind": "tokens", "stage": manifest.get("stage", "tokens")})
