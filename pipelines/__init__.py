"""KFP pipeline DAGs built from a spec."""
