"""Quality gates: a spec demands metrics, and a failing gate fails the step before anything is published.

    gates = [parse_gate("valid_perplexity <= 200"), parse_gate("humaneval_pass@1 >= 0.0")]
    check_gates(gates, metrics)          # raises GateFailed("gate 'valid_perplexity <= 200' failed: 431.2 > 200")

A gate is `METRIC OP BOUND` with OP one of <=, <, >=, >, ==. A gate relative to another step's metric
(`valid_perplexity <= 1.03 * eval_bf16.valid_perplexity`) multiplies that step's metric by the factor; the
other step is an evaluate step wired to this one's `baseline` input, whose `eval.json` gives its metrics:

    check_gates(gates, metrics, other_steps={"eval_bf16": {"valid_perplexity": 101.2}})
"""

from __future__ import annotations

import operator
import re
from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field

from factory.errors import SpecError, UserError

_OPS = {"<=": operator.le, "<": operator.lt, ">=": operator.ge, ">": operator.gt, "==": operator.eq}
_NEGATION = {"<=": ">", "<": ">=", ">=": "<", ">": "<=", "==": "!="}
_GATE = re.compile(r"^\s*([A-Za-z0-9_@.\-/]+)\s*(<=|>=|==|<|>)\s*(.+?)\s*$")
_RELATIVE = re.compile(r"^([0-9.eE+\-]+)\s*\*\s*([A-Za-z0-9_\-]+)\.([A-Za-z0-9_@.\-/]+)$")


class GateFailed(UserError):
    """A metric missed its gate; the message names the gate, the value and the bound."""


class Gate(BaseModel):
    """One demand on a metric of this step, or (through `relative_to`) on its ratio to another step's."""

    model_config = ConfigDict(frozen=True)
    text: str = Field(description="The gate as written in the spec.")
    metric: str = Field(description="Metric name in this step's metrics.")
    op: str = Field(description="Comparison: <=, <, >=, > or ==.")
    bound: float = Field(description="The bound (absolute, or the factor when relative_to is set).")
    relative_to: tuple[str, str] | None = Field(None, description="(step name, metric) the bound multiplies.")


def parse_gate(text: str, field: str = "stages.evaluate.gates") -> Gate:
    """A gate from its text; a malformed one is a spec error naming the field."""
    match = _GATE.match(text)
    if match is None:
        raise SpecError(f"{field}: {text!r} is not a gate; write METRIC OP BOUND, e.g. 'valid_perplexity <= 200'")
    metric, op, bound = match.groups()
    relative = _RELATIVE.match(bound)
    if relative is not None:
        factor, step, other = relative.groups()
        return Gate(text=text, metric=metric, op=op, bound=float(factor), relative_to=(step, other))
    try:
        value = float(bound)
    except ValueError:
        raise SpecError(f"{field}: {text!r}: the bound {bound!r} is not a number "
                        "(or FACTOR * STEP.METRIC for a gate relative to another step)") from None
    return Gate(text=text, metric=metric, op=op, bound=value)


def check_gates(gates: list[Gate], metrics: Mapping[str, float],
                other_steps: Mapping[str, Mapping[str, float]] | None = None) -> None:
    """Raise `GateFailed` for the first gate `metrics` miss (or a gate's metric that is absent)."""
    for gate in gates:
        if gate.metric not in metrics:
            raise GateFailed(f"gate {gate.text!r}: this step has no metric {gate.metric!r}; "
                             f"it has {sorted(metrics)}")
        bound = gate.bound
        if gate.relative_to is not None:
            step, other = gate.relative_to
            if other_steps is None or step not in other_steps or other not in other_steps[step]:
                raise GateFailed(f"gate {gate.text!r}: the metrics of step {step!r} are not available to this step")
            bound = gate.bound * other_steps[step][other]
        value = metrics[gate.metric]
        if not _OPS[gate.op](value, bound):
            raise GateFailed(f"gate {gate.text!r} failed: {gate.metric} = {value:.6g} {_NEGATION[gate.op]} {bound:.6g}")
