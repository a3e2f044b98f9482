"""Training: a short trainer loop, objectives as modules, callbacks for side concerns, and the pretrain stage."""

from factory.lazy import lazy_exports

# Every submodule but `config` and `schedule` imports torch. The names load their module on first use, so
# `import factory.train.pretrain` (which `load_spec` does, for its Config) costs no torch import time.
_LAZY = {
    "HFExportCallback": "callbacks", "LossPlotCallback": "callbacks", "MetricsCallback": "callbacks",
    "full_model_state": "callbacks", "read_metrics": "callbacks",
    "CheckpointCallback": "checkpoint", "latest_checkpoint": "checkpoint", "load_checkpoint": "checkpoint",
    "save_checkpoint": "checkpoint",
    "BlendPhase": "config", "TrainConfig": "config",
    "CausalLMObjective": "objective", "LossOutput": "objective",
    "ParallelPlan": "parallel", "distributed": "parallel", "parallelize": "parallel",
    "BlendedSamples": "sampler", "SeededSampler": "sampler", "ShuffledSamples": "sampler",
    "wsd_lr": "schedule",
    "Callback": "trainer", "NonFiniteLossError": "trainer", "StepMetrics": "trainer", "Trainer": "trainer",
    "TrainState": "trainer",
}

__getattr__ = lazy_exports(__name__, {name: f"factory.train.{module}" for name, module in _LAZY.items()})

__all__ = sorted(_LAZY)
