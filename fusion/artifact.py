"""One file per trained fusion model: a zip of ``model.json`` (what it is) and the estimator.

The description is read before anything is unpickled, so a model from another version of
churnsignal or scikit-learn is refused with a message that says what to do, instead of
failing somewhere inside pickle or, worse, loading and scoring wrongly. Pickles execute
code when loaded: load only models you trained yourself.
"""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import joblib
import sklearn

from churnsignal import __version__
from churnsignal.fusion.model import ChurnModel

FORMAT = "churnsignal-fusion"


class ArtifactError(ValueError):
    """A model file that cannot be used; the message says why and what to do."""


@dataclass
class FusionModel:
    """A trained model with everything scoring needs to rebuild its features the same way."""

    estimator: ChurnModel
    uses_text: bool
    # Settings that define the features (the windows): fixed at training.
    feature_settings: dict[str, float]
    # Per-segment tier cut-offs fitted at training, or None for the configured ones.
    cutoffs: dict[str, list[float]] | None
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def features(self) -> list[str]:
        return [str(name) for name in self.estimator.feature_names_in_]


def save(model: FusionModel, path: Path) -> None:
    """Write the model to ``path`` (parent folders are created)."""
    description = {
        "format": FORMAT, "churnsignal": __version__, "scikit-learn": sklearn.__version__,
        "features": model.features, "uses_text": model.uses_text, "feature_settings": model.feature_settings,
        "cutoffs": model.cutoffs, **model.info,
    }
    buffer = io.BytesIO()
    joblib.dump(model.estimator, buffer)
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("model.json", json.dumps(description, ensure_ascii=False, indent=2))
        archive.writestr("estimator.joblib", buffer.getvalue())


def describe(path: Path) -> dict[str, Any]:
    """The model's description, checked to be one this version can use."""
    try:
        with zipfile.ZipFile(path) as archive:
            description = json.loads(archive.read("model.json"))
    except FileNotFoundError as exc:
        raise ArtifactError(f"{path}: no such model file") from exc
    except (zipfile.BadZipFile, KeyError, json.JSONDecodeError, IsADirectoryError) as exc:
        raise ArtifactError(f"{path}: not a churnsignal fusion model") from exc
    if description.get("format") != FORMAT:
        raise ArtifactError(f"{path}: not a churnsignal fusion model")
    for package, ours in (("churnsignal", __version__), ("scikit-learn", sklearn.__version__)):
        if description.get(package) != ours:
            raise ArtifactError(
                f"{path} was trained with {package} {description.get(package)}; this is {package} {ours}. "
                "Retrain it with `churnsignal fusion train` (models are not carried across versions)")
    return description


def load(path: Path) -> FusionModel:
    """Load a model written by :func:`save` with this version of churnsignal."""
    description = describe(path)
    with zipfile.ZipFile(path) as archive:
        estimator = joblib.load(io.BytesIO(archive.read("estimator.joblib")))
    own = {"format", "churnsignal", "scikit-learn", "features", "uses_text", "feature_settings", "cutoffs"}
    return FusionModel(estimator=estimator, uses_text=description["uses_text"],
                       feature_settings=description["feature_settings"], cutoffs=description["cutoffs"],
                       info={k: v for k, v in description.items() if k not in own})
