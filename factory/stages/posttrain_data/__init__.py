"""The post-training data stage: verifiable prompts, teacher solutions in both reasoning modes, only verified kept.

Prompts come from reasoning-gym generators (training and held-out seeds and parameters apart), the built-in
task files (CrossThink's multiple-choice and open-ended forms, tool calls) and your JSONL files. The teacher
is the procedural solver (honest step-by-step traces, named `procedural-solver`), a local model, or an
OpenAI-compatible server, with tool-integrated reasoning on math. Rejection sampling keeps what the
verifiers accept and counts every drop by reason.

With `budget_control` (Nemotron Nano 2's budget-control training), beside the full traces, a share of the verified
mode-on solutions is also written cut at a sampled thinking budget, closed as the generator closes a budgeted reply,
then answered (`budget_control.py`).

Optional input "teacher" (a checkpoint): the model a `transformers` teacher loads when it names no model_dir.
Optional input "model" (a checkpoint; required by `budget_control`): the model the data trains, whose tokenizer counts
the thinking budgets.
Output (a conversations artifact, `factory.chat.records`):
    train.jsonl     verified conversations, system `detailed thinking on|off`, user, assistant (and the cut copies,
                    `meta.thinking_budget` set)
    prompts.jsonl   every training prompt with its reference (RL, preference pairs)
    heldout.jsonl   held-out prompts, never trained on (accuracy checks)
    stats.json      prompts, generated, kept, dropped per reason, per set, teacher, budget-control copies

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
