"""Per-epoch evaluation on dev, with checkpoint selection that never looks at unseen verbs.

Metrics are logged with the full vocabulary (every verb, unseen included, as at test
time). The *selection score* that picks the best checkpoint is computed with the training
vocabulary on dev images of training verbs only: mean of top-1 verb accuracy and top-1
grounded value. Choosing epochs by unseen-verb accuracy would leak them into training.
"""

from __future__ import annotations

from typing import Mapping, Optional

from ..data.swig import SituDataset
from ..deploy.preprocess import Preprocess
from ..metrics import evaluate
from ..models.inference import predict_dataset
from ..models.student import Student
from ..vocabulary import Vocabulary
from .loop import Evaluator


def dev_evaluator(dev: SituDataset, eval_vocab: Vocabulary, select_vocab: Vocabulary, split: Optional[Mapping],
                  preprocess: Preprocess, batch_size: int = 64) -> Evaluator:
    def run(model: Student) -> tuple[dict, float]:
        vocabs = {"eval": eval_vocab} if select_vocab is eval_vocab else {"eval": eval_vocab, "select": select_vocab}
        preds = predict_dataset(model, dev, vocabs, preprocess, batch_size)
        metrics = evaluate(dev.annotations, dev.space, preds["eval"], split)
        selectable = {n: a for n, a in dev.annotations.items() if a.verb in select_vocab.frames}
        sel = evaluate(selectable, dev.space, preds["select" if "select" in preds else "eval"])["all"]
        return metrics, (sel["top1"]["verb"] + sel["top1"]["grnd_value"]) / 2
    return run
