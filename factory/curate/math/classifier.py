"""The math quality classifier, after FineMath: trained offline by the `quality` stage, applied by curate to math pages.

FineMath scores pages for math content and reasoning with a classifier trained on LLM annotations. Offline,
the factory labels text it can name instead (nothing here was written for the pages it is checked on):

- positives, math text as the math path writes it (`$...$`, `$$...$$`, fenced code):
  - the docstrings in SymPy's installed sources that carry math (`:math:` roles, `.. math::` blocks, `$...$`),
    read as text (nothing imported or run), their doctests fenced as code;
  - worked examples generated with SymPy (derivatives, integrals, expansions, factorisations, limits, series),
    each a short explanation in words with the LaTeX that `sympy.latex` writes.
- negatives:
  - `quality.junk.synthesize_junk` cut from the positives' own words (boilerplate, keyword spam, word salad,
    link lists, machine-translated fragments), so topic alone does not separate the classes;
  - formula soup: the positives' equations strung together with navigation words, and math pages with
    their sentences shuffled;
  - prose without math: the standard library's docstrings (a page that took the math path for one `$x$`
    is not a math page).

Two models, combined as the Nemotron-CC ensemble combines its classifiers (the larger probability counts):

- `ngram`: the ensemble's hashed n-gram classifier (`quality.classifiers`: word 1-2-grams and character
  3-5-grams, so `\\frac` and `^{` are features) on the text as it is, LaTeX included. Sees wording.
- `features`: logistic regression on `math_features`: the quality ensemble's hand features measured on the
  prose (`mask.prose_view`), plus how much of the text is LaTeX, how dense and how varied its equations
  are, and how much is code. Sees form, whatever the subject or the programming language around the math.

Saved in the quality artifact's `math/` folder:

    math/ngram.skops, math/features.skops   the fitted scikit-learn estimators
    math/classifier.json                    format, training sources and counts, held-out metrics, versions

    metrics = train_math_classifier(MathClassifierConfig(), Path("quality-model/math"))
    MathClassifier.load(Path("quality-model/math")).probabilities(["Let $x > 0$ ..."])
"""

from __future__ import annotations

import functools
import importlib.util
import inspect
import json
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field

from factory.curate.estimators import load_estimator, package_version, save_estimator
from factory.curate.math.mask import CODE_FENCE, latex_spans, prose_view
from factory.curate.quality.classifiers import NgramClassifierConfig, build, raw_scores
from factory.curate.quality.ensemble import bucket_of, tier_of
from factory.curate.quality.features import document_features
from factory.curate.quality.junk import synthesize_junk
from factory.errors import InputError
from factory.logs import get_logger
from factory.stage import StageConfig

log = get_logger("factory.curate.math.classifier")

FORMAT = 1
FOLDER = "math"
MANIFEST = "classifier.json"
MODELS = ("ngram", "features")


class MathClassifierConfig(StageConfig):
    """Training of the math quality classifier (part of the quality stage's artifact)."""

    enabled: bool = Field(True, description="Train the math classifier into the artifact's math/ folder.")
    sympy_docs: int = Field(120, ge=0, description="Most SymPy docstring documents among the positives.")
    generated_docs: int = Field(80, ge=0, description="Worked examples generated with SymPy among the positives.")
    ngram: NgramClassifierConfig = Field(
        NgramClassifierConfig(n_features=2**18, epochs=10), description="The hashed n-gram model's settings.")
    features_C: float = Field(1.0, gt=0, description="Inverse L2 strength of the features model's logistic regression.")
    heldout_fraction: float = Field(0.2, gt=0, lt=1, description="Share of labelled examples held out for metrics.")
    seed: int = Field(0, description="Seed of the generated examples, the split and the model.")


# ------------------------------------------------------------------------------------------------ positives

