"""The post-training data stage: verifiable prompts, teacher solutions in both reasoning modes, only verified kept.

Prompts come from reasoning-gym generators (training and held-out seeds and parameters apart), the built-in
task files (CrossThink's multiple-choice and open-ended forms, tool calls) and your JSONL files. The teacher
is the procedural solver (honest step-by-step traces, named `procedural-solver`), a local model, or an
OpenAI-compatible server, with tool-integrated reasoning on math. Rejection sampling keeps what the
verifiers accept and counts every drop by reason.

Optional input "teacher" (a checkpoint): the model a `transformers` teacher loads when it names no model_dir.
Output (a conversations artifact, `factory.posttrain.records`):
    train.jsonl     verified conversations, system `detailed thinking on|off`, user, assistant
    prompts.jsonl   every training prompt with its reference (RL, preference pairs)
    heldout.jsonl   held-out prompts, never trained on (accuracy checks)
    stats.json      prompts, generated, kept, dropped per reason, per set, teacher

Run alone (outside the pipeline):

    from factory.stage import StepContext
    import factory.posttrain.data as ptdata
    ptdata.run(ptdata.tiny(), {}, out_dir, StepContext("posttrain_data"))
"""

from factory.posttrain.data.config import Config, ProceduralSet, TaskSet, TeacherSettings, ToolIntegratedReasoning, tiny
from factory.posttrain.data.stage import KIND, run

__all__ = ["KIND", "Config", "ProceduralSet", "TaskSet", "TeacherSettings", "ToolIntegratedReasoning", "run", "tiny"]
