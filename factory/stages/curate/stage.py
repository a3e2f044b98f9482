"""The curate stage: raw web pages in, clean deduplicated, quality-tiered English text out (Nemotron-CC style).

Per-document steps run as one datatrove pipeline (local processes by default, Ray with `executor: ray`):

    read (HTML, WARC, WET, JSONL) -> extract main text (resiliparse_rules | trafilatura | resiliparse | justext; math-aware path
    for pages with equations) -> language id (py3langid) -> Gopher repetition -> Gopher quality
    -> [C4 quality] -> [FineWeb quality]

Pages the math path extracted leave right after extraction for the math chain (`factory.curate.math.chain`:
language id and Gopher rules on their prose with LaTeX and code masked, math thresholds), then rejoin the
prose pages for the corpus-level steps, [LLM cleanup] first; with quality scoring on, the quality artifact's
math classifier scores them instead of the prose ensemble (`math_classifier`). `stats.json` "paths" counts
math and prose pages in, kept and removed per step.

Input files are dealt to `workers` tasks round-robin; the tasks' outputs are then put back in input order and
the corpus-level steps run in one process, so the result does not depend on `workers`:

    exact dedup -> fuzzy dedup (MinHash LSH) -> [semantic dedup (SemDeDup)] -> decontamination (13-grams)
    -> [quality ensemble: 20 buckets, 5 tiers] -> documents/part-NNNNN.jsonl.gz

Every removal is counted per step and reason in `stats.json`; every skipped input unit per reason. A record
that breaks a parser or a step (any exception) is skipped and counted under `error_<ExceptionType>`, never
stops the run; the stage fails only when the damaged records pass `max_error_fraction` of the input, with one
line that gives the count, the top reasons and a sample file and offset (`factory.documents.check_error_budget`).

Output layout (the contract with `factory.stages.tokenize`):

    documents/part-00000.jsonl.gz   one {"id", "text", "metadata": {source, url, language, language_score,
                                    extraction, [quality_score, quality_bucket, quality_tier, quality_<clf>]}}
    stats.json                      docs_in, docs_out, removed/<step>, reasons, skipped/<reason>, damaged (count,
                                    reasons, samples: file and offset), lost_bytes, tiers, sizes (words, chars)
    tiers.png                       documents per quality tier (when the quality step runs)

The quality ensemble is not trained here: it is the `quality` stage's artifact (`factory.stages.quality.stage`),
given as the optional input "quality", or a folder named by `quality_model`.
"""

from __future__ import annotations

import gzip
import json
import shutil
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

from datatrove.data import Document
from datatrove.executor import LocalPipelineExecutor, RayPipelineExecutor
from datatrove.utils.stats import PipelineStats
from matplotlib.figure import Figure
from threadpoolctl import threadpool_limits

from factory.curate.decontaminate import NgramIndex, eval_items
from factory.curate.dedup import fuzzy_dedup, semantic_dedup
from factory.curate.filters import (
    C4QualityFilter,
    ExactDedupFilter,
    Extract,
    FineWebQualityFilter,
    GopherQualityFilter,
    GopherRepetitionFilter,
    LanguageIdFilter,
)
from factory.curate.math.chain import MathChain
from factory.curate.math.classifier import MathClassifier, score_math_documents
from factory.curate.math.cleanup import cleanup_math_documents, load_prompt
from factory.curate.math.paths import PathTally, is_math
from factory.curate.quality.classifiers import Inputs
from factory.curate.quality.ensemble import N_TIERS, TIER_NAMES, QualityEnsemble
from factory.curate.readers import LOST_BYTES, SKIP_REASONS, WebSourceReader, is_damage, list_sources
from factory.curate.words import clear_word_caches
from factory.documents import check_error_budget, write_parts
from factory.errors import InputError
from factory.jsonl import read_objects
from factory.sources import local_sources
from factory.stage import Artifact, StepContext
from factory.stages.curate.config import MIN_CALIBRATION_DOCS, Config
from factory.tasks.builtin import builtin_eval_items