_MATH_MARK = re.compile(r"\.\. math::|:math:`|(?<![\\$])\$[^$\n]+\$")
_DOCSTRING = re.compile(r'[rRuU]?"""(.*?)"""', re.DOTALL)


def _doctests_fenced(text: str) -> str:
    """Doctest blocks (a `>>>` line up to the next blank line) fenced as code, as the math path writes code."""
    out, block = [], []
    for line in text.splitlines() + [""]:
        if block and not line.strip():
            out += ["```", *block, "```"]
            block = []
        if block or line.lstrip().startswith(">>>"):
            block.append(line.strip())
        else:
            out.append(line)
    return "\n".join(out).strip()


def _as_math_text(doc: str) -> str:
    """reStructuredText math (`:math:`x``, `.. math::` blocks) as `$x$` / `$$...$$`, doctests fenced."""
    doc = re.sub(r":math:`([^`]+)`", r"$\1$", doc)

    def block(m: re.Match) -> str:
        body = " ".join(line.strip() for line in m.group(1).splitlines() if line.strip())
        return f"\n\n$${body}$$\n\n"

    doc = re.sub(r"\.\. math::[^\n]*\n((?:[ \t]*\n|[ \t]+[^\n]*\n?)+)", block, doc)
    doc = re.sub(r"\n={3,}|\n-{3,}", "", doc)  # rst section underlines
    return _doctests_fenced(doc)


@functools.cache
def sympy_math_docstrings(max_docs: int, min_words: int = 60) -> tuple[str, ...]:
    """Up to `max_docs` docstrings with math from SymPy's installed sources, as math text, in file order.

    Read with a regular expression, not imported: nothing of SymPy runs. Test modules are left out."""
    spec = importlib.util.find_spec("sympy")
    if spec is None or spec.origin is None:
        raise InputError("the math classifier's positives need the SymPy sources: pip install sympy")
    root = Path(spec.origin).parent
    docs: list[str] = []
    seen: set[str] = set()
    for file in sorted(p for p in root.rglob("*.py") if "tests" not in p.parts and "benchmarks" not in p.parts):
        try:
            source = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        if not _MATH_MARK.search(source):
            continue
        for m in _DOCSTRING.finditer(source):
            text = inspect.cleandoc(m.group(1))
            if _MATH_MARK.search(text) and len(text.split()) >= min_words and text not in seen:
                seen.add(text)
                docs.append(_as_math_text(text))
                if len(docs) >= max_docs:
                    return tuple(docs)
    return tuple(docs)


_INTROS = ("Consider", "Let us look at", "We study", "Take", "Suppose we are given", "As an example, consider")
_CLOSES = ("This completes the computation.", "The same steps work for any polynomial of this form.",
           "One can check the result by differentiating it again.", "Note how each term was treated separately.",
           "The answer is unique up to the order of the factors.")


