"""Post-training: chat format, post-training data, SFT, RL and preference stages."""
