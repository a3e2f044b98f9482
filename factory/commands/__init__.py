"""Commands that run one stage outside a pipeline (`factory curate`); they sit above the stages and are
no part of any stage's code version."""
