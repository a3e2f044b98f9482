"""Quality tiers: the curate stage's quality ensemble puts every document in one of `N_TIERS` tiers
(`metadata.quality_tier`, 0 worst .. 4 best, after Nemotron-CC), and later stages (synth) route by it."""

N_TIERS = 5
TIER_NAMES = ("low", "medium-low", "medium", "medium-high", "high")
TIERS = range(N_TIERS)  # every valid `quality_tier`

__all__ = ["N_TIERS", "TIERS", "TIER_NAMES"]
