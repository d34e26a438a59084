"""Where each task's images are in a dataset folder: situations in the SWiG layout, interactions
in the HICO-DET layout. A folder is read as the dataset of the task of the model or bundle
that uses it (``info["task"]``, ``bundle.json``'s ``model.task``), never guessed from which
files it happens to hold; a folder of another layout is a clear error.

Export verifies its graphs on a split's images, quantization calibrates on the training
images of the open-vocabulary view, the benchmark times real images: all through here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from ..errors import DatasetError
from ..files import PathLike
from .swig import SPACE_FILES

ImageLoader = Callable[[], np.ndarray]  # reads one image, BGR uint8, when called


@dataclass(frozen=True)
class DatasetLayout:
    task: str
    describe: str
    markers: tuple[str, ...]  # a dataset of this layout holds one of these files
    declared_by: tuple[str, ...]  # the files that declare a dataset's vocabulary (and so its task)

    def check(self, data_dir: PathLike) -> Path:
        """``data_dir`` if it is a dataset of this layout, else a ``DatasetError`` that says what is expected."""
        data_dir = Path(data_dir)
        if not any((data_dir / marker).is_file() for marker in self.markers):
            raise DatasetError(f"{data_dir} is not {self.describe} (no {' or '.join(self.markers)}), which a "
                               f"{self.task} model reads")
        return data_dir

    def images(self, data_dir: PathLike, split: str, zero_shot: Optional[str] = None) -> list[ImageLoader]:
        """A loader per image of ``split``; ``train`` is the open-vocabulary training view (no
        unseen verb, or no image whose every pair is of a ``zero_shot`` split's unseen class)."""
        raise NotImplementedError


class SituationLayout(DatasetLayout):
    def images(self, data_dir, split, zero_shot=None):
        from .split import dataset_split
        from .swig import SituDataset

        data_dir = self.check(data_dir)
        view = dataset_split(data_dir, required=False) if split == "train" else None
        dataset = SituDataset(data_dir, split, ov_split=view)
        return [lambda i=i: dataset[i].image for i in range(len(dataset))]


class InteractionLayout(DatasetLayout):
    def images(self, data_dir, split, zero_shot=None):
        from ..deploy.image import load_image
        from .hico import image_dir, split_annotations, training_images

        data_dir = self.check(data_dir)
        if split == "train":  # HICO-DET's trainval, as the students train on it
            folder, annotated = image_dir(data_dir, "trainval"), training_images(data_dir, zero_shot)[1]
        else:  # HICO-DET has no dev split: its test images
            folder, annotated = image_dir(data_dir, "test"), split_annotations(data_dir, "test")
        return [lambda f=folder / a.file_name: load_image(f) for a in annotated]


LAYOUTS: dict[str, DatasetLayout] = {layout.task: layout for layout in (
    SituationLayout("gsr", "a SWiG-format dataset", SPACE_FILES, SPACE_FILES),
    InteractionLayout("hoi", "an HOI dataset in the HICO-DET layout", ("trainval_hico.json", "test_hico.json"),
                      ("hoi_space.json", "trainval_hico.json", "test_hico.json")),
)}


def dataset_layout(task: str) -> DatasetLayout:
    if task not in LAYOUTS:
        raise DatasetError(f"no dataset layout for task {task!r}; known: {', '.join(LAYOUTS)}")
    return LAYOUTS[task]


def dataset_task(data_dir: PathLike) -> str:
    """The task of a dataset, from the file that declares its vocabulary: a SWiG space file
    (``imsitu_space.json``) makes a situation dataset; ``hoi_space.json``, or HICO-DET's own
    annotation files (whose vocabulary is HICO-DET's), an interaction dataset."""
    data_dir = Path(data_dir)
    found = [layout.task for layout in LAYOUTS.values()
             if any((data_dir / marker).is_file() for marker in layout.declared_by)]
    if len(found) != 1:
        kinds = " or ".join(f"{layout.describe} ({', '.join(layout.declared_by)})" for layout in LAYOUTS.values())
        raise DatasetError(f"{data_dir} holds both {kinds}: keep one dataset per folder" if found else
                           f"{data_dir} is not a dataset: expected {kinds}")
    return found[0]


def space_task(space_file: PathLike) -> str:
    """The task a vocabulary file declares: an HOI space lists interaction classes, a SWiG
    space maps each verb to its frame."""
    from ..files import read_json

    space = read_json(space_file, "space file")
    if isinstance(space, dict) and "classes" in space:
        return "hoi"
    if isinstance(space, dict) and isinstance(space.get("verbs"), dict):
        return "gsr"
    raise DatasetError(f"{space_file}: neither a SWiG space (verbs with frames) nor an HOI space (classes)")
