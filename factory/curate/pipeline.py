"""The curate stage: raw HTML / WARC in, clean deduplicated English text out.

One datatrove pipeline, in input order:

    read (HTML files, WARC responses) -> extract main text (trafilatura) -> language id (py3langid)
    -> Gopher repetition -> Gopher quality -> [C4 quality] -> exact dedup -> documents/part-NNNNN.jsonl.gz

The per-document steps run on datatrove's `LocalPipelineExecutor` with `workers` tasks (files are dealt to
tasks round-robin); their outputs are then put back in input order and exact-deduplicated in one process,
so the result does not depend on `workers`. Every removal is counted per filter and reason in `stats.json`.

Output layout (the contract with `factory.tokenize`):

    documents/part-00000.jsonl.gz   one {"id", "text", "metadata": {source, url, language, language_score}}
    stats.json                      docs_in, docs_out, removed/<filter>, reasons, skipped/<reason>, sizes
"""

from __future__ import annotations

import gzip
import io
import json
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Literal

from pydantic import Field

from factory.stage import Artifact, StageConfig, StepContext, no_effect

KIND = "corpus"

# Filter names as they appear in stats.json and metrics (`removed.<name>`), in pipeline order.
FILTERS = ("extraction", "language", "gopher_repetition", "gopher_quality", "c4_quality", "exact_dedup")


class GopherQuality(StageConfig):
    """Gopher quality rules (Rae et al. 2021), as datatrove's `GopherQualityFilter` applies them."""

    enabled: bool = Field(True, description="Apply the Gopher quality rules.")
    min_doc_words: int = Field(50, ge=0, description="Fewest words (non-symbol tokens) a document may have.")
    max_doc_words: int = Field(100_000, ge=1, description="Most words a document may have.")
    min_avg_word_length: float = Field(3, ge=0, description="Smallest mean word length, in characters.")
    max_avg_word_length: float = Field(10, ge=0, description="Largest mean word length, in characters.")
    max_symbol_word_ratio: float = Field(0.1, ge=0, description="Most '#' and '...' symbols per word.")
    max_bullet_lines_ratio: float = Field(0.9, ge=0, le=1, description="Largest share of lines that start with a bullet.")
    max_ellipsis_lines_ratio: float = Field(0.3, ge=0, le=1, description="Largest share of lines that end with an ellipsis.")
    max_non_alpha_words_ratio: float = Field(0.8, ge=0, le=1, description="Smallest share of words with a letter (datatrove's name).")
    min_stop_words: int = Field(2, ge=0, description="Fewest English stop words (the, be, to, of, and, that, have, with).")


class GopherRepetition(StageConfig):
    """Gopher repetition rules: duplicated lines, paragraphs and n-grams, as datatrove's filter applies them."""

    enabled: bool = Field(True, description="Apply the Gopher repetition rules.")
    dup_line_frac: float = Field(0.3, ge=0, le=1, description="Largest share of lines that repeat an earlier line.")
    dup_para_frac: float = Field(0.3, ge=0, le=1, description="Largest share of paragraphs that repeat an earlier one.")
    dup_line_char_frac: float = Field(0.2, ge=0, le=1, description="Largest share of characters in repeated lines.")
    dup_para_char_frac: float = Field(0.2, ge=0, le=1, description="Largest share of characters in repeated paragraphs.")
    top_n_grams: list[tuple[int, float]] = Field(
        [(2, 0.2), (3, 0.18), (4, 0.16)],
        description="(n, max share of characters) covered by the most frequent n-gram.")
    dup_n_grams: list[tuple[int, float]] = Field(
        [(5, 0.15), (6, 0.14), (7, 0.13), (8, 0.12), (9, 0.11), (10, 0.10)],
        description="(n, max share of characters) covered by repeated n-grams.")


class Config(StageConfig):
    """Curate raw web pages into a text corpus: extraction, language id, Gopher heuristics, exact dedup."""

    sources: list[str] = Field(
        ..., min_length=1, json_schema_extra={"external_input": True},
        description="Files or folders of .html/.htm/.warc/.warc.gz pages to read (folders are searched recursively).")
    languages: list[str] = Field(["en"], description="ISO 639-1 codes of the languages to keep (py3langid labels).")
    min_language_score: float = Field(
        0.65, ge=0, le=1, description="Smallest py3langid probability of the detected language for a page to stay.")
    extractor: Literal["trafilatura", "justext"] = Field(
        "trafilatura", description="Main-text extractor that strips navigation, banners and footers.")
    extract_timeout_s: float = Field(
        30.0, gt=0, description="Per-page extraction time limit; a page that takes longer is dropped.")
    gopher_repetition: GopherRepetition = Field(GopherRepetition(), description="Gopher repetition filter settings.")
    gopher_quality: GopherQuality = Field(GopherQuality(), description="Gopher quality filter settings.")
    c4_quality: bool = Field(False, description="Also apply datatrove's C4 quality filter (drops and trims lines).")
    exact_dedup: bool = Field(True, description="Drop pages whose normalised text equals an earlier page's.")
    shard_size: int = Field(10_000, gt=0, description="Documents per output part (documents/part-NNNNN.jsonl.gz).")
    workers: int = no_effect(1, "Parallel datatrove tasks for the per-page steps; the output does not depend on it.")


