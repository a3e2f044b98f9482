"""Small, deterministic data sets the factory ships for smoke runs and tests (see `smoke_corpus`)."""
