"""The import_model stage: an existing Hugging Face causal LM (a local folder, an s3:// prefix, or a Hub reference from
the local cache) in as a checkpoint every later stage takes."""

from factory.lazy import lazy_exports
from factory.stages.import_model.config import Config

# `run` imports the stage's heavy libraries; loading a spec reads only `Config`.
__getattr__ = lazy_exports(__name__, {"run": "factory.stages.import_model.stage"})

__all__ = ["Config", "run"]
