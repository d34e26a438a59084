"""Datasets: the SWiG / imSitu format, the open-vocabulary split, and SynthSitu."""

from .split import apply_split, build_split, load_split, training_verbs
from .swig import Annotation, SituDataset, SituSpace, read_annotations, read_space

__all__ = ["Annotation", "SituDataset", "SituSpace", "read_annotations", "read_space",
           "apply_split", "build_split", "load_split", "training_verbs"]