# Step names as they appear in stats.json and metrics (`removed.<name>`), in pipeline order.
FILTERS = ("extraction", "math_filters", "language", "gopher_repetition", "gopher_quality", "c4_quality", "fineweb_quality",
           "exact_dedup", "fuzzy_dedup", "semantic_dedup", "decontamination", "math_classifier", "quality")


class TaskOutput:
    """Last per-document step: write this task's surviving documents to `<folder>/<rank>.jsonl.gz`.

    A plain callable, not a datatrove writer, because datatrove's JsonlWriter needs orjson and this is
    temporary data the stage reads back right away.
    """

    def __init__(self, folder: Path):
        self.folder = Path(folder)

    def __call__(self, data, rank: int = 0, world_size: int = 1):
        self.folder.mkdir(parents=True, exist_ok=True)
        # level 1: temporary data, read back at once (gzip.open defaults to 9, its slowest)
        with gzip.open(self.folder / f"{rank:05d}.jsonl.gz", "wt", encoding="utf-8", compresslevel=1) as f:
            for doc in data:
                f.write(json.dumps({"id": doc.id, "text": doc.text, "metadata": doc.metadata}) + "\n")
        return iter(())


def pipeline_steps(config: Config, files: list, out_folder: Path | None = None) -> tuple[list, list[str]]:
    """The per-document datatrove steps (reader first, `TaskOutput` last when `out_folder` is given), and the
    step name of each step after the reader."""
    samples = None if out_folder is None else Path(out_folder).parent / "skip-samples"
    steps: list = [WebSourceReader(files, config.max_page_bytes, config.max_header_bytes, config.max_member_bytes, samples,
                                   max_file_bytes=config.max_file_bytes, max_expansion_ratio=config.max_expansion_ratio,
                                   max_records_per_kib=config.max_records_per_kib),
                   Extract(config.extractor, config.extract_timeout_s, config.math, config.extract_memory_mb),
                   LanguageIdFilter(config.languages, config.min_language_score)]
    names = ["extraction", "language"]
    if config.math.enabled and config.math.chain.enabled:  # math pages leave here, before the prose filters
        steps.insert(2, MathChain(config.math.chain, config.languages, config.min_language_score,
                                  None if out_folder is None else Path(out_folder).parent / "filtered-math"))
        names.insert(1, "math_filters")
    if config.gopher_repetition.enabled:
        steps.append(GopherRepetitionFilter(**config.gopher_repetition.thresholds()))
        names.append("gopher_repetition")
    if config.gopher_quality.enabled:
        steps.append(GopherQualityFilter(**config.gopher_quality.thresholds()))
        names.append("gopher_quality")
    if config.c4_quality:
        steps.append(C4QualityFilter(filter_no_terminal_punct=True))
        names.append("c4_quality")
    if config.fineweb_quality:
        steps.append(FineWebQualityFilter())
        names.append("fineweb_quality")
    if out_folder is not None:
        steps.append(TaskOutput(out_folder))
    return steps, names


def _executor(config: Config, steps: list, logs: Path):
    """datatrove's local executor, or its Ray executor when `config.executor == "ray"`."""
    if config.executor == "local":
        # fork: workers inherit the loaded modules, and a caller's unguarded __main__ is not re-imported
        return LocalPipelineExecutor(steps, tasks=config.workers, workers=config.workers, logging_dir=str(logs),
                                     skip_completed=False, start_method="fork")
    try:
        import ray  # optional: installed where `executor: ray` runs (a cluster image, the test extra)
    except ImportError:
        raise InputError("executor: 'ray' needs Ray, which is not installed: pip install 'ray[default]'") from None

    if not ray.is_initialized():
        if config.ray_address:  # join a running cluster (KubeRay head service, `ray start --head`)
            ray.init(address=config.ray_address, log_to_driver=False)
        else:  # a local one for this run; its dashboard needs extra packages and is of no use here
            ray.init(include_dashboard=False, log_to_driver=False)
    # on a cluster the scratch folder (ctx.scratch) must be a filesystem every Ray worker shares
    return RayPipelineExecutor(steps, tasks=config.workers, workers=config.workers, logging_dir=str(logs),
                               skip_completed=False)


