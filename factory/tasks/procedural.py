"""Seeded procedural math and reasoning tasks from `reasoning-gym`, as math items our verifiers score.

    items = procedural("basic_arithmetic", size=50, seed=0)    # [MathItem(id="basic_arithmetic-0", ...)]

reasoning-gym ships about a hundred offline generators with known answers. Its own scorer gives 0.01 to a
wrong answer, so the items are scored by `factory.verify` (math-verify on the final `\\boxed{}` answer)
instead. A generator name reasoning-gym does not know is an error that lists the known ones.
"""

from __future__ import annotations

from importlib import metadata

from factory.errors import SpecError
from factory.tasks.files import MathItem

# generators whose answers are numbers or fractions, so math-verify's equivalence is the right check
NUMERIC = ("basic_arithmetic", "chain_sum", "gcd", "lcm", "leg_counting", "simple_equations",
           "fraction_simplification", "prime_factorization", "products", "decimal_arithmetic")

INSTRUCTION = "\n\nGive the final answer in \\boxed{}."


def procedural(name: str, size: int, seed: int, params: dict | None = None) -> list[MathItem]:
    """`size` items of reasoning-gym generator `name`, reproducible from `seed`; `params`: the generator's own settings
    (its config's fields, e.g. basic_arithmetic's max_digits)."""
    import reasoning_gym  # about 2 s; loading a spec imports this module (the evaluate and post-training configs)

    try:
        dataset = reasoning_gym.create_dataset(name, size=size, seed=seed, **(params or {}))
    except (KeyError, ValueError, TypeError, AssertionError) as e:
        raise SpecError(f"procedural task {name!r}: {e}; numeric generators: {list(NUMERIC)}") from None
    return [MathItem(id=f"{name}-{seed}-{i}", problem=entry["question"] + INSTRUCTION, answer=str(entry["answer"]))
            for i, entry in enumerate(dataset)]


def version() -> str:
    """The `reasoning-gym` package version (the generators' version in the tracker)."""
    return metadata.version("reasoning_gym")
