"""A folder of images answered file by file: what ``mipd-edge predict`` writes, line for line,
whether one process runs it or Ray Data's workers do (``serve/cluster.py``).

An unreadable file or an image the model refuses is an answer too (``error`` says why), so a
bad file among thousands is reported and skipped, never the end of the run."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional, Union

import numpy as np

from ..errors import MipdEdgeError
from .image import load_image


@dataclass
class FileAnswer:
    """One file's result: ``line`` is its JSON line (``{"image": source, ...answer}``), ``text``
    the answer as the console shows it, ``ms`` the Predictor call; or ``error``, why it was
    skipped. ``image`` and ``answer`` are kept where the caller draws them (not across Ray)."""

    source: str
    line: str = ""
    text: str = ""
    ms: float = 0.0
    error: str = ""
    image: Optional[np.ndarray] = None
    answer: Any = None


def answer_file(predictor, path: Union[str, Path], keep: bool = False) -> FileAnswer:
    """``predictor``'s answer for the image file at ``path`` (``keep``: with the image and the answer object)."""
    source = str(path)
    try:
        image = load_image(path)
        answer = predictor(image)
    except MipdEdgeError as exc:
        return FileAnswer(source, error=str(exc))
    return FileAnswer(source, json.dumps({"image": source, **answer.to_json()}), str(answer),
                      predictor.timings["total_ms"], image=image if keep else None, answer=answer if keep else None)


def answer_files(predictor, paths: Iterable[Union[str, Path]], keep: bool = False) -> Iterator[FileAnswer]:
    for path in paths:
        yield answer_file(predictor, path, keep)


__all__ = ["FileAnswer", "answer_file", "answer_files"]