def generated_worked_examples(n: int, seed: int = 0) -> list[str]:
    """`n` short worked examples in words and LaTeX, with SymPy doing the algebra (deterministic for a seed)."""
    # loading a spec imports this module (the quality stage's config): SymPy, scikit-learn, SciPy and the reference
    # texts' trafilatura load only when the classifier is trained or scores
    import sympy as sp

    x = sp.Symbol("x")
    rng = random.Random(seed)

    def poly(degree: int):
        return sum(rng.randint(-6, 6) * x**k for k in range(degree + 1)) + x ** (degree + 1)

    def example(i: int) -> str:
        kind = i % 6
        f = poly(rng.randint(1, 3)) * rng.choice([1, sp.sin(x), sp.exp(x), sp.cos(2 * x)])
        L = sp.latex
        intro = f"{rng.choice(_INTROS)} the function $f(x) = {L(f)}$."
        if kind == 0:
            body = (f"Differentiating term by term with the product rule and the chain rule gives\n\n"
                    f"$$f'(x) = {L(sp.diff(f, x))}$$\n\n"
                    f"so the slope of the graph at $x = 0$ is ${L(sp.diff(f, x).subs(x, 0))}$.")
        elif kind == 1:
            g = poly(rng.randint(1, 2))
            big_g = sp.Poly(g, x).integrate().as_expr()  # polynomial arithmetic: far cheaper than sp.integrate
            body = (f"Instead we integrate the polynomial $g(x) = {L(g)}$. Its antiderivative, found by raising each "
                    f"power by one and dividing by the new exponent, is\n\n$$\\int g(x)\\,dx = {L(big_g)} + C$$\n\n"
                    f"and the definite integral from $0$ to $1$ equals ${L(big_g.subs(x, 1) - big_g.subs(x, 0))}$.")
        elif kind == 2:
            a, b = rng.randint(1, 5), rng.randint(-5, 5)
            p = sp.expand((x + a) * (x - b) * (x + rng.randint(-3, 3)))
            body = (f"Setting that aside, the cubic $p(x) = {L(p)}$ factors over the integers as\n\n"
                    f"$$p(x) = {L(sp.factor(p))}$$\n\nwhich shows that its roots are "
                    + ", ".join(f"${L(r)}$" for r in sorted(sp.roots(p)))
                    + ". Each root can be checked by substituting it back into $p$.")
        elif kind == 3:
            derivatives = [f]
            for _ in range(3):
                derivatives.append(sp.diff(derivatives[-1], x))
            taylor = sum(d.subs(x, 0) / sp.factorial(k) * x**k for k, d in enumerate(derivatives))
            body = (f"Its Taylor expansion around $x = 0$ up to the fourth order is\n\n"
                    f"$${L(taylor)} + O(x^4)$$\n\n"
                    f"and the coefficient of $x^2$ is half the second derivative at the origin.")
        elif kind == 4:
            k = rng.randint(1, 4)
            body = (f"We ask for the limit of $\\frac{{\\sin({k}x)}}{{x}}$ as $x$ tends to zero. Since "
                    f"$\\sin(t) \\approx t$ for small $t$, the limit is\n\n$$\\lim_{{x \\to 0}} \\frac{{\\sin({k}x)}}{{x}} = "
                    f"{k}$$\n\nwhich agrees with L'Hopital's rule.")
        else:
            a, b, c = rng.randint(1, 4), rng.randint(-8, 8), rng.randint(-8, 8)
            q = a * x**2 + b * x + c
            d = sp.sqrt(b * b - 4 * a * c)
            roots = list(dict.fromkeys(sp.nsimplify((-b + sign * d) / (2 * a)) for sign in (1, -1)))
            body = (f"Next we solve the quadratic equation ${L(q)} = 0$. The discriminant is "
                    f"$\\Delta = b^2 - 4ac = {b * b - 4 * a * c}$, so by the quadratic formula\n\n"
                    f"$$x = \\frac{{-b \\pm \\sqrt{{\\Delta}}}}{{2a}}$$\n\nthe solutions are "
                    + " and ".join(f"${L(r)}$" for r in roots) + ".")
        return f"{intro} {body}\n\n{rng.choice(_CLOSES)}"

    return [example(i) for i in range(n)]


# ------------------------------------------------------------------------------------------------ negatives

_NAV = ("Home", "Next", "Previous", "Index", "Search", "Login", "Contents", "Top", "Download PDF", "Share")
_LATEX_SPAN = re.compile(r"\$\$.+?\$\$|\$[^$\n]+\$", re.DOTALL)


def formula_soup(n: int, math_texts: Sequence[str], seed: int = 0) -> list[str]:
    """`n` pages of junk around math: equations strung with navigation words, or a math text's sentences shuffled."""
    rng = random.Random(seed)
    spans = [s for t in math_texts for s in _LATEX_SPAN.findall(t)] or ["$x$"]
    out = []
    for i in range(n):
        if i % 2 == 0:
            parts = [rng.choice(spans) if rng.random() < 0.6 else rng.choice(_NAV) for _ in range(rng.randint(20, 80))]
            out.append(rng.choice([" ", " | ", "\n"]).join(parts))
        else:
            sentences = re.split(r"(?<=[.!?])\s+", rng.choice(math_texts))
            words = " ".join(sentences).split()
            rng.shuffle(words)
            out.append(" ".join(words))
    return out


