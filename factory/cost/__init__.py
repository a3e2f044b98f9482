"""What a spec will cost before it runs: parameters, FLOPs, memory (training and serving), time and money."""

from factory.cost.layout import ParallelLayout, default_layout
from factory.cost.memory import ServingMemory, TrainingMemory, serving_memory, training_memory
from factory.cost.param_count import ParamCounts, parameter_counts
from factory.lazy import lazy_exports

# The spec-level plan and its MLflow run load on first use, so that `factory.spec` (which imports
# ParallelLayout from here) stays light.
_LAZY = {
    "PlanContext": "estimate", "PlanReport": "estimate", "StepCost": "estimate", "plan_steps": "estimate",
    "TokenFlops": "flops", "flops_per_token": "flops",
    "log_plan": "tracking", "plan_run_for": "tracking",
}
__getattr__ = lazy_exports(__name__, {name: f"factory.cost.{module}" for name, module in _LAZY.items()})

__all__ = [
    "ParallelLayout", "ParamCounts", "PlanContext", "PlanReport", "ServingMemory", "StepCost", "TokenFlops",
    "TrainingMemory", "default_layout", "flops_per_token", "log_plan", "parameter_counts", "plan_run_for",
    "plan_steps", "serving_memory", "training_memory",
]
