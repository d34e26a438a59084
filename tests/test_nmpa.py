import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mipd_edge.train.config import MipdConfig
from mipd_edge.train.nmpa import (
    AlignmentData,
    NmpaConfig,
    alignment_report,
    negative_weights,
    nmpa_loss,
    train_prompts,
)
from mipd_edge.train.prompts import InstancePrompt, ScenePrompt
from mipd_edge.train.teacher_cache import TeacherCache


def unit(*rows):
    return F.normalize(torch.tensor(rows, dtype=torch.float32), dim=-1)


def test_loss_prefers_the_positive_and_weights_hard_negatives():
    pos, neg = unit([1, 0, 0]), unit([0, 1, 0])[:, None]
    w = torch.ones(1, 1)
    at_positive = nmpa_loss(unit([1, 0, 0]), pos, neg, w)
    at_negative = nmpa_loss(unit([0, 1, 0]), pos, neg, w)
    assert at_positive < at_negative
    between = unit([1, 1, 0])
    assert nmpa_loss(between, pos, neg, 3 * w) > nmpa_loss(between, pos, neg, w)  # heavier negative, larger loss
    assert torch.isclose(nmpa_loss(between, pos, neg, torch.zeros(1, 1)), torch.tensor(0.0), atol=1e-6)
    # other rows' positives count as negatives only where allowed
    two_pos = unit([1, 0, 0], [0, 0, 1])
    k = unit([1, 0, 0.5], [0.5, 0, 1])
    with_batch = nmpa_loss(
        k, two_pos, torch.zeros(2, 0, 3), torch.zeros(2, 0), batch_negatives=~torch.eye(2, dtype=bool)
    )
    assert with_batch > nmpa_loss(k, two_pos, torch.zeros(2, 0, 3), torch.zeros(2, 0))


def test_negative_weights_grow_with_plausibility():
    w = negative_weights(np.array([[0.5, 0.1, 0.0]]), np.array([[True, True, False]]), strength=1.0)
    assert w[0, 2] == 0 and w[0, 0] > w[0, 1] > 1.0


def test_prompt_shapes():
    s = ScenePrompt(16, 8)(torch.randn(3, 16))
    i = InstancePrompt(16, 8)(torch.randn(3, 2, 16), torch.randn(3, 16), torch.randn(3, 2, 8))
    assert s.shape == (3, 8) and i.shape == (3, 2, 8)
    assert torch.allclose(s.norm(dim=-1), torch.ones(3)) and torch.allclose(i.norm(dim=-1), torch.ones(3, 2))


@pytest.mark.parametrize("hinge", [False, True])
def test_training_moves_knowledge_toward_positives_and_away_from_negatives(hinge):
    """A tiny world: 4 classes, teacher features noisy per class, one rationale per class;
    with our weighted InfoNCE and with the authors' cosine hinge alike."""
    rng = np.random.default_rng(0)
    n, classes, t_dim, d = 128, 4, 16, 12
    labels = rng.integers(0, classes, n)
    centres = rng.normal(size=(classes, t_dim))
    teacher = centres[labels] + 0.3 * rng.normal(size=(n, t_dim))
    teacher /= np.linalg.norm(teacher, axis=1, keepdims=True)
    texts = rng.normal(size=(classes, d)).astype(np.float32)
    texts /= np.linalg.norm(texts, axis=1, keepdims=True)
    others = np.array([[c for c in range(classes) if c != y] for y in labels])
    data = AlignmentData(
        scene_pos=texts[labels],
        scene_neg=texts[others],
        scene_w=np.ones((n, classes - 1), np.float32),
        inst_pos=texts[labels][:, None],
        inst_neg=texts[others][:, None],
        inst_w=np.ones((n, 1, classes - 1), np.float32),
        roles=np.zeros((n, 1, d), np.float32),
        valid=np.ones((n, 1), bool),
    )
    cache = TeacherCache("k", [str(i) for i in range(n)], teacher.astype(np.float16),
                         teacher[:, None].astype(np.float16), np.zeros((n, 1), np.float32), ["v"], 10.0)
    scene, instance, losses = train_prompts(cache, data, NmpaConfig(epochs=40, batch_size=32),
                                            MipdConfig(losses="authors" if hinge else "ours"), progress=False)
    with torch.no_grad():
        g = torch.from_numpy(teacher.astype(np.float32))
        ks = scene(g).numpy()
        ki = instance(g[:, None], g, torch.from_numpy(data.roles)).numpy()
    report = alignment_report(ks, ki, data)
    before = alignment_report(np.zeros_like(ks) + ks.mean(0), np.zeros_like(ki) + ki.mean((0, 1)), data)
    assert report["scene_pos_cos"] > 0.6 and report["scene_pos_cos"] - report["scene_neg_cos"] > 0.5
    assert report["instance_pos_cos"] > 0.6 and report["instance_pos_cos"] - report["instance_neg_cos"] > 0.5
    assert before["scene_pos_cos"] - before["scene_neg_cos"] < 0.2  # a knowledge-free constant cannot separate
    assert losses["scene"] < 0.5 + 0.5 * hinge  # the hinge never reaches 0 on orthogonal negatives
