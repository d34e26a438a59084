"""mipd-edge: open-vocabulary grounded situation recognition, from MIPD training to the edge."""

from .errors import (
    BundleError,
    DatasetError,
    InvalidImageError,
    MipdEdgeError,
    MissingDependencyError,
    OutputExistsError,
    StreamError,
    VocabularyError,
)
from .situation import Frame, Interactions, Noun, RoleValue, Situation, VerbCandidate
from .vocabulary import Vocabulary


def __getattr__(name: str):
    # the predictors pull in OpenCV and the runtime registry: import them on first use
    if name in ("Predictor", "SituationPredictor", "InteractionPredictor"):
        from .deploy import predictor

        return getattr(predictor, name)
    raise AttributeError(f"module 'mipd_edge' has no attribute {name!r}")

__version__ = "0.1.0"

__all__ = ["MipdEdgeError", "DatasetError", "VocabularyError", "InvalidImageError", "BundleError", "StreamError",
           "OutputExistsError", "MissingDependencyError",
           "Frame", "Interactions", "Noun", "RoleValue", "Situation", "VerbCandidate", "Vocabulary", "Predictor",
           "SituationPredictor", "InteractionPredictor", "__version__"]
