"""The offline teacher: a procedural solver that writes honest step-by-step traces for procedural tasks.

    trace = solve("basic_arithmetic", {"expression": "4 - 1 - 7"})
    trace.steps    # ["4 - 1 = 3", "3 - 7 = -4"]
    trace.answer   # "-4"
    solution(trace, "on")    # "<think>\\n4 - 1 = 3\\n3 - 7 = -4\\n</think>\\n\\nThe answer is \\\\boxed{-4}."

It reads the structured metadata reasoning-gym keeps with each item (the expression, the numbers, the
animals) and computes the answer the way a person would show it: every intermediate result of an
arithmetic expression in evaluation order, long multiplication by digits, Euclid's divisions for a gcd,
the gcd-based formula for an lcm, legs per animal with a running total, a linear equation collected and
divided. No model is involved, so records it writes are named `procedural-solver`; the verifier still
checks every answer against the generator's.
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import sympy
from reasoning_gym.arithmetic.leg_counting import ANIMALS

from factory.chat.records import Reasoning, assistant_content


@dataclass(frozen=True)
class Trace:
    """The steps of a solution and its final answer."""

    steps: list[str]
    answer: str


def number(value: Fraction | int) -> str:
    value = Fraction(value)
    return str(value.numerator) if value.denominator == 1 else f"{value.numerator}/{value.denominator}"


_OPS: dict[type, tuple[str, Callable[[Fraction, Fraction], Fraction]]] = {
    ast.Add: ("+", operator.add), ast.Sub: ("-", operator.sub), ast.Mult: ("*", operator.mul), ast.Div: ("/", operator.truediv),
}


def arithmetic(meta: dict[str, Any]) -> Trace:
    """Every operation of the expression in evaluation order (left to right within a precedence level)."""
    steps: list[str] = []

    def value(node: ast.AST) -> Fraction:
        if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
            return Fraction(node.value)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
            sign = -1 if isinstance(node.op, ast.USub) else 1
            if isinstance(node.operand, ast.Constant):
                return sign * value(node.operand)  # a negative literal, not a step
            inner = value(node.operand)
            steps.append(f"{'-' if sign < 0 else '+'}({number(inner)}) = {number(sign * inner)}")
            return sign * inner
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            left, right = value(node.left), value(node.right)
            symbol, op = _OPS[type(node.op)]
            result = op(left, right)
            steps.append(f"{number(left)} {symbol} {number(right)} = {number(result)}")
            return result
        raise ValueError(f"unsupported expression part {ast.dump(node)}")

    tree = ast.parse(meta["expression"].replace("×", "*").replace("÷", "/"), mode="eval")
    result = value(tree.body)
    return Trace(steps or [f"{meta['expression']} = {number(result)}"], number(result))


def products(meta: dict[str, Any]) -> Trace:
    """Long multiplication: one partial product per digit of the second factor, then their running sum."""
    tree = ast.parse(meta["expression"], mode="eval").body
    if not (isinstance(tree, ast.BinOp) and isinstance(tree.op, ast.Mult)):
        return arithmetic(meta)
    a, b = (int(ast.literal_eval(n)) for n in (tree.left, tree.right))
    if abs(a) < 10 or abs(b) < 10:
        return arithmetic(meta)
    steps, total = [], 0
    for k, digit in enumerate(reversed(str(abs(b)))):
        part = abs(a) * int(digit) * 10**k
        steps.append(f"{abs(a)} * {int(digit) * 10**k} = {part}")
        if k:
            steps.append(f"{total} + {part} = {total + part}")
        total += part
    if (a < 0) != (b < 0):
        total = -total
        steps.append(f"one factor is negative, so the product is {total}")
    return Trace(steps, str(total))


def _euclid(a: int, b: int, steps: list[str]) -> int:
    a, b = abs(a), abs(b)
    if a < b:
        a, b = b, a
    while b:
        q, r = divmod(a, b)
        steps.append(f"{a} = {q} * {b} + {r}")
        a, b = b, r
    return a


def gcd(meta: dict[str, Any]) -> Trace:
    """Euclid's divisions, pair by pair."""
    numbers = [int(n) for n in meta["numbers"]]
    steps: list[str] = []
    g = numbers[0]
    for n in numbers[1:]:
        new = _euclid(g, n, steps)
        steps.append(f"gcd({g}, {n}) = {new}")
        g = new
    return Trace(steps, str(g))


def lcm(meta: dict[str, Any]) -> Trace:
    """lcm(a, b) = a * b / gcd(a, b), with the gcd by Euclid's divisions, pair by pair."""
    numbers = [int(n) for n in meta["numbers"]]
    steps: list[str] = []
    m = numbers[0]
    for n in numbers[1:]:
        g = _euclid(m, n, steps)
        new = abs(m * n) // g
        steps.append(f"gcd({m}, {n}) = {g}, so lcm({m}, {n}) = {m} * {n} / {g} = {new}")
        m = new
    return Trace(steps, str(m))


def legs(meta: dict[str, Any]) -> Trace:
    """Legs per kind of animal, with a running total."""
    steps, total = [], 0
    for animal, count in meta["animals"].items():
        per = ANIMALS[animal]
        steps.append(f"{count} {animal}: {count} * {per} = {count * per} legs")
        if total:
            steps.append(f"{total} + {count * per} = {total + count * per}")
        total += count * per
    return Trace(steps, str(total))


def linear_equation(meta: dict[str, Any]) -> Trace:
    """Move every term to one side, collect a*x + b = 0, then x = -b / a."""
    var = sympy.Symbol(meta["variable"])
    lhs, rhs = (sympy.sympify(side, locals={meta["variable"]: var}) for side in meta["equation"].split("="))
    collected = sympy.expand(lhs - rhs)
    a, b = collected.coeff(var, 1), collected.subs(var, 0)
    if a == 0 or sympy.expand(collected - a * var - b) != 0:
        raise ValueError(f"not a linear equation in {var}: {meta['equation']}")
    x = -b / a
    steps = [f"Move every term to the left: {lhs} - ({rhs}) = 0",
             f"Collect terms: {collected} = 0",
             f"{var} = {-b} / {a} = {x}"]
    return Trace(steps, str(x))


SOLVERS: dict[str, Callable[[dict[str, Any]], Trace]] = {
    "basic_arithmetic": arithmetic, "chain_sum": arithmetic, "products": products, "gcd": gcd, "lcm": lcm,
    "leg_counting": legs, "simple_equations": linear_equation,
}


def solve(task: str, meta: dict[str, Any]) -> Trace | None:
    """The trace for one item of reasoning-gym generator `task` from its metadata, or None when there is no solver."""
    solver = SOLVERS.get(task)
    return None if solver is None else solver(meta)


def solution(trace: Trace, reasoning: Reasoning) -> str:
    """The assistant turn: with `on`, the steps in a think block before the boxed answer; with `off`, the answer alone."""
    final = f"The answer is \\boxed{{{trace.answer}}}."
    return assistant_content(final, "\n".join(trace.steps) if reasoning == "on" else None)