def _counts(step_stats) -> dict[str, int]:
    """A step's datatrove counters as plain ints (stats read back from JSON hold plain numbers or dicts)."""
    out = {}
    for k, v in step_stats.stats.items():
        total = v.total if hasattr(v, "total") else v.get("total", 0) if isinstance(v, dict) else v
        out[k] = int(total)
    return out


def _dropped(step_stats, extractor: bool = False) -> tuple[int, dict[str, int]]:
    """(documents a step did not pass on, counts per reason) from one step's datatrove stats."""
    counts = _counts(step_stats)
    removed = counts.get("total", 0) - counts.get("forwarded", 0)
    reasons = {k.removeprefix("dropped_"): v for k, v in counts.items() if k.startswith("dropped_")}
    if extractor:  # datatrove's extractors count failures by name and empty results as plain "dropped"
        reasons |= {k: counts[k] for k in ("timeout", "out_of_memory", "clean_error", "broken_process") if counts.get(k)}
        if counts.get("dropped"):
            reasons["empty"] = counts["dropped"]
    return removed, dict(sorted(reasons.items()))


def _check_damage(config: Config, skipped: dict[str, int], docs_in: int, reasons: dict[str, dict[str, int]],
                  samples: dict[str, dict]) -> tuple[dict[str, int], dict[str, dict]]:
    """(damaged records per reason, the sample of each reader reason); raises the budget's one-line InputError.

    Damaged: units the reader could not parse, and documents a step failed on (an exception, a dead sandbox);
    not the pages declined by policy (empty, binary, not HTML, an error status, over a size cap).
    """
    damaged = {r: n for r, n in skipped.items() if n and is_damage(r)}
    for name, counts in reasons.items():
        for reason, n in counts.items():
            if n and (reason.startswith("error_") or (name == "extraction" and reason in ("clean_error", "broken_process"))):
                damaged[f"{name}.{reason}"] = n
    damage_samples = {r: v for r, v in sorted(samples.items()) if is_damage(r)}
    sample = next((damage_samples[r] for r in sorted(damaged, key=lambda r: -damaged[r]) if r in damage_samples), None)
    check_error_budget("curate", damaged, docs_in, config.max_error_fraction,
                       None if sample is None else f"{sample['file']} offset {sample['offset']}", field="max_error_fraction")
    return damaged, damage_samples


OUTPUT_METADATA = ("source", "url", "language", "language_score", "extraction")


def _records(docs: list) -> Iterator[dict]:
    """The output record of each document: id, text, and the metadata worth keeping."""
    for doc in docs:
        meta = {k: v for k, v in doc.metadata.items() if k in OUTPUT_METADATA or k.startswith("quality_")}
        yield {"id": doc.id, "text": doc.text, "metadata": meta}


def _quality_ensemble(config: Config, inputs: Mapping[str, Artifact], ctx: StepContext) -> tuple[QualityEnsemble, dict]:
    """The ensemble to score with and where it came from: the `quality` input, else the `quality_model` folder."""
    if "quality" in inputs:
        art = inputs["quality"]
        if config.quality_model is not None:
            ctx.log.warning("quality_model_ignored", path=config.quality_model, used=art.uri)
        return QualityEnsemble.load(Path(art.path)), {"source": "input", "uri": art.uri, "fingerprint": art.fingerprint}
    if config.quality_model is not None:
        return QualityEnsemble.load(Path(config.quality_model)), {"source": "given", "path": config.quality_model}
    raise InputError("stages.curate.quality: enabled, but there is no ensemble: add a `quality` stage to the spec "
                     "or set stages.curate.quality_model")


def _score_quality(config: Config, ensemble: QualityEnsemble, source: dict, docs: list, ctx: StepContext) -> dict:
    """Score `docs` in place (quality_* metadata); returns the stats.json record of the ensemble used."""
    source = dict(source)
    # classifier inputs computed once, for recalibration and scoring both (embeddings are the costly part)
    features = Inputs([d.text for d in docs], ensemble.config.embedding.encoder)
    calibrate = config.quality.calibrate_on_corpus and len(docs) >= MIN_CALIBRATION_DOCS
    if calibrate:
        ensemble = ensemble.recalibrated(features)
    source["calibration"] = "corpus" if calibrate else "ensemble"
    if docs:
        ensemble.score(docs, features)
    ctx.log.info("quality_scored", documents=len(docs), **source)
    return source