def training_texts(config: MathClassifierConfig) -> tuple[list[str], list[str], dict[str, int]]:
    """(positives, negatives, how many of each source) for the math classifier."""
    from factory.curate.quality.reference_text import stdlib_docstrings  # see generated_worked_examples

    docs = list(sympy_math_docstrings(config.sympy_docs))
    generated = generated_worked_examples(config.generated_docs, config.seed)
    positives = docs + generated
    if len(positives) < 10:
        raise InputError(f"stages.quality.math: only {len(positives)} math texts (SymPy docstrings and generated "
                         "examples); raise sympy_docs or generated_docs")
    n_junk = len(positives) // 2
    n_soup = len(positives) // 4
    junk = synthesize_junk(n_junk, positives, seed=config.seed)
    soup = formula_soup(n_soup, positives, seed=config.seed)
    prose = stdlib_docstrings(n_docs=len(positives) - n_junk - n_soup, seed=config.seed)
    counts = {"sympy_docstrings": len(docs), "generated_examples": len(generated), "junk": len(junk),
              "formula_soup": len(soup), "prose_without_math": len(prose)}
    return positives, junk + soup + prose, counts


# ------------------------------------------------------------------------------------------------ features

MATH_FEATURE_NAMES = ("latex_char_fraction", "latex_spans_per_word", "display_fraction", "latex_command_fraction",
                      "distinct_latex_fraction", "code_char_fraction", "prose_char_fraction")


def math_features(text: str) -> list[float]:
    """The quality ensemble's hand features of the prose, then `MATH_FEATURE_NAMES`, for one text."""
    prose = prose_view(text)
    spans = latex_spans(text)
    n_chars = max(1, len(text))
    n_words = max(1, len(prose.split()))
    code_chars = sum(len(m) for m in CODE_FENCE.findall(text))
    return [
        *document_features(prose),
        sum(len(s) for s in spans) / n_chars,
        len(spans) / n_words,
        sum(s.startswith("$$") for s in spans) / max(1, len(spans)),
        sum(bool(re.search(r"\\[A-Za-z]+|[\^_]", s)) for s in spans) / max(1, len(spans)),
        len(set(spans)) / max(1, len(spans)),
        code_chars / n_chars,
        len(prose) / n_chars,
    ]


def math_feature_matrix(texts: Sequence[str]) -> np.ndarray:
    """(len(texts), n_features) float64."""
    rows = [math_features(t) for t in texts]
    return np.array(rows, dtype=np.float64).reshape(len(texts), -1)


def _build(name: str, config: MathClassifierConfig):
    """An unfitted model: the ensemble's n-gram pipeline, or a logistic regression on standardised features
    (smooth in its inputs, where boosted trees on these few easy features jump from 0 to 1)."""
    if name == "ngram":
        return build("ngram", config.ngram, config.seed)
    from sklearn.linear_model import LogisticRegression  # see generated_worked_examples
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(C=config.features_C, max_iter=1000))


def _inputs(name: str, texts: Sequence[str]):
    return math_feature_matrix(texts) if name == "features" else list(texts)


# ------------------------------------------------------------------------------------------------ model