class TaskOutput:
    """Last per-document step: write this task's surviving documents to `<folder>/<rank>.jsonl.gz`.

    A plain callable, not a datatrove writer, because datatrove's JsonlWriter needs orjson and this is
    temporary data the stage reads back right away.
    """

    def __init__(self, folder: Path):
        self.folder = Path(folder)

    def __call__(self, data, rank: int = 0, world_size: int = 1):
        self.folder.mkdir(parents=True, exist_ok=True)
        with gzip.open(self.folder / f"{rank:05d}.jsonl.gz", "wt", encoding="utf-8") as f:
            for doc in data:
                f.write(json.dumps({"id": doc.id, "text": doc.text, "metadata": doc.metadata}) + "\n")
        return iter(())


def _pipeline_steps(config: Config, files: list, out_folder: Path) -> tuple[list, list[str]]:
    """The per-document datatrove steps, and the filter name of each step after the reader and before the writer."""
    from datatrove.pipeline.extractors import Trafilatura
    from datatrove.pipeline.filters import C4QualityFilter, GopherQualityFilter, GopherRepetitionFilter

    from factory.curate.filters import Justext, LanguageIdFilter
    from factory.curate.readers import WebSourceReader

    if config.extractor == "trafilatura":
        extractor = Trafilatura(favour_precision=True, timeout=config.extract_timeout_s)
    else:
        extractor = Justext(timeout=config.extract_timeout_s)
    steps: list = [WebSourceReader(files), extractor,
                   LanguageIdFilter(config.languages, config.min_language_score)]
    names = ["extraction", "language"]
    rep, qual = config.gopher_repetition, config.gopher_quality
    if rep.enabled:
        steps.append(GopherRepetitionFilter(
            dup_line_frac=rep.dup_line_frac, dup_para_frac=rep.dup_para_frac,
            dup_line_char_frac=rep.dup_line_char_frac, dup_para_char_frac=rep.dup_para_char_frac,
            top_n_grams=tuple(map(tuple, rep.top_n_grams)), dup_n_grams=tuple(map(tuple, rep.dup_n_grams))))
        names.append("gopher_repetition")
    if qual.enabled:
        steps.append(GopherQualityFilter(
            min_doc_words=qual.min_doc_words, max_doc_words=qual.max_doc_words,
            min_avg_word_length=qual.min_avg_word_length, max_avg_word_length=qual.max_avg_word_length,
            max_symbol_word_ratio=qual.max_symbol_word_ratio, max_bullet_lines_ratio=qual.max_bullet_lines_ratio,
            max_ellipsis_lines_ratio=qual.max_ellipsis_lines_ratio,
            max_non_alpha_words_ratio=qual.max_non_alpha_words_ratio, min_stop_words=qual.min_stop_words))
        names.append("gopher_quality")
    if config.c4_quality:
        steps.append(C4QualityFilter(filter_no_terminal_punct=True))
        names.append("c4_quality")
    steps.append(TaskOutput(out_folder))
    return steps, names


def _dropped(step_stats, extractor: bool = False) -> tuple[int, dict[str, int]]:
    """(documents a step did not pass on, counts per reason) from one step's datatrove stats."""
    counts = {k: int(v.total) for k, v in step_stats.stats.items()}
    removed = counts.get("total", 0) - counts.get("forwarded", 0)
    reasons = {k.removeprefix("dropped_"): v for k, v in counts.items() if k.startswith("dropped_")}
    if extractor:  # datatrove's extractors count failures by name and empty results as plain "dropped"
        reasons |= {k: counts[k] for k in ("timeout", "clean_error", "broken_process") if counts.get(k)}
        if counts.get("dropped"):
            reasons["empty"] = counts["dropped"]
    return removed, dict(sorted(reasons.items()))


def _read_jsonl_gz(paths: Iterable[Path]) -> list[dict]:
    rows = []
    for path in paths:
        with gzip.open(path, "rt", encoding="utf-8") as f:
            rows += [json.loads(line) for line in f if line.strip()]
    return rows


