"""Nemotron-style model factory: raw web pages in, a Hugging Face model out, as one typed pipeline."""

__version__ = "0.1.0"
