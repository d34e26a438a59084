"""mipd-edge: open-vocabulary grounded situation recognition, from MIPD training to the edge."""

from .errors import BundleError, DatasetError, InvalidImageError, MipdEdgeError, VocabularyError
from .situation import Frame, Noun, RoleValue, Situation, VerbCandidate

__version__ = "0.1.0"

__all__ = ["MipdEdgeError", "DatasetError", "VocabularyError", "InvalidImageError", "BundleError",
           "Frame", "Noun", "RoleValue", "Situation", "VerbCandidate", "__version__"]
