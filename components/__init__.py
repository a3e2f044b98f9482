"""One lightweight KFP component per stage kind, generated from the registry (`factory.kinds.KINDS`):
a thin adapter over `factory.orchestrate.run_component`; the logic lives in `factory`."""

from components.build import build

__all__ = ["build"]
