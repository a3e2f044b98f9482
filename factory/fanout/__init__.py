"""Steps that run as several KFP tasks: the task bodies, one module per stage kind that fans out.

A kind fans out when its registry entry names a module here (`factory.kinds.FanOut`); a step of that kind does
when its config says so (`config.fan_out(local)` gives the rounds and how many parallel tasks run at once, or
None for one task). The pipeline (`pipelines/end_to_end.py`) then builds, from components generated for the kind
(`components/generate.py`):

    <step>-prepare          prepare_task(spec, step, plan) -> round 1's jobs
    <step>-<work>-<r>       work_task(spec, step, plan, job) -> a result    (a dsl.ParallelFor over round r's jobs)
    <step>-round-<r>        round_task(spec, step, plan, r) -> round r's jobs, after round r-1's results (dsl.Collected)
    <step>                  finish_task(step, spec, job_id, upstream, output, plan) -> the step's manifest: the step
                            itself through the executor (`factory.orchestrate.run_component`), published as any step

The modules here sit above the orchestration layer and below the KFP components, and import no kfp.

    mix     CLIMB's proxy runs, each its own pod (`factory.stages.mix`)
"""
