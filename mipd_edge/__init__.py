"""mipd-edge: open-vocabulary grounded situation recognition, from MIPD training to the edge."""

from .errors import (
    BundleError,
    DatasetError,
    InvalidImageError,
    MipdEdgeError,
    OutputExistsError,
    StreamError,
    VocabularyError,
)
from .situation import Frame, Noun, RoleValue, Situation, VerbCandidate
from .vocabulary import Vocabulary


def __getattr__(name: str):
    # Predictor pulls in OpenCV and the runtime registry: import it on first use
    if name == "Predictor":
        from .deploy.predictor import Predictor

        return Predictor
    raise AttributeError(f"module 'mipd_edge' has no attribute {name!r}")

__version__ = "0.1.0"

__all__ = ["MipdEdgeError", "DatasetError", "VocabularyError", "InvalidImageError", "BundleError", "StreamError",
           "OutputExistsError",
           "Frame", "Noun", "RoleValue", "Situation", "VerbCandidate", "Vocabulary", "Predictor", "__version__"]
