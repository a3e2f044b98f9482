"""rl's verifiable rewards: declared below the stages in `factory.envs.verifiers` (the built-in environments score
with them); named here too, where rl's readers and benches have always imported them."""

from factory.envs.verifiers import RewardConfig, VerifierRewards, code_of

__all__ = ["RewardConfig", "VerifierRewards", "code_of"]
