"""KFP components: one per stage kind (generated from `factory.kinds.KINDS`), the parts of a fanned-out step, and
the exit handler."""

import dataclasses

from kfp import dsl
from kfp.dsl.python_component import PythonComponent

from components.finish import finish
from components.generate import body


def build(kind: str, base_image: str, step: str | None = None, part: str | None = None):
    """The KFP component for stage kind `kind` (or 'finish', the exit handler) running in `base_image`; with `part`,
    that part of a fanned-out step of the kind (`components.generate.source`).

    With `step`, the component is named `step`, so the compiled pipeline's task has that name (KFP names a task
    after its component); its body is still the kind's one function.
    """
    func = finish if kind == "finish" else body(kind, part)
    component = dsl.component(func, base_image=base_image)
    if step is None or (step == kind and part is None):
        return component
    return PythonComponent(dataclasses.replace(component.component_spec, name=step), python_func=func)
