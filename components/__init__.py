"""One lightweight KFP component per stage: thin adapters over `factory.orchestrate.run_component`.

Each function below is the body KFP runs inside the stage's container (the factory image, which has the
`factory` package installed); `build(base_image)` wraps it as a component with that image. The logic
lives in `factory`; these stay small on purpose.
"""

from kfp import dsl

from components.stages import curate, evaluate, finish, pretrain, quality, release, synth, tokenize

FUNCTIONS = {
    "quality": quality,
    "curate": curate,
    "synth": synth,
    "tokenize": tokenize,
    "pretrain": pretrain,
    "evaluate": evaluate,
    "release": release,
}


def build(stage: str, base_image: str):
    """The KFP component for `stage` (or 'finish', the exit handler) running in `base_image`."""
    func = finish if stage == "finish" else FUNCTIONS[stage]
    return dsl.component(func, base_image=base_image)
