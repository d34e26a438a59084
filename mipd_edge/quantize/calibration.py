"""Calibration and validation images, pre-processed exactly as the runtimes will see them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from ..progress import progress_bar

from ..data.split import load_split
from ..data.swig import SituDataset
from ..errors import MipdEdgeError
from ..preprocess import Preprocess


def calibration_images(data_dir: Path, preprocess: Preprocess, count: int = 300, seed: int = 0,
                       progress: bool = True) -> np.ndarray:
    """``count`` images of the training split (its open-vocabulary view: no unseen verb), (N, 3, S, S)."""
    split_file = Path(data_dir) / "splits.json"
    dataset = SituDataset(data_dir, "train", ov_split=load_split(split_file) if split_file.is_file() else None)
    if len(dataset) == 0 or count < 1:
        raise MipdEdgeError(f"no calibration images: {data_dir} has an empty training split or --calib-size < 1")
    picks = np.random.default_rng(seed).permutation(len(dataset))[:count]
    out = np.empty((len(picks), 3, preprocess.size, preprocess.size), np.float32)
    for j, i in enumerate(progress_bar(picks, desc="calibration images", unit="img", enabled=progress)):
        out[j] = preprocess(dataset[int(i)].image)[0]
    return out
