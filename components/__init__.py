"""One lightweight KFP component per stage kind: thin adapters over `factory.orchestrate.run_component`.

Each function in `components.stages` is the body KFP runs inside the step's container (the factory image,
which has the `factory` package installed); `build(kind, base_image, step)` wraps it as a component.

Why these are written out rather than generated from `factory.kinds.KINDS`: a lightweight component is
its function's *source*, which KFP copies into the pipeline and runs by name (kfp.local's
SubprocessRunner runs only lightweight components), so a function made at runtime has no source to copy.
Instead `tests/test_components.py` compares every function's signature with its kind's inputs in the
registry (names, optional or not), so the two cannot drift.
"""

import dataclasses

from kfp import dsl
from kfp.dsl.python_component import PythonComponent

from components import stages

FUNCTIONS = {name: getattr(stages, name) for name in ("quality", "curate", "synth", "tokenize", "pretrain", "evaluate", "release")}


def build(kind: str, base_image: str, step: str | None = None):
    """The KFP component for stage kind `kind` (or 'finish', the exit handler) running in `base_image`.

    With `step`, the component is named for the step, so the compiled pipeline's task is the step's name
    (KFP names a task after its component); its body is still the kind's one function.
    """
    func = stages.finish if kind == "finish" else FUNCTIONS[kind]
    component = dsl.component(func, base_image=base_image)
    if step is None or step == kind:
        return component
    return PythonComponent(dataclasses.replace(component.component_spec, name=step), python_func=func)
