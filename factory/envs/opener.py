"""Which environment a config opens: a built-in `TaskEnvironment`, a user's `module:Class`, or an HTTP environment.

Above both `environment` (the interface and the built-ins) and `remote` (which implements that interface over HTTP),
so neither imports the other's way back.

    env = open_environment(EnvironmentConfig(name="arith", procedural="basic_arithmetic"))
"""

from __future__ import annotations

import importlib
from typing import Any

from factory.envs.config import EnvironmentConfig
from factory.envs.environment import Environment, TaskEnvironment
from factory.errors import SpecError


def _load_class(path: str) -> type:
    module, _, name = path.partition(":")
    try:
        cls = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as e:
        raise SpecError(f"environment module {path!r} cannot be loaded ({type(e).__name__}: {e}); give "
                        "'package.module:Class' of an importable subclass of factory.envs.Environment") from None
    if not (isinstance(cls, type) and issubclass(cls, Environment)):
        raise SpecError(f"environment module {path!r} is not a subclass of factory.envs.Environment")
    return cls


def open_environment(config: EnvironmentConfig, **context: Any) -> Environment:
    """The environment `config` names. `context`: what built-in ones need (`rewards`: RewardConfig, `data`: the
    step's conversations, `verifiers`: a shared VerifierRewards), passed to a user's class too."""
    if config.url is not None:
        from factory.envs.remote import RemoteEnvironment  # httpx, imported only for an HTTP environment
        return RemoteEnvironment(config, **context)
    if config.module is not None:
        return _load_class(config.module)(config, **context)
    return TaskEnvironment(config, **context)
