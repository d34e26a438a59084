"""The training side of a dataset: letterboxed images in memory and padded targets as tensors.

Images are decoded and letterboxed once (with the same ``Preprocess`` the runtimes use),
kept as uint8, and normalised batch by batch, so an epoch costs no JPEG decoding. The set
is indexed by position; the training loop draws batches of indices itself, which keeps
the data order a pure function of (seed, epoch) and makes resuming exact.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch

from ..data.split import dataset_split, training_verbs
from ..data.swig import SituDataset
from ..deploy.preprocess import Preprocess
from ..errors import VocabularyError
from ..files import PathLike
from ..progress import progress_bar
from ..vocabulary import Vocabulary

log = logging.getLogger(__name__)


def training_view(data_dir: PathLike, encoder) -> tuple[dict, SituDataset, Vocabulary]:
    """What every training stage reads of a SWiG-format dataset: its Ov split, the training set
    without the unseen verbs, and the vocabulary of the training (seen and rare) verbs."""
    split = dataset_split(data_dir)
    train_set = SituDataset(data_dir, "train", ov_split=split)
    space = train_set.space
    return split, train_set, Vocabulary({v: space.frames[v] for v in training_verbs(split)}, space.nouns, encoder)


def batch_rows(table: np.ndarray, index: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A batch's rows of a per-image table (teacher features, knowledge; possibly memory-mapped),
    as float32 on ``device``."""
    return torch.from_numpy(np.asarray(table[index.cpu().numpy()], dtype=np.float32)).to(device)


@dataclass
class UnlabeledBatch:
    """Unlabeled images beside a labeled batch (``distill --unlabeled``, ``train/unlabeled.py``)."""

    images: torch.Tensor  # (B, 3, S, S) float, normalised
    cells: torch.Tensor  # (B, C, 4) cx, cy, w, h in [0, 1] of the input: the regions distilled
    index: torch.Tensor  # (B,) position in the unlabeled pool (its teacher cache is keyed by it)


@dataclass
class Batch:
    images: torch.Tensor  # (B, 3, S, S) float, normalised
    verbs: torch.Tensor  # (B,) index into the training vocabulary's verbs
    nouns: torch.Tensor  # (B, R, A) index into the vocabulary's nouns per annotator, -1 = padding
    boxes: torch.Tensor  # (B, R, 4) cx, cy, w, h in [0, 1] of the input
    has_box: torch.Tensor  # (B, R) bool
    role_mask: torch.Tensor  # (B, R) float, 1 for the verb's roles
    index: torch.Tensor  # (B,) position in the set (teacher caches are keyed by it)
    unlabeled: Optional[UnlabeledBatch] = None


class GSRTrainSet:
    def __init__(self, dataset: SituDataset, vocabulary: Vocabulary, preprocess: Preprocess, max_roles: int = 6,
                 progress: bool = True):
        self.names = list(dataset.names)
        self.preprocess = preprocess
        verbs = {v: i for i, v in enumerate(vocabulary.verbs)}
        nouns = {n: i for i, n in enumerate(vocabulary.nouns)}
        n, s = len(dataset), preprocess.size
        annotators = max((len(a.frames) for a in dataset.annotations.values()), default=3)
        self.images = np.empty((n, s, s, 3), np.uint8)
        self.verbs = np.empty(n, np.int64)
        self.nouns = np.full((n, max_roles, annotators), -1, np.int64)
        self.boxes = np.zeros((n, max_roles, 4), np.float32)
        self.has_box = np.zeros((n, max_roles), bool)
        self.role_mask = np.zeros((n, max_roles), np.float32)
        for i in progress_bar(range(n), desc=f"loading {dataset.split}", unit="img", enabled=progress):
            sample = dataset[i]
            a = sample.annotation
            if a.verb not in verbs:
                raise VocabularyError(f"{sample.name}: verb {a.verb!r} is not in the training vocabulary")
            self.images[i], letterbox = preprocess.letterbox(sample.image)
            self.verbs[i] = verbs[a.verb]
            roles = vocabulary.frame(a.verb).roles[:max_roles]
            self.role_mask[i, : len(roles)] = 1.0
            for r, role in enumerate(roles):
                for k, frame in enumerate(a.frames):
                    self.nouns[i, r, k] = nouns[frame[role]]
                box = a.boxes.get(role)
                if box is not None:
                    self.has_box[i, r] = True
                    self.boxes[i, r] = letterbox.boxes_to_input(np.asarray(box))[0]

    def __len__(self) -> int:
        return len(self.names)

    def batch(self, indices: np.ndarray, flip: Optional[np.ndarray] = None) -> Batch:
        """Gather a batch; ``flip`` (bool per sample) mirrors images and boxes left-right."""
        images = self.images[indices]
        boxes = self.boxes[indices].copy()
        if flip is not None and flip.any():
            images[flip] = images[flip][:, :, ::-1]
            boxes[flip, :, 0] = 1.0 - boxes[flip, :, 0]
        return Batch(images=torch.from_numpy(self.preprocess.normalize(images)),
                     verbs=torch.from_numpy(self.verbs[indices]), nouns=torch.from_numpy(self.nouns[indices]),
                     boxes=torch.from_numpy(boxes), has_box=torch.from_numpy(self.has_box[indices]),
                     role_mask=torch.from_numpy(self.role_mask[indices]), index=torch.from_numpy(np.asarray(indices)))
