"""Cloze-set scoring, as the evaluate stage uses it; it lives in `factory.tasks.scoring`, below the stages
that share it (evaluate, quantize)."""

from factory.tasks.scoring import SetScore, encode_item, score_set

__all__ = ["SetScore", "encode_item", "score_set"]
