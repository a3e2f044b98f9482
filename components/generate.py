"""Component bodies generated from the registry of stage kinds: one function per kind.

A lightweight KFP component is its function's source, which KFP copies into the pipeline and runs by
name (kfp.local's SubprocessRunner runs only such components). So each kind's body is written as source
from its `factory.kinds.KINDS` entry: parameters `spec`, `step` (the step it runs; several steps may
share a kind), `plan` (every step's fingerprint), `job_id`, one `Input[Artifact]` per input of the kind
(optional ones default to None) and the `artifact` output. The source is registered with `linecache`, so
`inspect.getsource` (which KFP calls) reads it like a file's. A new kind needs no code here.

A kind that fans out (`factory.kinds.FanOut`) gets four more bodies, one per part of its fanned-out step
(`factory.fanout`), each calling its part's function in the kind's task module: `prepare` (the kind's inputs in,
round 1's jobs out), `round` (after the collected `results` of the round before: round `number`'s jobs), `work`
(one `job`, a ParallelFor iteration) and `finish` (the step's inputs and the collected `results` in, its
`artifact` out).
"""

import linecache
from functools import cache
from typing import Dict, List, Optional  # noqa: UP035 - the generated signatures KFP reads use these

from kfp.dsl import Artifact, Input, Output

from factory.kinds import KINDS

TEMPLATE = '''def {name}({parameters}){returns}:
    """{doc}"""
    from {module} import {function}

    {call}
'''

PARTS = ("prepare", "round", "work", "finish")


def source(kind: str, part: str | None = None) -> str:
    """The Python source of kind `kind`'s component body, or of part `part` of its fanned-out step."""
    entry = KINDS[kind]
    required = [f"{name}: Input[Artifact]" for name, i in entry.inputs.items() if not i.optional]
    optional = [f"{name}: Optional[Input[Artifact]] = None" for name, i in entry.inputs.items() if i.optional]
    upstream = "{" + ", ".join(f"{name!r}: {name}" for name in entry.inputs) + "}"
    head = ["spec: str", "step: str", "plan: str"]
    if part is None:
        return TEMPLATE.format(
            name=kind, parameters=", ".join([*head, "job_id: str", *required, "artifact: Output[Artifact]", *optional]),
            returns="", doc=f"One step of stage kind {kind} ({entry.run_module}.run), through factory.orchestrate.",
            module="factory.orchestrate", function="run_component",
            call=f"run_component(step, spec, job_id, {upstream}, artifact, plan)")
    parameters, returns, call = {
        "prepare": ([*required, *optional], " -> List[Dict]", "return prepare_task(spec, step, plan)"),
        "round": (["number: int", "results: List[Dict]"], " -> List[Dict]", "return round_task(spec, step, plan, number)"),
        "work": (["job: Dict"], " -> Dict", "return work_task(spec, step, plan, job)"),
        "finish": (["job_id: str", *required, "results: List[Dict]", "artifact: Output[Artifact]", *optional], "",
                   f"finish_task(step, spec, job_id, {upstream}, artifact, plan)"),
    }[part]
    return TEMPLATE.format(
        name=f"{kind}_{part}", parameters=", ".join([*head, *parameters]), returns=returns,
        doc=f"The {part} task of a fanned-out {kind} step ({entry.fanout.tasks}.{part}_task).",
        module=entry.fanout.tasks, function=f"{part}_task", call=call)


@cache
def body(kind: str, part: str | None = None):
    """Kind `kind`'s component body (or part `part` of its fanned-out step) as a function whose source
    `inspect.getsource` can read."""
    text = source(kind, part)
    name = kind if part is None else f"{kind}_{part}"
    filename = f"<factory component {name}>"
    linecache.cache[filename] = (len(text), None, text.splitlines(keepends=True), filename)
    namespace = {"Artifact": Artifact, "Dict": Dict, "Input": Input, "List": List, "Optional": Optional, "Output": Output}
    exec(compile(text, filename, "exec"), namespace)  # noqa: S102 - our own template, filled from the registry
    return namespace[name]
