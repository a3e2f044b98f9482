"""Training engines other than the factory's own trainer (libraries below the stages)."""
