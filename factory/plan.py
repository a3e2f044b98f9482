"""What `factory plan`, `run` and `submit` print: every step of a spec costed by its registered kind's hook.

    report = plan_spec(load_spec("examples/cluster.yaml"), mfu=0.4, price_per_gpu_hour=2.5)
    print(report.table())

The estimate (`factory.cost.estimate.plan_steps`) sits below the stages, whose cost hooks it calls; the registry
that names those hooks (`factory.kinds`) sits above them. The two meet here, above both.
"""

from __future__ import annotations

from typing import Any

from factory.cost.estimate import PlanReport, plan_steps
from factory.kinds import KINDS

__all__ = ["plan_spec", "summary_line"]


def plan_spec(spec: Any, **kwargs: Any) -> PlanReport:
    """`plan_steps` with the registered stage kinds (keyword arguments: `mfu`, `price_per_gpu_hour`, `context`)."""
    return plan_steps(spec, KINDS, **kwargs)


def summary_line(spec: Any, **kwargs: Any) -> tuple[str, bool]:
    """One line for `factory run` / `submit` to print before launch, and whether every step fits."""
    report = plan_spec(spec, **kwargs)
    return report.summary_line(), report.fits
