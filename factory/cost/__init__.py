"""What a spec will cost before it runs: parameters, FLOPs, memory (training and serving), time and money."""

from factory.cost.memory import ServingMemory, serving_memory
from factory.cost.params import ParamCounts, parameter_counts

__all__ = ["ParamCounts", "ServingMemory", "parameter_counts", "serving_memory"]
