"""skops files of fitted estimators: saved, loaded back, refused when a type is not scikit-learn's or the file is missing."""

import fractions

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import FunctionTransformer

from factory.curate.estimators import load_estimator, save_estimator
from factory.errors import InputError


def test_round_trip_and_refusals(tmp_path):
    x = np.array([[0.0], [1.0], [2.0], [3.0]])
    model = LogisticRegression().fit(x, [0, 0, 1, 1])
    save_estimator(model, tmp_path / "ngram.skops")
    back = load_estimator(tmp_path / "ngram.skops", f"the folder {tmp_path}")
    assert np.array_equal(back.predict_proba(x), model.predict_proba(x))

    save_estimator(FunctionTransformer(fractions.Fraction), tmp_path / "foreign.skops")
    with pytest.raises(InputError, match=r"foreign.skops holds types that are not scikit-learn's: \['fractions.Fraction'\]"):
        load_estimator(tmp_path / "foreign.skops", "x")
    with pytest.raises(InputError, match=r"missing.skops not found: the math classifier in m is incomplete"):
        load_estimator(tmp_path / "missing.skops", "the math classifier in m")
