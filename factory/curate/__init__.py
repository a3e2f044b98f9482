"""Curate stage: raw HTML / WARC pages in, a clean text corpus out (see `factory.curate.pipeline`)."""

from factory.curate.pipeline import KIND, Config, run

__all__ = ["KIND", "Config", "run"]
