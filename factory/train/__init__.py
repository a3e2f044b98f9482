"""Training, below every stage that trains: the training-stage shell (`shell`), its composed config (`config`), a
short trainer loop (`trainer`), objectives as modules (`objectives`), callbacks for side concerns (`callbacks`,
`checkpoint`), the model converters (`converters`), data parallelism (`parallel`), samplers and the WSD schedule."""

from factory.lazy import lazy_exports

# Every submodule but `config` and `schedule` imports torch. The names load their module on first use, so a stage's
# config, which composes `factory.train.config`, costs no torch import time.
_LAZY = {
    "LossPlotCallback": "callbacks", "MetricsCallback": "callbacks", "full_model_state": "callbacks",
    "read_metrics": "callbacks",
    "CheckpointCallback": "checkpoint", "latest_checkpoint": "checkpoint", "load_checkpoint": "checkpoint",
    "save_checkpoint": "checkpoint",
    "BlendPhase": "config", "Loop": "config", "Precision": "config", "Parallelism": "config", "Sequences": "config",
    "Blend": "config", "TrainConfig": "config", "with_defaults": "config",
    "ParallelPlan": "parallel", "distributed": "parallel", "parallelize": "parallel",
    "BlendedSamples": "sampler", "SeededSampler": "sampler", "ShuffledSamples": "sampler",
    "wsd_lr": "schedule",
    "HFExportCallback": "shell", "TrainingShell": "shell", "final_loss": "shell", "seed_everything": "shell",
    "Callback": "trainer", "NonFiniteLossError": "trainer", "StepMetrics": "trainer", "Trainer": "trainer",
    "TrainState": "trainer",
}

__getattr__ = lazy_exports(__name__, {name: f"factory.train.{module}" for name, module in _LAZY.items()})

__all__ = sorted(_LAZY)
