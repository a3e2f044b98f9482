"""Command groups of the `factory` CLI that live outside `factory/cli.py` (one typer sub-app per module)."""
