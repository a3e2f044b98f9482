"""Every post-training test runs on one intra-op thread, as the trainer tests do (the same fixture)."""

from tests.train.conftest import one_thread  # noqa: F401  (autouse: registered by importing it here)
