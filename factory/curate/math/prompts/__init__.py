"""Prompt templates of the math chain's LLM cleanup (`factory.curate.math.cleanup`): text files with a `{document}` slot."""
