"""Commands of the `factory` CLI that live outside `factory/cli.py` (`factory curate`, `factory sandbox`,
`factory verify`); they sit above the stages and are no part of any stage's code version."""
