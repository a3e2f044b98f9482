"""Training: a short trainer loop, objectives as modules, callbacks for side concerns, and the pretrain stage."""

from factory.train.callbacks import LossPlotCallback, MetricsCallback, read_metrics
from factory.train.checkpoint import CheckpointCallback, latest_checkpoint, load_checkpoint, save_checkpoint
from factory.train.config import BlendPhase, TrainConfig
from factory.train.objective import CausalLMObjective, LossOutput
from factory.train.parallel import ParallelPlan, distributed, parallelize
from factory.train.sampler import BlendedSamples, SeededSampler, ShuffledSamples
from factory.train.schedule import wsd_lr
from factory.train.trainer import Callback, NonFiniteLossError, StepMetrics, Trainer, TrainState

__all__ = [
    "BlendPhase", "BlendedSamples", "Callback", "CausalLMObjective", "ParallelPlan", "ShuffledSamples", "distributed", "parallelize", "CheckpointCallback", "LossOutput", "LossPlotCallback", "MetricsCallback",
    "NonFiniteLossError", "SeededSampler", "StepMetrics", "TrainConfig", "TrainState", "Trainer",
    "latest_checkpoint", "load_checkpoint", "read_metrics", "save_checkpoint", "wsd_lr",
]
