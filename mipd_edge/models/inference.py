"""Running a torch student (or teacher) over a dataset, through the shared post-processing."""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from ..data.hico import HoiImage, HoiSpace
from ..data.swig import SituDataset
from ..deploy.image import load_image
from ..deploy.interactions import InteractionDecoder
from ..deploy.postprocess import SituationDecoder, recognize
from ..deploy.preprocess import Letterbox, Preprocess
from ..files import PathLike
from ..progress import progress_bar
from ..vocabulary import Vocabulary
from .student import HoiStudent, Student


def situation_decoder(model: Student, vocabulary: Vocabulary, top_k: int = 5) -> SituationDecoder:
    return SituationDecoder(vocabulary, float(model.verb_scale().detach()), float(model.noun_scale().detach()),
                            model.cfg.max_roles, top_k)


def torch_decode_fn(model: Student, device: torch.device):
    """The decoder graph as a numpy -> numpy callable, the signature every runtime has."""
    def decode(memory, roles, verb, mask):
        with torch.no_grad():
            t = [torch.from_numpy(a).to(device) for a in (memory, roles, verb, mask)]
            nouns, boxes, exists, _ = model.decode(*t)
        return nouns.float().cpu().numpy(), boxes.float().cpu().numpy(), exists.float().cpu().numpy()
    return decode


def predict_with_model(model_dir: PathLike, data_dir: PathLike, split: str, progress: bool = True) -> dict:
    """Predictions of a trained model (student or teacher folder) for every image of a
    dataset split, against every verb of the dataset's space: the ``mipd-edge eval``
    predictions format of the model's task (SWiG situations, or HICO-DET detections)."""
    from ..text import model_text_encoder
    from .store import load_student

    model, info = load_student(model_dir)
    if info.get("task", "gsr") == "hoi":
        from ..data.hico import find_space, image_dir, split_annotations
        from ..data.hoi_vocabulary import hoi_vocabulary

        space = find_space(data_dir)
        vocab = hoi_vocabulary(space, range(1, len(space.verbs) + 1), model_text_encoder(info))
        return predict_hoi(model, split_annotations(data_dir, split), image_dir(data_dir, split),
                           interaction_decoder(model, vocab, space), Preprocess.from_json(info["preprocess"]),
                           progress=progress)
    data = SituDataset(data_dir, split)
    vocab = Vocabulary.from_space(data.space, model_text_encoder(info))
    return predict_dataset(model, data, {"all": vocab}, Preprocess.from_json(info["preprocess"]),
                           progress=progress)["all"]


@torch.no_grad()
def predict_dataset(model: Student, dataset: SituDataset, vocabularies: dict[str, Vocabulary],
                    preprocess: Preprocess, batch_size: int = 64, device: Optional[torch.device] = None,
                    progress: bool = False, names: Optional[list[str]] = None) -> dict[str, dict]:
    """Predictions (the metrics format, top-5 with roles and ``gt_verb_roles``) per vocabulary.

    Several vocabularies share one encoder pass, which is most of the cost; training uses
    this to log open-vocabulary metrics and select checkpoints on training verbs only.
    """
    device = device or next(model.parameters()).device
    model.eval()
    decode = torch_decode_fn(model, device)
    decoders = {k: situation_decoder(model, v) for k, v in vocabularies.items()}
    out: dict[str, dict] = {k: {} for k in vocabularies}
    names = names if names is not None else dataset.names
    index = {n: i for i, n in enumerate(dataset.names)}
    for start in progress_bar(range(0, len(names), batch_size), desc="predict", unit="batch", enabled=progress):
        chunk = names[start:start + batch_size]
        samples = [dataset[index[n]] for n in chunk]
        prepared = [preprocess(s.image) for s in samples]
        x = torch.from_numpy(np.stack([p[0] for p in prepared])).to(device)
        memory, glance = model.encode(x)
        memory, glance = memory.float().cpu().numpy(), glance.float().cpu().numpy()
        letterboxes = [p[1] for p in prepared]
        for key, decoder in decoders.items():
            gold = [s.annotation.verb if s.annotation.verb in decoder.vocabulary.frames else None for s in samples]
            known = [i for i, g in enumerate(gold) if g is not None]
            situations = recognize(memory[known], glance[known], decode, [letterboxes[i] for i in known], decoder,
                                   roles_for="topk", gold_verbs=[gold[i] for i in known])
            out[key].update({chunk[i]: s.to_json() for i, s in zip(known, situations)})
    return out


RawOutputs = tuple[str, list[np.ndarray], Letterbox]


@torch.no_grad()
def hoi_outputs(model: HoiStudent, images: Sequence[HoiImage], image_dir: Path, preprocess: Preprocess,
                batch_size: int = 32, progress: bool = False) -> list[RawOutputs]:
    """The student's raw outputs per image, to decode once or under several settings."""
    model.eval()
    device = next(model.parameters()).device
    out = []
    for start in progress_bar(range(0, len(images), batch_size), desc="predict HOI", unit="batch", enabled=progress):
        chunk = images[start:start + batch_size]
        prepared = [preprocess(load_image(image_dir / i.file_name)) for i in chunk]
        x = torch.from_numpy(np.stack([p[0] for p in prepared])).to(device)
        memory, _ = model.encode(x)
        outputs = [t.float().cpu().numpy() for t in model.decode(memory)[:5]]
        out += [(image.file_name, [o[i] for o in outputs], letterbox)
                for i, (image, (_, letterbox)) in enumerate(zip(chunk, prepared))]
    return out


def decode_hoi(outputs: Sequence[RawOutputs], decoder: InteractionDecoder) -> dict[str, list[dict]]:
    return {name: decoder.detections(raw, letterbox) for name, raw, letterbox in outputs}


def interaction_decoder(model: HoiStudent, vocabulary: Vocabulary, space: Optional[HoiSpace] = None,
                        verb_bias: Optional[dict[str, float]] = None) -> InteractionDecoder:
    """The numpy decoding every runtime shares, with the student's learnt scales."""
    scales = float(model.verb_scale().detach()), float(model.noun_scale().detach())
    return InteractionDecoder(vocabulary, *scales, space=space, verb_bias=verb_bias)


def predict_hoi(model: HoiStudent, images: Sequence[HoiImage], image_dir: Path, decoder: InteractionDecoder,
                preprocess: Preprocess, batch_size: int = 32, progress: bool = False) -> dict[str, list[dict]]:
    """Detections per image in the ``mipd-edge eval`` format of interactions."""
    return decode_hoi(hoi_outputs(model, images, image_dir, preprocess, batch_size, progress), decoder)
