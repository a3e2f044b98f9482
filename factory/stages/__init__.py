"""The stage kinds, one package each, all of one shape (`factory.kinds.KINDS` names them):

    factory/stages/<kind>/config.py   `Config`: the kind's frozen pydantic config; light, since loading a spec imports it
    factory/stages/<kind>/stage.py    `run(config, inputs, output, ctx)`: the stage itself, its heavy imports at the top
    factory/stages/<kind>/*.py        what only this kind uses

Stages never import each other (`tests/test_layers.py`): what two of them share sits below `factory.stages`.
"""
