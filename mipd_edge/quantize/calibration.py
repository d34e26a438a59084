"""Calibration and validation images, pre-processed exactly as the runtimes will see them."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Optional

import numpy as np

from ..data.layouts import dataset_layout
from ..deploy.bundle import BundleManifest
from ..deploy.preprocess import Preprocess
from ..errors import MipdEdgeError
from ..progress import progress_bar


def calibration_images(data_dir: Path, task: str, preprocess: Preprocess, count: int = 300, seed: int = 0,
                       progress: bool = True, zero_shot: Optional[str] = None) -> np.ndarray:
    """``count`` training images, (N, 3, S, S), of the task's dataset in its open-vocabulary
    view: no unseen verb of a situation dataset, no image whose every pair is of an unseen
    class (``zero_shot``) of an interaction dataset."""
    images = dataset_layout(task).images(data_dir, "train", zero_shot)
    if len(images) == 0 or count < 1:
        raise MipdEdgeError(f"no calibration images: {data_dir} has an empty training split or --calib-size < 1")
    picks = np.random.default_rng(seed).permutation(len(images))[:count]
    out = np.empty((len(picks), 3, preprocess.size, preprocess.size), np.float32)
    for j, i in enumerate(progress_bar(picks, desc="calibration images", unit="img", enabled=progress)):
        out[j] = preprocess(images[int(i)]())[0]
    return out


def hoi_selection(manifest: BundleManifest, data_dir: Path, info: Mapping[str, Any]) -> tuple[Any, set[str], list]:
    """What INT8 model selection may see of an HOI student's data: its HOI space, the names of
    the seen verbs, and the held-out training images it was selected on (no unseen class)."""
    from ..data.hico import HoiSpace, dev_holdout, seen_verbs, training_images

    space = HoiSpace.from_json(manifest.hoi_space)
    zero_shot = info["data"].get("zero_shot")
    seen = {space.verbs[v - 1] for v in seen_verbs(space, zero_shot)}
    return space, seen, dev_holdout(training_images(data_dir, zero_shot)[1], int(info["train"]["seed"]))[1]
