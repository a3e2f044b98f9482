"""Uploading a release folder to the Hugging Face Hub."""

from __future__ import annotations

import os
from pathlib import Path

from huggingface_hub import HfApi

from factory.stage import StepContext
from factory.stages.release.config import Config

__all__ = ["push_to_hub"]


def push_to_hub(folder: Path, config: Config, ctx: StepContext) -> bool:
    """Upload `folder` to `config.repo_id` when `push` is set and HF_TOKEN is present; else log why not."""
    if not config.push:
        ctx.log.info("push_skipped", reason="push is false")
        return False
    token = os.environ.get("HF_TOKEN")
    if not token:
        ctx.log.warning("push_skipped", reason="HF_TOKEN is not set", repo_id=config.repo_id)
        return False

    api = HfApi(token=token)
    api.create_repo(config.repo_id, repo_type="model", private=config.private, exist_ok=True)
    info = api.upload_folder(folder_path=str(folder), repo_id=config.repo_id, repo_type="model", commit_message=f"Release {config.model_name}")
    ctx.log.info("pushed", repo_id=config.repo_id, commit=getattr(info, "oid", None))
    return True