def train_math_classifier(config: MathClassifierConfig, out_dir: Path) -> dict[str, float]:
    """Fit the classifier on `training_texts`, save it into `out_dir`; held-out metrics (`math_` prefixed)."""
    from sklearn.metrics import roc_auc_score  # see generated_worked_examples
    from sklearn.model_selection import train_test_split

    positives, negatives, counts = training_texts(config)
    texts = positives + negatives
    labels = np.array([1] * len(positives) + [0] * len(negatives))
    train_x, test_x, train_y, test_y = train_test_split(
        texts, labels, test_size=config.heldout_fraction, stratify=labels, random_state=config.seed)
    models = {name: _build(name, config).fit(_inputs(name, train_x), train_y) for name in MODELS}
    classifier = MathClassifier(models=models, manifest={})
    metrics = {}
    for name in MODELS:
        raw = raw_scores(models[name], _inputs(name, test_x))
        metrics[f"math_{name}_auc"] = float(roc_auc_score(test_y, raw))
    p = classifier.probabilities(test_x)
    metrics |= {"math_auc": float(roc_auc_score(test_y, p)), "math_accuracy": float(np.mean((p >= 0.5) == test_y)),
                "math_positives": float(len(positives)), "math_negatives": float(len(negatives))}
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in MODELS:
        save_estimator(models[name], out_dir / f"{name}.skops")
    manifest = {"format": FORMAT, "config": config.model_dump(mode="json"), "training": counts,
                "metrics": metrics, "versions": {p: package_version(p) for p in ("scikit-learn", "skops", "sympy")}}
    (out_dir / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    log.info("math_classifier_trained", out_dir=str(out_dir), **counts, auc=round(metrics["math_auc"], 4))
    return metrics


@dataclass
class MathClassifier:
    """The fitted math models: the probability that a text is good math text, the larger of the two models'."""

    models: dict[str, Any]
    manifest: dict

    def probabilities(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts),) float64 in [0, 1]."""
        if not texts:
            return np.zeros(0)
        from scipy.special import expit  # see generated_worked_examples

        return np.max([expit(raw_scores(self.models[name], _inputs(name, texts))) for name in MODELS], axis=0)

    @classmethod
    def load(cls, artifact: Path) -> MathClassifier | None:
        """The classifier in a quality artifact folder (its `math/` subfolder); None when it has none."""
        folder = Path(artifact) / FOLDER
        manifest_path = folder / MANIFEST
        if not manifest_path.is_file():
            return None
        manifest = json.loads(manifest_path.read_text())
        if manifest.get("format") != FORMAT:
            raise InputError(f"{manifest_path}: format {manifest.get('format')!r}, this factory reads {FORMAT}")
        models = {name: load_estimator(folder / f"{name}.skops", f"the math classifier in {folder}") for name in MODELS}
        return cls(models=models, manifest=manifest)


def score_math_documents(docs: Sequence, classifier: MathClassifier | None, min_score: float,
                         tier_bounds: Sequence[int], source: str) -> tuple[list, int]:
    """Score math pages with the math classifier in place; (the pages at or above `min_score`, how many dropped).

    Each page gets `quality_math` (the probability) and, as the quality ensemble gives prose pages,
    `quality_score` (the same probability), `quality_bucket` (0-19) and `quality_tier` (0-4 by `tier_bounds`),
    so tiers mean the same share of the scale on both paths. `source` names the artifact in the error raised
    when it has no math classifier.
    """
    if not docs:
        return [], 0
    if classifier is None:
        raise InputError(f"{source} has no math classifier ({FOLDER}/{MANIFEST}) to score the {len(docs)} math pages: "
                         "retrain it with this factory's quality stage, or set stages.curate.math.chain.enabled: false")
    p = classifier.probabilities([d.text for d in docs])
    buckets = bucket_of(p)
    tiers = tier_of(buckets, tier_bounds)
    kept = []
    for doc, prob, bucket, tier in zip(docs, p, buckets, tiers):
        doc.metadata |= {"quality_math": round(float(prob), 6), "quality_score": round(float(prob), 6),
                         "quality_bucket": int(bucket), "quality_tier": int(tier)}
        if prob >= min_score:
            kept.append(doc)
    return kept, len(docs) - len(kept)
