"""Data blends with phases: the switch at the configured token fraction, exact proportions, pure in position."""

from __future__ import annotations

import shutil

import pytest
import torch

from factory.errors import SpecError
from factory.stage import Artifact, StepContext
from factory.tokens import write_indexed
from factory.stages import pretrain
from factory.train import read_metrics
from factory.train.config import Blend, BlendPhase
from factory.train.sampler import BlendedSamples

from tests.builders import WORD_VOCAB, learnable_docs


def tagged(tag: int, n: int) -> list[torch.Tensor]:
    """n samples of dataset `tag`: sample i is [tag, i]."""
    return [torch.tensor([tag, i]) for i in range(n)]


PHASES = [BlendPhase(until_fraction=0.5, weights={"web": 3, "code": 1}),
          BlendPhase(until_fraction=1.0, weights={"web": 1, "math": 1})]


def test_phase_switch_and_proportions_match_the_weights():
    blend = BlendedSamples({"web": tagged(0, 50), "code": tagged(1, 30), "math": tagged(2, 7)}, PHASES, 2000, seed=3)
    names = [blend.source(p)[0] for p in range(2000)]
    assert blend.phase_of(999) == 0 and blend.phase_of(1000) == 1  # 0.5 of 2000 samples (= of the tokens)
    first, second = names[:1000], names[1000:]
    assert (first.count("web"), first.count("code"), first.count("math")) == (750, 250, 0)
    assert (second.count("web"), second.count("code"), second.count("math")) == (500, 0, 500)
    assert "code" not in second and "math" not in first  # the switch happens exactly at position 1000


def test_draws_are_a_pure_function_of_position_and_walk_each_dataset_in_epochs():
    datasets = {"web": tagged(0, 50), "code": tagged(1, 30), "math": tagged(2, 7)}
    a = BlendedSamples(datasets, PHASES, 2000, seed=3)
    seq = [a.sample(p).tolist() for p in range(2000)]
    b = BlendedSamples(datasets, PHASES, 2000, seed=3)  # a resumed run: fresh object, arbitrary order
    for p in (1999, 0, 1234, 999, 1000, 17):
        assert b.sample(p).tolist() == seq[p]
    web = [i for tag, i in seq if tag == 0]
    assert sorted(web[:50]) == list(range(50)) and sorted(web[50:100]) == list(range(50))  # epochs, across phases
    assert seq != [x.tolist() for x in map(BlendedSamples(datasets, PHASES, 2000, seed=4).sample, range(2000))]


def test_bad_blends_are_spec_errors():
    with pytest.raises((SpecError, ValueError), match="end at 1.0"):
        Blend(blend=[{"until_fraction": 0.5, "weights": {"a": 1}}])
    with pytest.raises((SpecError, ValueError), match="must be > 0"):
        Blend(blend=[{"until_fraction": 1.0, "weights": {"a": 0}}])


def test_pretrain_trains_on_a_blend_of_two_prefixes(word_tokens, tmp_path):
    folder = tmp_path / "tokens"
    shutil.copytree(word_tokens.path, folder)
    write_indexed(folder / "hq", learnable_docs(100, seed=5), WORD_VOCAB)
    blend = [{"until_fraction": 0.5, "weights": {"train": 1.0}}, {"until_fraction": 1.0, "weights": {"train": 1, "hq": 1}}]
    config = pretrain.Config(seq_len=32, micro_batch_size=4, steps=6, warmup_steps=1, checkpoint_interval=0, blend=blend)
    ctx = StepContext("blend")
    result = pretrain.run(config, {"tokens": Artifact(folder, {})}, tmp_path / "out", ctx)
    assert [d["name"] for d in ctx.tracker.datasets] == ["tokens/train", "tokens/hq"]
    assert result["tokens_seen"] == 6 * 4 * 32 and len(read_metrics(tmp_path / "out/metrics.jsonl")) == 6
    with pytest.raises(Exception, match=r"missing\.bin"):
        pretrain.run(config.model_copy(update={"blend": [BlendPhase(until_fraction=1.0, weights={"missing": 1})]}),
                     {"tokens": Artifact(folder, {})}, tmp_path / "x", ctx)
