"""Semantic dedup (SemDeDup): paraphrase pairs collapse to one document, unrelated documents all stay."""

import numpy as np
import pytest

from factory.curate.dedup import SemanticDedupConfig, semantic_dedup
from factory.embedding import EmbeddingConfig, embed

PARAPHRASES = [
    (
        "The city council voted on Tuesday to build a new public library next to the central park. Construction will start in the spring and should take about two years.",
        "On Tuesday, the municipal council approved plans for a new public library beside the central park. Building work begins in spring and is expected to last roughly two years.",
    ),
    (
        "To reset your password, open the settings page, choose the security tab and click the link that says forgot password. A code will be sent to your email address.",
        "If you need a new password, go to settings, pick the security section and press the forgot password link; we will email you a code.",
    ),
    (
        "Heavy rain caused the river to overflow its banks overnight, flooding dozens of homes in the low-lying neighbourhoods of the town.",
        "Overnight downpours made the river burst its banks, and dozens of houses in the town's low-lying districts were flooded.",
    ),
    (
        "Preheat the oven to 180 degrees. Mix the flour, sugar and butter in a bowl, add two eggs, pour the batter into a tin and bake for forty minutes.",
        "Heat the oven to 180 degrees first. Combine flour, sugar and butter in a bowl, stir in two eggs, then pour the mixture into a tin and bake it for 40 minutes.",
    ),
    (
        "The company reported that its quarterly profit rose by twelve percent, driven mainly by strong sales of its new smartphone in Asia.",
        "Quarterly profits at the firm climbed twelve percent, the company said, largely thanks to brisk sales of its latest smartphone across Asia.",
    ),
    (
        "Regular exercise lowers the risk of heart disease, improves sleep and helps people manage stress, according to a large new study.",
        "A big new study finds that exercising regularly reduces the chance of heart disease, leads to better sleep and helps with stress.",
    ),
]

UNRELATED = [
    "The mitochondrion is the organelle in which cellular respiration produces most of the cell's supply of ATP.",
    "Our football team lost the final match three to one after conceding two goals in the last ten minutes.",
    "Python lists are mutable sequences that can hold items of different types and grow as elements are appended.",
    "The painter spent the summer on the coast, sketching fishing boats and the changing light over the harbour.",
    "Interest rates on mortgages have fallen for the third month in a row, making home loans cheaper for buyers.",
    "Volcanic eruptions can inject sulfur dioxide into the stratosphere, cooling the global climate for a year or two.",
    "The train to the airport leaves every fifteen minutes from platform four and the journey takes half an hour.",
    "Medieval castles were often built on hills so that defenders could see approaching armies from far away.",
    "Chess engines evaluate millions of positions per second using search trees and learned evaluation functions.",
    "Honeybees communicate the location of flowers to their hive mates by performing a waggle dance.",
]


@pytest.fixture(scope="module")
def corpus():
    # paraphrases interleaved with unrelated text; ids say which pair a document belongs to
    records = [(f"pair{i}-{j}", text) for i, pair in enumerate(PARAPHRASES) for j, text in enumerate(pair)]
    records += [(f"other{i}", text) for i, text in enumerate(UNRELATED)]
    return records, embed([t for _, t in records], EmbeddingConfig())  # (22, 384)


def test_embeddings_separate_paraphrases_from_unrelated(corpus):
    records, x = corpus
    assert x.shape == (22, 384)
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-5)
    sims = x @ x.T
    pair_sims = [sims[2 * i, 2 * i + 1] for i in range(len(PARAPHRASES))]
    unrelated = ~np.eye(len(records), dtype=bool)  # (22, 22): every pair but a document and its paraphrase
    for i in range(len(PARAPHRASES)):
        unrelated[2 * i, 2 * i + 1] = unrelated[2 * i + 1, 2 * i] = False
    assert min(pair_sims) > 0.75 and sims[unrelated].max() < 0.5


@pytest.mark.parametrize("keep", ["farthest", "first"])
def test_one_of_each_paraphrase_pair_is_dropped(corpus, keep):
    records, x = corpus
    config = SemanticDedupConfig(threshold=0.75, docs_per_cluster=8, keep=keep)
    result = semantic_dedup(records, config, embeddings=x)
    assert result.clusters == 3
    assert result.removed == len(PARAPHRASES)
    kept = {d.id for d in result.kept}
    assert all(f"other{i}" in kept for i in range(len(UNRELATED)))
    for removed, survivor in result.duplicate_of.items():
        assert removed.split("-")[0] == survivor.split("-")[0]  # dropped for its own paraphrase
        if keep == "first":
            assert removed.endswith("-1") and survivor.endswith("-0")


def test_threshold_above_every_pair_keeps_everything(corpus):
    records, _ = corpus
    # embeds itself this time (the model load is cached per process)
    result = semantic_dedup(records, SemanticDedupConfig(threshold=0.99, docs_per_cluster=8))
    assert result.removed == 0 and [d.id for d in result.kept] == [r[0] for r in records]
