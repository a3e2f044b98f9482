"""The `factory` command, above everything it drives: the library (`factory`), the KFP components and pipelines.

    main        the typer app and its entry point (`factory ...`, or `python -m cli ...` where no script is installed)
    local_run   `factory run`'s local runner: kfp.local, its output in a log file, one line when a step fails
    curate      `factory curate`: the curate stage alone, on files or folders
    verify      `factory sandbox ...` and `factory verify ...`: check a verdict by hand

No stage imports it, so editing it reruns nothing (`factory.code_version`).
"""

from cli.main import app, main

__all__ = ["app", "main"]
