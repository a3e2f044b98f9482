"""G-Vendi on real text nobody here wrote: a set drawn from four domains scores higher than a set of the same
size from any one of them, and Prismatic-style targeted selection raises a set's score more than picking the
same number of candidates at random.

Domains (all shipped with the interpreter or the packaged task sets): the standard library's docstrings
(technical prose), its source code, HumanEval prompts (code with docstrings) and reasoning-gym arithmetic and
equation problems. The proxy is the default fresh tiny preset over bytes at the default window (512 bytes).
"""

from __future__ import annotations

import random
import sysconfig
from pathlib import Path

import pytest

from factory.gvendi import ProxySettings, gradient_features, gvendi_score, load_proxy, targeted_selection, text_example

PER_DOMAIN = 16
EXTRA_DOCS = 8  # docstring documents beyond the single-domain set: the in-domain candidates of targeted selection


def stdlib_source(n: int) -> list[str]:
    """Function definitions from the standard library's top-level modules, one per module, 3000 chars at most."""
    texts = []
    for file in sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py"))[::3]:
        source = file.read_text(encoding="utf-8", errors="ignore")
        start = source.find("\ndef ")
        if start > 0:
            texts.append(source[start + 1 : start + 3001])
    return texts[:n]


@pytest.fixture(scope="module")
def domains():
    from factory.curate.quality.reference_text import stdlib_docstrings
    from factory.tasks.humaneval import humaneval
    from factory.tasks.procedural import procedural

    texts = {
        "docstrings": stdlib_docstrings(n_docs=PER_DOMAIN + EXTRA_DOCS),
        "humaneval": [task.prompt for task in humaneval()[::8][:PER_DOMAIN]],
        "arithmetic": [item.problem for item in procedural("basic_arithmetic", PER_DOMAIN // 2, 0)
                       + procedural("simple_equations", PER_DOMAIN // 2, 0)],
        "stdlib_source": stdlib_source(PER_DOMAIN),
    }
    settings = ProxySettings()
    proxy = load_proxy(settings)
    names, examples = [], []
    for name, items in texts.items():
        for text in items:
            names.append(name)
            examples.append(text_example(text, proxy.encode, settings.seq_len))
    features = gradient_features(examples, proxy, settings)  # one proxy, one projection for every set below
    rows = {name: [i for i, n in enumerate(names) if n == name] for name in texts}
    return features, rows


def test_a_mixed_domain_set_scores_higher_than_any_single_domain_set(domains):
    features, rows = domains
    single = {name: gvendi_score(features[r[:PER_DOMAIN]]) for name, r in rows.items()}
    mixed = gvendi_score(features[[i for r in rows.values() for i in r[: PER_DOMAIN // 4]]])
    print(f"G-Vendi of {PER_DOMAIN} examples: mixed {mixed:.2f}; single " + ", ".join(f"{k} {v:.2f}" for k, v in single.items()))
    assert all(1.0 < v < PER_DOMAIN for v in [*single.values(), mixed])
    assert mixed > max(single.values()), single


def test_targeted_selection_raises_the_score_more_than_random_picks(domains):
    features, rows = domains
    reference = rows["docstrings"][:PER_DOMAIN]
    # candidates: more of the same domain first, then a few from the others (as generated data would be, mostly alike)
    candidates = rows["docstrings"][PER_DOMAIN:] + [i for name in ("humaneval", "arithmetic", "stdlib_source")
                                                    for i in rows[name][PER_DOMAIN // 2 : PER_DOMAIN // 2 + 4]]
    keep = 6
    chosen = targeted_selection(features[reference].numpy(), features[candidates].numpy(), clusters=6, keep=keep, seed=0)
    assert len(chosen) == keep and chosen == sorted(set(chosen))
    base = gvendi_score(features[reference])
    targeted = gvendi_score(features[reference + [candidates[i] for i in chosen]])
    rng = random.Random(0)
    random_picks = [gvendi_score(features[reference + rng.sample(candidates, keep)]) for _ in range(10)]
    in_order = gvendi_score(features[reference + candidates[:keep]])
    print(f"G-Vendi: reference {base:.2f}; + {keep} targeted {targeted:.2f}; + {keep} random (mean of 10) "
          f"{sum(random_picks) / 10:.2f}; + first {keep} {in_order:.2f}")
    assert targeted > base
    assert targeted > sum(random_picks) / len(random_picks)
    assert targeted > in_order
    # what it kept is mostly what the reference lacks: candidates from the other domains
    assert sum(candidates[i] not in rows["docstrings"] for i in chosen) > keep // 2
