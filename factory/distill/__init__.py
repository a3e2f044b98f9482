"""The distill stage: logit distillation of a (pruned) student from its unpruned teacher (Minitron)."""

from factory.distill.stage import KIND, Config, run

__all__ = ["KIND", "Config", "run"]
