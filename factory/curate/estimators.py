"""Fitted scikit-learn estimators as skops files: the quality ensemble's classifiers and the math classifier.

    save_estimator(model, folder / "ngram.skops")
    model = load_estimator(folder / "ngram.skops", whole=f"the quality-ensemble folder {folder}")

skops loads only the types it is told to trust. A file is trusted when every type it holds is scikit-learn's,
NumPy's, SciPy's or a builtin, so a tampered artifact cannot make loading run code of anything else.
"""

from __future__ import annotations

from importlib import metadata as package_metadata
from pathlib import Path
from typing import Any

from factory.errors import InputError

TRUSTED_PREFIXES = ("sklearn.", "numpy.", "scipy.", "builtins.")


def save_estimator(estimator: Any, file: Path) -> None:
    """Write one fitted estimator to `file` (a .skops file)."""
    import skops.io  # ~2 s with scikit-learn: spec loads import this module's callers' configs, not skops

    skops.io.dump(estimator, file)


def load_estimator(file: Path, whole: str) -> Any:
    """The estimator in `file`; one `InputError` when it is missing (naming `whole`, the folder it belongs to, as
    incomplete) or holds a type that is not scikit-learn's, NumPy's, SciPy's or a builtin."""
    import skops.io  # see save_estimator

    if not file.is_file():
        raise InputError(f"{file} not found: {whole} is incomplete")
    untrusted = skops.io.get_untrusted_types(file=file)
    foreign = [t for t in untrusted if not t.startswith(TRUSTED_PREFIXES)]
    if foreign:
        raise InputError(f"{file} holds types that are not scikit-learn's: {foreign}")
    return skops.io.load(file, trusted=untrusted)


def package_version(package: str) -> str | None:
    """The installed version of `package` (written beside the estimators), None when it is not a package."""
    try:
        return package_metadata.version(package)
    except package_metadata.PackageNotFoundError:
        return None
