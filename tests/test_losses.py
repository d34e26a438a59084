import math

import pytest
import torch

from mipd_edge.train.data import Batch
from mipd_edge.train.losses import (
    LossWeights,
    annotator_cross_entropy,
    cosine_alignment,
    cxcywh_to_xyxy,
    generalized_iou,
    gsr_losses,
    knowledge_distance,
    negative_hinge,
    soft_label_kl,
)


def test_giou_hand_cases():
    a = torch.tensor([[0.0, 0.0, 2.0, 2.0]])
    assert generalized_iou(a, a).item() == 1.0
    # half overlap: IoU 2/6, hull 6 = union -> GIoU = IoU
    assert math.isclose(generalized_iou(a, torch.tensor([[1.0, 0.0, 3.0, 2.0]])).item(), 2 / 6, rel_tol=1e-6)
    # disjoint: IoU 0, hull 3x2=6, union 2 (1x1 + 1x1) -> -(6-2)/6
    g = generalized_iou(torch.tensor([[0.0, 0.0, 1.0, 1.0]]), torch.tensor([[2.0, 1.0, 3.0, 2.0]]))
    assert math.isclose(g.item(), -(6 - 2) / 6, rel_tol=1e-6)
    assert torch.allclose(cxcywh_to_xyxy(torch.tensor([0.5, 0.5, 0.2, 0.4])), torch.tensor([0.4, 0.3, 0.6, 0.7]))


def test_annotator_cross_entropy_averages_over_annotators():
    logits = torch.log(torch.tensor([[[0.5, 0.25, 0.25]]]))
    nouns = torch.tensor([[[0, 1, -1]]])  # two annotators, third missing
    valid = torch.tensor([[True]])
    expected = -(math.log(0.5) + math.log(0.25)) / 2
    assert math.isclose(annotator_cross_entropy(logits, nouns, valid).item(), expected, rel_tol=1e-6)


def make_batch():
    return Batch(images=torch.zeros(1, 3, 4, 4), verbs=torch.tensor([1]), nouns=torch.tensor([[[0, 0, 0], [1, 1, 1]]]),
                 boxes=torch.tensor([[[0.5, 0.5, 0.2, 0.2], [0, 0, 0, 0]]]), has_box=torch.tensor([[True, False]]),
                 role_mask=torch.tensor([[1.0, 1.0]]), index=torch.tensor([0]))


def test_gsr_losses_zero_box_error_and_terms():
    batch = make_batch()
    out = {"boxes": batch.boxes.clone(), "exists": torch.tensor([[20.0, -20.0]])}
    verb_logits = torch.tensor([[0.0, 30.0]])
    noun_logits = torch.tensor([[[30.0, 0.0], [0.0, 30.0]]])
    losses = gsr_losses(out, batch, verb_logits, noun_logits, LossWeights())
    assert set(losses) == {"verb", "noun", "box_l1", "box_giou", "exists"}
    assert all(v.item() < 1e-6 for v in losses.values())
    wrong = gsr_losses({**out, "boxes": torch.tensor([[[0.1, 0.1, 0.1, 0.1], [0, 0, 0, 0]]])}, batch, verb_logits,
                       noun_logits)
    assert wrong["box_l1"].item() > 0.5 and wrong["box_giou"].item() > 1.0


def test_distillation_terms():
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    assert cosine_alignment(x, x).item() == 0.0
    assert math.isclose(cosine_alignment(x, torch.tensor([[0.0, 1.0], [0.0, 1.0]]), torch.tensor([True, False])).item(),
                        1.0)
    logits = torch.tensor([[1.0, 2.0, 3.0]])
    assert abs(soft_label_kl(logits, logits).item()) < 1e-6
    assert soft_label_kl(logits, torch.tensor([[3.0, 2.0, 1.0]])).item() > 0.1


def test_label_smoothing_by_hand():
    """(1 - e) * NLL + e * mean over classes of -log p, as the authors' LabelSmoothing computes."""
    batch = make_batch()
    out = {"boxes": batch.boxes.clone(), "exists": torch.tensor([[20.0, -20.0]])}
    verb_logits = torch.tensor([[0.0, 2.0, 1.0]])  # gold verb 1
    noun_logits = torch.tensor([[[1.0, 0.0], [0.0, 3.0]]])  # gold nouns 0 and 1, every annotator agrees
    log_v = verb_logits.log_softmax(-1)[0]
    log_n = noun_logits.log_softmax(-1)[0]
    expected_verb = 0.7 * -log_v[1] + 0.3 * -log_v.mean()
    expected_noun = ((0.8 * -log_n[0, 0] + 0.2 * -log_n[0].mean()) + (0.8 * -log_n[1, 1] + 0.2 * -log_n[1].mean())) / 2
    weights = LossWeights(verb_smoothing=0.3, noun_smoothing=0.2, noun=3.0)
    losses = gsr_losses(out, batch, verb_logits, noun_logits, weights)
    assert math.isclose(losses["verb"].item(), expected_verb.item(), rel_tol=1e-6)
    assert math.isclose(losses["noun"].item(), 3 * expected_noun.item(), rel_tol=1e-6)
    plain = gsr_losses(out, batch, verb_logits, noun_logits, LossWeights())
    assert math.isclose(plain["verb"].item(), -log_v[1].item(), rel_tol=1e-6)


def test_the_authors_loss_shapes_by_hand():
    """L1 distance: the mean absolute difference; the hinge: relu(cos) over present negatives."""
    x, target = torch.tensor([[1.0, 0.0], [0.0, 2.0]]), torch.tensor([[0.0, 0.0], [0.0, 1.0]])
    assert knowledge_distance(x, target, shape="l1") == pytest.approx((0.5 + 0.5) / 2)
    assert knowledge_distance(x, target, torch.tensor([False, True]), shape="l1") == pytest.approx(0.5)
    assert knowledge_distance(x, target, shape="cosine") == pytest.approx(0.5)  # 1 - cos: 1 and 0
    negatives = torch.tensor([[[1.0, 1.0], [-1.0, 0.0]], [[0.0, 1.0], [5.0, 5.0]]])
    present = torch.tensor([[True, True], [True, False]])
    # cos: row 0 with (1, 1) 0.707 and with (-1, 0) -1 -> relu 0; row 1 with (0, 1) 1; (5, 5) absent
    assert negative_hinge(x, negatives, present) == pytest.approx((2 ** -0.5 + 0 + 1) / 3)
