"""G-Vendi of a dataset artifact folder: a seeded sample of its examples, their gradient features, the score.

    report = measure_artifact("store/curate/<fp>", "corpus", GVendiSettings(sample=64))   # {"gvendi": ..., ...}
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from factory.gvendi.examples import read_examples
from factory.gvendi.proxy import Proxy, load_proxy
from factory.gvendi.score import gradient_features, gvendi_score
from factory.gvendi.config import GVendiSettings

__all__ = ["measure_artifact"]


def measure_artifact(path: str | Path, kind: str, settings: GVendiSettings, proxy: Proxy | None = None) -> dict[str, Any]:
    """The G-Vendi report of the dataset artifact folder `path` of artifact kind `kind`: score, examples
    measured and skipped, the proxy and the settings."""
    proxy = proxy or load_proxy(settings)
    skipped: Counter = Counter()
    examples = read_examples(path, kind, proxy.encode, settings.seq_len, settings.sample, settings.seed, skipped)
    report: dict[str, Any] = {"examples": len(examples), "skipped": dict(skipped), "proxy": proxy.name,
                              "proxy_parameters": proxy.parameters, "settings": settings.result_fields()}
    if examples:
        report["gvendi"] = gvendi_score(gradient_features(examples, proxy, settings))
    return report
