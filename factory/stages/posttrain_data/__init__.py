"""The post-training data stage: verifiable prompts, teacher solutions in both reasoning modes, only verified kept.

Prompts come from reasoning-gym generators (training and held-out seeds and parameters apart), the built-in
task files (CrossThink's multiple-choice and open-ended forms, tool calls) and your JSONL files. The teacher
is the procedural solver (honest step-by-step traces, named `procedural-solver`), a local model, or an
OpenAI-compatible server, with tool-integrated reasoning on math. Rejection sampling keeps what the
verifiers accept and counts every drop by reason.

Optional input "teacher" (a checkpoint): the model a `transformers` teacher loads when it names no model_dir.
Output (a conversations artifact, `factory.chat.records`):
    train.jsonl     verified conversations, system `detailed thinking on|off`, user, assistant
    prompts.jsonl   every training prompt with its reference (RL, preference pairs)
    heldout.jsonl   held-out prompts, never trained on (accuracy checks)
    stats.json      prompts, generated, kept, dropped per reason, per set, teacher

Run alone (outside the pipeline):

    from factory.stage import StepContext
    import factory.stages.posttrain_data as ptdata
    ptdata.run(ptdata.tiny(), {}, out_dir, StepContext("posttrain_data"))
"""

from factory.lazy import lazy_exports
from factory.stages.posttrain_data.config import Config

# `run` imports the stage's heavy libraries; loading a spec reads only `Config`.
__getattr__ = lazy_exports(__name__, {"run": "factory.stages.posttrain_data.stage"})

__all__ = ["Config", "run"]
