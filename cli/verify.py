"""`factory sandbox ...` and `factory verify ...`: check a verdict by hand.

    factory sandbox run solution.py --timeout 5 --memory 256    # JSON verdict: exit status, output, limit hit
    factory verify math '\\frac{1}{2}' 'so the answer is \\boxed{0.5}'
    factory verify code solution.py tests.py

Each prints one JSON object and exits 0 when the program passed (or the answer is right), 1 when not; a
missing file or a missing sandbox tool exits 2 with the reason. `verify code` runs the tests under the sandbox's
test harness: it passes only when every test statement ran to its end (`tests_passed` of `tests_total`), so a
solution that exits early, with status 0 or not, fails.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from factory.errors import InputError

sandbox_app = typer.Typer(no_args_is_help=True, help="Run a program in the code sandbox.")
verify_app = typer.Typer(no_args_is_help=True, help="Check an answer with the factory's verifiers.")


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: cannot be read ({e})") from None


def _limits(timeout: float, memory: int, isolation: str):
    # `factory` imports this module for every command: the verifiers load only for these commands
    from factory.verify.sandbox import SandboxConfig

    return SandboxConfig(timeout_s=timeout, cpu_s=max(1, int(timeout)), memory_mb=memory, isolation=isolation)


def _print(verdict: dict, passed: bool) -> None:
    typer.echo(json.dumps({"passed": passed, **verdict}))
    raise typer.Exit(0 if passed else 1)


_TIMEOUT = typer.Option(10.0, "--timeout", help="Wall-clock seconds (CPU seconds too)")
_MEMORY = typer.Option(512, "--memory", help="Memory limit in MiB (the sandbox's, and each process's address space)")
_ISOLATION = typer.Option("bwrap", "--isolation", help="bwrap, or none for trusted code only")


@sandbox_app.command("run")
def sandbox_run(
    file: Path = typer.Argument(..., metavar="FILE", help="Python program to run"),
    timeout: float = _TIMEOUT, memory: int = _MEMORY, isolation: str = _ISOLATION,
) -> None:
    """Run FILE in the sandbox and print its verdict (exit status, stdout, stderr, which limit was hit)."""
    from factory.verify.sandbox import run_program  # see _limits

    verdict = run_program(_read(file), _limits(timeout, memory, isolation))
    _print(verdict.model_dump(), verdict.passed)


@verify_app.command("math")
def verify_math(
    gold: str = typer.Argument(..., metavar="GOLD", help="The right answer, e.g. '\\frac{1}{2}'"),
    answer: str = typer.Argument(..., metavar="ANSWER", help="A model's reply; its last \\boxed{} is read first"),
    timeout: float = typer.Option(10.0, "--timeout", help="Seconds before the check is killed and scored wrong"),
) -> None:
    """Check ANSWER against GOLD with math-verify (in a worker process with a hard timeout)."""
    from factory.verify.math_answer import MathVerifier  # see _limits

    with MathVerifier(workers=1, timeout_s=timeout) as verifier:
        verdict = verifier.check_many([(gold, answer)])[0]
    _print(verdict.model_dump(), verdict.correct)


@verify_app.command("code")
def verify_code(
    solution: Path = typer.Argument(..., metavar="SOLUTION", help="Python file with the candidate code"),
    tests: Path = typer.Argument(..., metavar="TESTS", help="Python file with asserts run after it"),
    timeout: float = _TIMEOUT, memory: int = _MEMORY, isolation: str = _ISOLATION,
) -> None:
    """Run SOLUTION then TESTS in the sandbox; passed when every test statement ran to its end within the limits."""
    from factory.verify.sandbox import run_tests  # see _limits

    verdict = run_tests(_read(solution), _read(tests), _limits(timeout, memory, isolation))
    _print(verdict.model_dump(), verdict.passed)