def _write_parts(docs: list, folder: Path, shard_size: int) -> int:
    """Write documents as gzipped JSON lines, `shard_size` per part; byte-identical for identical input."""
    folder.mkdir(parents=True, exist_ok=True)
    parts = max(1, -(-len(docs) // shard_size))
    for part in range(parts):
        buf = io.BytesIO()
        # mtime=0 and no file name in the gzip header: the same documents give the same bytes
        with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0) as gz:
            for doc in docs[part * shard_size:(part + 1) * shard_size]:
                meta = {k: doc.metadata.get(k) for k in ("source", "url", "language", "language_score")}
                record = {"id": doc.id, "text": doc.text, "metadata": meta}
                gz.write((json.dumps(record, ensure_ascii=False, sort_keys=True) + "\n").encode("utf-8"))
        (folder / f"part-{part:05d}.jsonl.gz").write_bytes(buf.getvalue())
    return parts


def run(config: Config, inputs: Mapping[str, Artifact], output: Path, ctx: StepContext) -> dict[str, float]:
    """Curate `config.sources` into `output/documents/part-*.jsonl.gz` and `output/stats.json`."""
    from datatrove.data import Document
    from datatrove.executor import LocalPipelineExecutor

    from factory.curate.filters import ExactDedupFilter
    from factory.curate.readers import SKIP_REASONS, list_sources

    files = list_sources(config.sources)  # raises InputError naming a missing source
    ctx.log.info("curate_start", files=len(files), sources=len(config.sources), workers=config.workers)

    if ctx.scratch is not None:
        Path(ctx.scratch).mkdir(parents=True, exist_ok=True)
    # datatrove's logs and the per-task outputs live in a temporary folder, never in the artifact
    with tempfile.TemporaryDirectory(dir=ctx.scratch, prefix="curate-") as tmp:
        tmp_dir = Path(tmp)
        steps, names = _pipeline_steps(config, files, tmp_dir / "filtered")
        executor = LocalPipelineExecutor(
            steps, tasks=config.workers, workers=config.workers, logging_dir=str(tmp_dir / "datatrove-logs"),
            # fork: workers inherit the loaded modules, and a caller's unguarded __main__ is not re-imported
            skip_completed=False, start_method="fork")
        pipeline_stats = executor.run()
        rows = _read_jsonl_gz(sorted((tmp_dir / "filtered").glob("*.jsonl.gz")))

    # Back to input order (tasks each wrote their share), then exact dedup keeps the first copy.
    rows.sort(key=lambda row: tuple(row["metadata"]["order"]))
    docs = [Document(text=r["text"], id=r["id"], metadata=r["metadata"]) for r in rows]
    stats_per_step = pipeline_stats.stats  # one datatrove Stats per step, in pipeline order
    reader = {k: int(v.total) for k, v in stats_per_step[0].stats.items()}
    removed: dict[str, int] = {}
    reasons: dict[str, dict[str, int]] = {}
    for name, step_stats in zip(names, stats_per_step[1:]):
        removed[name], reasons[name] = _dropped(step_stats, extractor=name == "extraction")
    if config.exact_dedup:
        dedup = ExactDedupFilter()
        docs = list(dedup.run(iter(docs)))
        removed["exact_dedup"], reasons["exact_dedup"] = _dropped(dedup.stats)

    _write_parts(docs, output / "documents", config.shard_size)
    skipped = {reason: reader.get(f"skipped_{reason}", 0) for reason in SKIP_REASONS}
    read = reader.get("documents", 0)
    words = sum(len(d.text.split()) for d in docs)
    chars = sum(len(d.text) for d in docs)
    languages: dict[str, int] = {}
    for d in docs:
        languages[d.metadata["language"]] = languages.get(d.metadata["language"], 0) + 1
    stats = {
        "docs_in": read + sum(skipped.values()),  # every input unit: pages read plus inputs skipped
        "docs_read": read,
        "docs_out": len(docs),
        "removed": removed,
        "reasons": reasons,
        "skipped": skipped,
        "languages_out": dict(sorted(languages.items())),
        "words_out": words,
        "chars_out": chars,
        "tokens_out": chars // 4,  # rough: about 4 characters per BPE token on English text
        "files_in": len(files),
    }
    (output / "stats.json").write_text(json.dumps(stats, indent=2, sort_keys=True) + "\n", encoding="utf-8")

    metrics: dict[str, float] = {k: float(stats[k]) for k in ("docs_in", "docs_out", "words_out", "chars_out", "tokens_out")}
    metrics |= {f"removed.{k}": float(v) for k, v in removed.items()}
    metrics |= {f"skipped.{k}": float(v) for k, v in skipped.items()}
    ctx.log_metrics(metrics)
    ctx.log.info("curate_done", docs_in=stats["docs_in"], docs_out=stats["docs_out"], removed=removed, skipped=skipped)
    return metrics
