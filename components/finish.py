"""The exit handler's body. KFP serialises the function's source into the pipeline, so imports go inside."""

from kfp import dsl


def finish(spec: str, job_id: str, status: dsl.PipelineTaskFinalStatus):
    """Exit handler: close the pipeline's MLflow parent run with the pipeline's final state."""
    from factory.orchestrate import finish_pipeline

    finish_pipeline(spec, job_id, status.state)
