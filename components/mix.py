"""The mix step's tasks when its proxies fan out (`factory.stages.mix.fanout`): prepare, plan a round, train one proxy,
finish. Thin adapters; KFP serialises each function's source into the pipeline, so imports go inside."""

import dataclasses
from typing import Dict, List, Optional

from kfp import dsl
from kfp.dsl import Artifact, Input, Output
from kfp.dsl.python_component import PythonComponent


def mix_prepare(spec: str, step: str, plan: str, corpus: Input[Artifact], synthetic: Optional[Input[Artifact]] = None) -> List[Dict]:
    """Target set, embeddings, clusters, byte streams and prior into the store; round 1's proxy jobs."""
    from factory.stages.mix.fanout import prepare_task

    return prepare_task(spec, step, plan)


def mix_round(spec: str, step: str, plan: str, number: int, proxies: List[Dict]) -> List[Dict]:
    """Round `number`'s proxy jobs, planned from the losses of the rounds before it (`proxies`: the last one's)."""
    from factory.stages.mix.fanout import round_task

    return round_task(spec, step, plan, number)


def mix_proxy(spec: str, step: str, plan: str, job: Dict) -> Dict:
    """One proxy run (a ParallelFor iteration); its loss is kept in the store, so a retry does not train it again."""
    from factory.stages.mix.fanout import proxy_task

    return proxy_task(spec, step, plan, job)


def mix_finish(spec: str, step: str, plan: str, job_id: str, corpus: Input[Artifact], proxies: List[Dict],
               artifact: Output[Artifact], synthetic: Optional[Input[Artifact]] = None):
    """The mix step through the executor: the search replayed on the measured losses, its artifact published."""
    from factory.stages.mix.fanout import finish_task

    finish_task(step, spec, job_id, {"corpus": corpus, "synthetic": synthetic}, artifact, plan)


def named(func, base_image: str, name: str):
    """`func` as a component named `name`, so the pipeline's task is named for the step and its part."""
    component = dsl.component(func, base_image=base_image)
    return PythonComponent(dataclasses.replace(component.component_spec, name=name), python_func=func)