def plot_tiers(tiers: list[int], path: Path) -> None:
    """Bar chart of documents per quality tier."""
    fig = Figure(figsize=(6, 3.5))  # no pyplot: no global figure state, no display
    ax = fig.subplots()
    ax.bar([f"{t}\n{TIER_NAMES[t]}" for t in range(N_TIERS)], tiers, color="#4c72b0")
    ax.set_ylabel("documents")
    ax.set_title("Curated corpus by quality tier")
    for t, n in enumerate(tiers):
        ax.annotate(str(n), (t, n), ha="center", va="bottom")
    fig.tight_layout()
    fig.savefig(path, dpi=100, metadata={"Software": None})  # no version stamp: same counts, same bytes


def run(config: Config, inputs: Mapping[str, Artifact], output: Path, ctx: StepContext) -> dict[str, float]:
    """Curate `config.sources` into `output/documents/part-*.jsonl.gz` and `output/stats.json`."""
    start = time.perf_counter()
    # raises InputError naming a missing source; s3:// through the spec's storage endpoint, as planning listed it
    files = list_sources(local_sources(config.sources, ctx.scratch, ctx.s3_endpoint_url, ctx.s3_region))
    if config.math.enabled and config.math.renderer == "lynx" and shutil.which("lynx") is None:
        # checked here: inside the extraction sandbox it would only drop every math page as an error
        raise InputError("math.renderer 'lynx' is not installed: apt-get install -y lynx, "
                         "or set math.renderer: builtin, or math.enabled: false")
    # before the per-page work: a missing or broken ensemble fails the step at once
    quality = _quality_ensemble(config, inputs, ctx) if config.quality.enabled else None
    math_chain = config.math.enabled and config.math.chain.enabled
    if quality is not None and math_chain:  # math pages are scored by the artifact's math classifier instead

        quality_folder = Path(inputs["quality"].path) if "quality" in inputs else Path(config.quality_model)
        math_classifier = MathClassifier.load(quality_folder)
    if math_chain and config.math.chain.cleanup.enabled:
        load_prompt(config.math.chain.cleanup)  # a bad prompt file fails the step before any page is read
    ctx.log.info("curate_start", files=len(files), sources=len(config.sources), workers=config.workers,
                 executor=config.executor)
    seconds: dict[str, float] = {}  # CPU-side seconds per step (datatrove's per-document timers, wall time in-process)

    if ctx.scratch is not None:
        Path(ctx.scratch).mkdir(parents=True, exist_ok=True)
    # datatrove's logs and the per-task outputs live in a temporary folder, never in the artifact
    with tempfile.TemporaryDirectory(dir=ctx.scratch, prefix="curate-") as tmp:
        tmp_dir = Path(tmp)
        steps, names = pipeline_steps(config, files, tmp_dir / "filtered")
        _executor(config, steps, tmp_dir / "datatrove-logs").run()
        # both executors merge every task's step stats into one file
        stats_per_step = PipelineStats.from_json(json.loads((tmp_dir / "datatrove-logs" / "stats.json").read_text())).stats
        parts = sorted((tmp_dir / "filtered").glob("*.jsonl.gz")) + sorted((tmp_dir / "filtered-math").glob("*.jsonl.gz"))
        rows = [row for part in parts for row in read_objects(part)]  # the prose filters' pages, then the math chain's
        samples: dict[str, dict] = {}  # skip reason -> first file and offset, over all tasks in input order
        for path in sorted((tmp_dir / "skip-samples").glob("*.json")):
            for reason, sample in json.loads(path.read_text()).items():
                samples.setdefault(reason, sample)

        # Back to input order (tasks each wrote their share), then the corpus-level steps.
        rows.sort(key=lambda row: tuple(row["metadata"]["order"]))
        docs = [Document(text=r["text"], id=r["id"], metadata=r["metadata"]) for r in rows]
        reader = _counts(stats_per_step[0])
        seconds["read"] = stats_per_step[0].time_stats.total
        removed: dict[str, int] = {}
        reasons: dict[str, dict[str, int]] = {}
        for name, step_stats in zip(names, stats_per_step[1:]):
            removed[name], reasons[name] = _dropped(step_stats, extractor=name == "extraction")
            seconds[name] = step_stats.time_stats.total
        skipped = {reason: reader.get(f"skipped_{reason}", 0) for reason in SKIP_REASONS}
        skipped |= {k.removeprefix("skipped_"): v for k, v in reader.items()
                    if k.startswith("skipped_") and k != f"skipped_{LOST_BYTES}"}
        skipped = dict(sorted(skipped.items()))
        read = reader.get("documents", 0)
        docs_in = read + sum(skipped.values())  # every input unit: pages read plus inputs skipped
        _check_damage(config, skipped, docs_in, reasons, samples)  # fail fast, before the corpus-level steps
        extract = _counts(stats_per_step[1])
        extraction_paths = {k.removeprefix("path_"): v for k, v in extract.items() if k.startswith("path_")}
        if extract.get("passthrough"):
            extraction_paths["none"] = extract["passthrough"]

        cleanup: dict[str, int] | None = None
        if math_chain and config.math.chain.cleanup.enabled:  # LLM cleanup of math pages, before dedup
            t = time.perf_counter()
            docs, cleanup = cleanup_math_documents(docs, config.math.chain.cleanup)
            ctx.log.info("math_cleanup", **cleanup)
            seconds["math_cleanup"] = time.perf_counter() - t
        tally = PathTally(docs)  # math and prose pages through the corpus-level steps
        if config.exact_dedup:
            t = time.perf_counter()
            dedup = ExactDedupFilter()
            docs = list(dedup.run(iter(docs)))
            removed["exact_dedup"], reasons["exact_dedup"] = _dropped(dedup.stats)
            tally.step("exact_dedup", docs)
            seconds["exact_dedup"] = time.perf_counter() - t
        if config.fuzzy_dedup.enabled:
            t = time.perf_counter()
            fuzzy = fuzzy_dedup(docs, config.fuzzy_dedup, tmp_dir / "minhash")
            docs = fuzzy.kept
            removed["fuzzy_dedup"], reasons["fuzzy_dedup"] = fuzzy.removed, {"near_duplicate": fuzzy.removed}
            tally.step("fuzzy_dedup", docs)
            seconds["fuzzy_dedup"] = time.perf_counter() - t
        clear_word_caches()  # the Gopher filters' and MinHash's word caches: the next run starts cold
    if config.semantic_dedup.enabled:
        t = time.perf_counter()
        semantic = semantic_dedup(docs, config.semantic_dedup)
        docs = semantic.kept
        removed["semantic_dedup"], reasons["semantic_dedup"] = semantic.removed, {"same_meaning": semantic.removed}
        tally.step("semantic_dedup", docs)
        seconds["semantic_dedup"] = time.perf_counter() - t
    if config.decontamination.enabled:
        t = time.perf_counter()
        dc = config.decontamination
        builtin = builtin_eval_items() if dc.builtin_sets else []
        index = NgramIndex(eval_items(config.decontamination_sets, builtin), dc.n_gram, dc.min_item_words)
        kept, leaks = [], {}
        for doc in docs:
            try:
                leak = index.match(doc.text)
            except Exception as error:  # noqa: BLE001 (one document that breaks the matcher is dropped, counted)
                leak = f"error_{type(error).__name__}"
            if leak is None:
                kept.append(doc)
            else:
                leaks[leak] = leaks.get(leak, 0) + 1
        docs = kept
        removed["decontamination"], reasons["decontamination"] = sum(leaks.values()), dict(sorted(leaks.items()))
        tally.step("decontamination", docs)
        ctx.log.info("decontamination", eval_items=index.items, ignored_short=index.ignored, removed=leaks)
        seconds["decontamination"] = time.perf_counter() - t
    tiers: list[int] | None = None
    quality_model: dict | None = None
    if config.quality.enabled:
        t = time.perf_counter()
        math_docs = [d for d in docs if math_chain and is_math(d)]
        with threadpool_limits(limits=config.quality.threads, user_api="openmp"):
            quality_model = _score_quality(config, *quality, [d for d in docs if not (math_chain and is_math(d))], ctx)
        if math_chain:
            kept_math, n_low = score_math_documents(math_docs, math_classifier, config.math.chain.min_math_score,
                                                    quality[0].config.tier_bounds, str(quality_folder))
            kept_ids = {id(d) for d in kept_math}
            docs = [d for d in docs if not is_math(d) or id(d) in kept_ids]
            removed["math_classifier"], reasons["math_classifier"] = n_low, ({"below_min_math_score": n_low} if n_low else {})
            tally.step("math_classifier", docs)
        below = [d for d in docs if d.metadata["quality_tier"] < config.quality.min_tier]
        if below:
            docs = [d for d in docs if d.metadata["quality_tier"] >= config.quality.min_tier]
        removed["quality"], reasons["quality"] = len(below), ({"below_min_tier": len(below)} if below else {})
        tally.step("quality", docs)
        tiers = [sum(d.metadata["quality_tier"] == t_ for d in docs) for t_ in range(N_TIERS)]
        seconds["quality"] = time.perf_counter() - t

    # before anything is written: past the budget, nothing of this run is published
    damaged, damage_samples = _check_damage(config, skipped, docs_in, reasons, samples)
    write_parts(_records(docs), output / "documents", config.shard_size)
    words = sum(len(d.text.split()) for d in docs)
    chars = sum(len(d.text) for d in docs)
    languages: dict[str, int] = {}
    for d in docs:
        languages[d.metadata["language"]] = languages.get(d.metadata["language"], 0) + 1
    stats = {
        "docs_in": docs_in,
        "docs_read": read,
        "docs_out": len(docs),
        "removed": removed,
        "reasons": reasons,
        "skipped": skipped,
        "damaged": {"count": sum(damaged.values()), "reasons": dict(sorted(damaged.items())), "samples": damage_samples,
                    "max_fraction": config.max_error_fraction},
        "lost_bytes": reader.get(f"skipped_{LOST_BYTES}", 0),
        "extraction_paths": dict(sorted(extraction_paths.items())),
        "languages_out": dict(sorted(languages.items())),
        "words_out": words,
        "chars_out": chars,
        "files_in": len(files),
        "paths": tally.summary(extraction_paths, removed, reasons),
    }
    if cleanup is not None:
        stats["math_cleanup"] = cleanup
    if tiers is not None:
        stats["tiers"] = {str(t): n for t, n in enumerate(tiers)}
        stats["quality_model"] = quality_model
        plot_tiers(tiers, output / "tiers.png")
        ctx.log_artifact(output / "tiers.png")
    (output / "stats.json").write_text(json.dumps(stats, indent=2, sort_keys=True) + "\n", encoding="utf-8")

    metrics: dict[str, float] = {k: float(stats[k]) for k in ("docs_in", "docs_out", "words_out", "chars_out", "lost_bytes")}
    metrics["damaged"] = float(stats["damaged"]["count"])
    metrics |= PathTally.metrics(stats["paths"])
    metrics |= {f"math_cleanup.{k}": float(v) for k, v in (cleanup or {}).items()}
    metrics |= {f"removed.{k}": float(v) for k, v in removed.items()}
    metrics |= {f"skipped.{k}": float(v) for k, v in skipped.items()}
    if tiers is not None:
        metrics |= {f"tier.{t}": float(n) for t, n in enumerate(tiers)}
    seconds["total"] = time.perf_counter() - start
    metrics |= {f"seconds.{k}": round(v, 4) for k, v in seconds.items()}
    ctx.log.info("curate_done", docs_in=stats["docs_in"], docs_out=stats["docs_out"], removed=removed, skipped=skipped)
    return metrics
