"""RL environments: named things that give prompts and score responses, below the stages that train on them.

    from factory.envs import EnvironmentConfig, open_environment, Mixture
    env = open_environment(EnvironmentConfig(name="arith", procedural="basic_arithmetic"))
    episode = env.reset("train", 0); outcome = env.step(episode, reply)

- `config`: an environment's settings (task source, scorer, tools, limits, weight), the mixture's weight schedule
  and curriculum; light, as loading a spec imports it.
- `environment`: the `Environment` interface (reset/step, NeMo-Gym's shape), the built-in `TaskEnvironment`
  (procedural generators, task files, user JSONL, the rl step's data, IFEval-style instructions; verifiers, judge,
  python tool turns), a user's `module:Class`, and `guarded_step` (faults cost a sample, counted by reason). A
  built-in environment's held-out pool never poses a training prompt (`unseen_heldout`; what it removed is its
  `heldout_split`).
- `opener`: `open_environment`, the environment a config names (built-in, module or HTTP).
- `remote`: an environment behind HTTP (the protocol is in its docstring); `serve`: a reference server
  (`python -m factory.envs.serve --env JSON`).
- `curriculum`: many environments in one run: weights and their schedule, per-environment cursors, the curriculum
  that drops saturated or signal-less environments, the error budget.
- `instructions`: verifiable constraints (length, format, keywords, JSON); `verifiers`: the verifier rewards;
  `genrm`: a generative reward model (`factory.judge`) as a scorer.
"""

from factory.envs.config import CurriculumConfig, EnvironmentConfig, Limits, WeightStage
from factory.lazy import lazy_exports

# the environments import the verifiers, the task sources and httpx; a spec load reads only the configs
__getattr__ = lazy_exports(__name__, {
    **dict.fromkeys(("FAULTS", "Environment", "EnvironmentGone", "Episode", "HeldoutSplit", "Outcome", "Task",
                     "TaskEnvironment", "guarded_step", "prompt_key", "prompts_environment", "unseen_heldout"),
                     "factory.envs.environment"),
    "open_environment": "factory.envs.opener",
    "Mixture": "factory.envs.curriculum", "RemoteEnvironment": "factory.envs.remote",
    "RewardConfig": "factory.envs.verifiers", "VerifierRewards": "factory.envs.verifiers",
    "instruction_reward": "factory.envs.instructions", "instruction_tasks": "factory.envs.instructions",
})

__all__ = ["FAULTS", "CurriculumConfig", "Environment", "EnvironmentConfig", "EnvironmentGone", "Episode",
           "HeldoutSplit", "Limits", "Mixture", "Outcome", "RemoteEnvironment", "RewardConfig", "Task", "TaskEnvironment",
           "VerifierRewards", "WeightStage", "guarded_step", "instruction_reward", "instruction_tasks",
           "open_environment", "prompt_key", "prompts_environment", "unseen_heldout"]
