"""The curation library under the quality and curate stages (`factory.stages.quality`, `factory.stages.curate`):
readers for HTML and WARC, text extraction, language id, the Gopher heuristics, exact, fuzzy and semantic dedup,
decontamination, the math-aware chain (`math`) and the quality classifiers (`quality`)."""
