"""A Predictor scored on an annotated dataset: the GSR metrics of a situation bundle, the
HICO-DET mAP of an interaction bundle. What the INT8 gate, the benchmark's accuracy columns
and ``mipd-edge eval --model`` measure, through exactly the calls a device makes."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Sequence

from .files import PathLike

if TYPE_CHECKING:
    from .deploy.predictor import InteractionPredictor, SituationPredictor


def evaluate_predictor(predictor: SituationPredictor, data_dir: PathLike, split: str = "test", batch_size: int = 16,
                       splits: Optional[Any] = None, progress: bool = False, limit: Optional[int] = None,
                       verbs: Optional[Sequence[str]] = None) -> dict:
    """GSR metrics of a predictor on a dataset split, or its first ``limit`` images (top-5
    roles and gt-verb roles decoded); ``verbs`` keeps only the images of those verbs."""
    return score_predictor(predictor, data_dir, split, batch_size, splits, progress, limit, verbs)[0]


def score_predictor(predictor: SituationPredictor, data_dir: PathLike, split: str = "test", batch_size: int = 16,
                    splits: Optional[Any] = None, progress: bool = False, limit: Optional[int] = None,
                    verbs: Optional[Sequence[str]] = None) -> tuple[dict, dict[str, tuple[str, dict]]]:
    """``evaluate_predictor``'s metrics, and every image's top-1 scores with its gold verb
    (name -> (verb, scores)): what a paired comparison of two precisions resamples."""
    from .data.swig import SituDataset
    from .metrics import evaluate_images

    dataset = SituDataset(data_dir, split)
    keep = None if verbs is None else set(verbs)
    indices = [i for i, name in enumerate(dataset.names) if keep is None or dataset.annotations[name].verb in keep]
    indices = indices[:limit] if limit is not None else indices
    predictions = situation_predictions(predictor, dataset, indices, batch_size, progress)
    annotations = {n: dataset.annotations[n] for n in predictions}
    metrics, scores = evaluate_images(annotations, dataset.space, predictions, splits)
    return metrics, {n: (annotations[n].verb, s["top1"]) for n, s in scores.items()}


def situation_predictions(predictor: SituationPredictor, dataset: Any, indices: Sequence[int], batch_size: int = 16,
                          progress: bool = False) -> dict[str, dict]:
    """A situation predictor's answers for images of a SWiG dataset, as ``mipd-edge eval`` reads
    them: the top-5 verbs with their roles, and the roles of the image's gold verb."""
    from .progress import progress_bar

    predictions = {}
    for start in progress_bar(range(0, len(indices), batch_size), desc=f"predict ({predictor.backend})",
                              unit="batch", enabled=progress):
        samples = [dataset[i] for i in indices[start:start + batch_size]]
        gold = [s.annotation.verb for s in samples]
        for s, situation in zip(samples, predictor._situations([s.image for s in samples], "topk", gold)):
            predictions[s.name] = situation.to_json()
    return predictions


def dataset_predictions(predictor: Any, data_dir: PathLike, split: str, progress: bool = False) -> dict:
    """A bundle's predictions for every image of a split of its task's dataset: the
    ``mipd-edge eval`` predictions file (situations, or HICO-DET detections)."""
    from .data.layouts import dataset_layout

    dataset_layout(predictor.task).check(data_dir)
    if predictor.task == "hoi":
        from .data.hico import image_dir, split_annotations

        return hoi_detections(predictor, split_annotations(data_dir, split), image_dir(data_dir, split),
                              progress=progress)
    from .data.swig import SituDataset

    dataset = SituDataset(data_dir, split)
    return situation_predictions(predictor, dataset, range(len(dataset)), progress=progress)


def hoi_detections(predictor: InteractionPredictor, images: Sequence[Any], folder: PathLike, batch_size: int = 16,
                   progress: bool = False) -> dict[str, list[dict]]:
    """An HOI predictor's detections of the space's classes on annotated images
    (``data.hico.HoiImage``) in ``folder``: the ``mipd-edge eval-hoi`` predictions file."""
    from .progress import progress_bar

    predictions = {}
    for start in progress_bar(range(0, len(images), batch_size), desc=f"predict HOI ({predictor.backend})",
                              unit="batch", enabled=progress):
        chunk = images[start:start + batch_size]
        for image, found in zip(chunk, predictor.detect([Path(folder) / i.file_name for i in chunk], True)):
            predictions[image.file_name] = found
    return predictions


def evaluate_hoi_predictor(predictor: InteractionPredictor, images: Sequence[Any], folder: PathLike,
                           batch_size: int = 16, rare: Sequence[int] = (), zero_shot: Optional[str] = None,
                           progress: bool = False) -> dict:
    """HICO-DET mAP of an HOI predictor on annotated images in ``folder``."""
    from .hoi_metrics import evaluate_hoi

    return evaluate_hoi(images, hoi_detections(predictor, images, folder, batch_size, progress), predictor.space,
                        rare, zero_shot)
