"""Component bodies generated from the registry of stage kinds: one function per kind.

A lightweight KFP component is its function's source, which KFP copies into the pipeline and runs by
name (kfp.local's SubprocessRunner runs only such components). So each kind's body is written as source
from its `factory.kinds.KINDS` entry: parameters `spec`, `step` (the step it runs; several steps may
share a kind), `plan` (every step's fingerprint), `job_id`, one `Input[Artifact]` per input of the kind
(optional ones default to None) and the `artifact` output. The source is registered with `linecache`, so
`inspect.getsource` (which KFP calls) reads it like a file's. A new kind needs no code here.
"""

import linecache
from functools import cache
from typing import Optional

from kfp.dsl import Artifact, Input, Output

from factory.kinds import KINDS

TEMPLATE = '''def {kind}(spec: str, step: str, plan: str, job_id: str, {required}artifact: Output[Artifact]{optional}):
    """{doc}"""
    from factory.orchestrate import run_component

    run_component(step, spec, job_id, {{{upstream}}}, artifact, plan)
'''


def source(kind: str) -> str:
    """The Python source of kind `kind`'s component body."""
    entry = KINDS[kind]
    required = "".join(f"{name}: Input[Artifact], " for name, i in entry.inputs.items() if not i.optional)
    optional = "".join(f", {name}: Optional[Input[Artifact]] = None" for name, i in entry.inputs.items() if i.optional)
    doc = f"One step of stage kind {kind} ({entry.run_module}.run), through factory.orchestrate."
    upstream = ", ".join(f"{name!r}: {name}" for name in entry.inputs)
    return TEMPLATE.format(kind=kind, required=required, optional=optional, doc=doc, upstream=upstream)


@cache
def body(kind: str):
    """Kind `kind`'s component body as a function whose source `inspect.getsource` can read."""
    text = source(kind)
    filename = f"<factory component {kind}>"
    linecache.cache[filename] = (len(text), None, text.splitlines(keepends=True), filename)
    namespace = {"Artifact": Artifact, "Input": Input, "Output": Output, "Optional": Optional}
    exec(compile(text, filename, "exec"), namespace)  # noqa: S102 - our own template, filled from the registry
    return namespace[kind]
