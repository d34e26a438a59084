import cv2
import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from mipd_edge.deploy.preprocess import Preprocess
from mipd_edge.errors import InvalidImageError, MipdEdgeError
from mipd_edge.models import STUDENT_CONFIGS, create_student
from mipd_edge.models.backbones import build_backbone
from mipd_edge.models.teacher import roi_pool


@pytest.mark.parametrize("name", ["edge-xs", "edge-s"])
def test_student_graphs_shapes(name):
    model = create_student(name, image_size=96).eval()
    x = torch.randn(2, 3, 96, 96)
    memory, glance = model.encode(x)
    assert memory.shape == (2, 36, model.cfg.d_model) and glance.shape == (2, 384)
    assert torch.allclose(glance.norm(dim=-1), torch.ones(2), atol=1e-5)
    roles = torch.randn(2, 6, 384)
    mask = torch.tensor([[1, 1, 0, 0, 0, 0], [1, 1, 1, 1, 1, 1]], dtype=torch.float32)
    nouns, boxes, exists, feats = model.decode(memory, roles, torch.randn(2, 384), mask)
    assert nouns.shape == (2, 6, 384) and boxes.shape == (2, 6, 4) and exists.shape == (2, 6)
    assert ((boxes >= 0) & (boxes <= 1)).all()
    # padding roles do not change the real roles' outputs
    roles2 = roles.clone()
    roles2[0, 2:] = torch.randn(4, 384)
    nouns2, *_ = model.decode(memory, roles2, torch.zeros(2, 384) + 0, mask)
    nouns1, *_ = model.decode(memory, roles, torch.zeros(2, 384), mask)
    assert torch.allclose(nouns1[0, :2], nouns2[0, :2], atol=1e-5)


def test_configs_and_overrides():
    assert set(STUDENT_CONFIGS) == {"edge-xs", "edge-s", "reference", "authors", "clip"}
    small = create_student("edge-s", d_model=64, heads=2, image_size=64)
    assert small.cfg.d_model == 64 and small.cfg.name == "edge-s"
    with torch.device("meta"):  # sizes without allocating the authors' 300M parameters
        sizes = {n: sum(p.numel() for p in create_student(n).parameters()) for n in STUDENT_CONFIGS if n != "clip"}
    assert sizes["edge-xs"] < sizes["edge-s"] < sizes["reference"] < sizes["authors"]
    with pytest.raises(MipdEdgeError, match="unknown student"):
        create_student("huge")
    with pytest.raises(MipdEdgeError, match="multiple of 32"):
        create_student("edge-s", image_size=100)


def test_the_authors_student_architecture():
    """CLIP ViT-L/14-336 tokens, a 512-d projection and one decoder layer over all 577 tokens
    (GitHub caicch/Ov-GSR); checked at full size on the meta device, run narrowed."""
    with torch.device("meta"):
        full = create_student("authors")
    assert full.tokens == 577 and full.backbone.width == 1024 and len(full.backbone.blocks) == 24
    assert 300e6 < sum(p.numel() for p in full.backbone.parameters()) < 310e6  # ViT-L/14's image tower
    assert len(full.decoder) == 1 and full.cfg.d_model == 512 and full.decoder[0].mlp[0].out_features == 2048
    model = create_student("authors", width=1 / 16, image_size=56, d_model=32, heads=2, ffn=64).eval()
    memory, glance = model.encode(torch.randn(2, 3, 56, 56))
    assert memory.shape == (2, 17, 32) and glance.shape == (2, 384)  # [CLS] + 4 x 4 patches of 14 px
    nouns, boxes, exists, _ = model.decode(memory, torch.randn(2, 6, 384), torch.randn(2, 384), torch.ones(2, 6))
    assert nouns.shape == (2, 6, 384) and boxes.shape == (2, 6, 4) and exists.shape == (2, 6)
    with pytest.raises(MipdEdgeError, match="multiple of the patch size"):
        create_student("authors", width=1 / 16, image_size=60)


def test_backbone_weights_from_a_local_file(tmp_path):
    source = build_backbone("resnet18", 0.5)
    state = {k: v.clone() for k, v in source.state_dict().items()}
    state["fc.weight"] = torch.zeros(10, 256)  # a classifier head is ignored
    save_file(state, tmp_path / "r18.safetensors")
    model = create_student("edge-s", backbone_weights=str(tmp_path / "r18.safetensors"))
    assert torch.equal(model.backbone.conv1.weight, source.conv1.weight)
    save_file({"conv1.weight": torch.zeros(1)}, tmp_path / "bad.safetensors")
    with pytest.raises(MipdEdgeError, match="does not fit"):
        create_student("edge-s", backbone_weights=str(tmp_path / "bad.safetensors"))
    with pytest.raises(MipdEdgeError, match="not found"):
        create_student("edge-s", backbone_weights=str(tmp_path / "none.safetensors"))


def test_roi_pool_takes_the_patches_inside_the_box():
    patches = torch.zeros(1, 4, 4, 2)
    patches[0, :2, :2, 0] = 1.0  # top-left quadrant points along x
    patches[0, 2:, 2:, 1] = 1.0  # bottom-right along y
    boxes = torch.tensor([[[0.25, 0.25, 0.5, 0.5], [0.75, 0.75, 0.5, 0.5], [0.1, 0.1, 0.01, 0.01], [0, 0, 0, 0]]])
    has = torch.tensor([[True, True, True, False]])
    pooled = roi_pool(patches, boxes, has)
    assert torch.allclose(pooled[0, 0], torch.tensor([1.0, 0.0]))
    assert torch.allclose(pooled[0, 1], torch.tensor([0.0, 1.0]))
    assert torch.allclose(pooled[0, 2], torch.tensor([1.0, 0.0]))  # a tiny box takes the cell under its centre
    assert torch.allclose(pooled[0, 3], torch.tensor([1.0, 1.0]) / 2 ** 0.5)  # no box: the whole image


def test_letterbox_round_trip_and_normalisation():
    prep = Preprocess(64)
    image = np.zeros((50, 100, 3), np.uint8)
    image[:, :, 2] = 255  # red in BGR
    x, box = prep(image)
    assert x.shape == (3, 64, 64) and x.dtype == np.float32
    assert box.scale == 0.64 and box.pad_y == 16 and box.pad_x == 0
    red = (1.0 - 0.485) / 0.229
    assert np.isclose(x[0, 32, 32], red) and np.isclose(x[0, 0, 0], (114 / 255 - 0.485) / 0.229)
    pixels = np.array([[10.0, 5.0, 60.0, 45.0]])
    assert np.allclose([box.box_to_image(b) for b in box.boxes_to_input(pixels)], pixels, atol=1e-4)
    assert np.allclose(box.box_to_image([0.5, 0.5, 2.0, 2.0]), [0, 0, 100, 50])  # clipped


@pytest.mark.parametrize("shape", [(50, 100, 3), (100, 50, 3), (64, 64, 3), (32, 64, 3), (64, 30, 3), (7, 200, 3),
                                   (96, 95, 3)])  # the last is 63 px wide in the canvas: a 1-px column of padding
def test_letterbox_canvas_equals_resize_then_border(shape):
    """Every shape, wide, tall, square, already at size or one pixel short of it, gives exactly
    what a plain resize followed by a constant border gives."""
    image = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    canvas, box = Preprocess(64).letterbox(image)
    nw, nh = round(shape[1] * box.scale), round(shape[0] * box.scale)
    resized = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_LINEAR) if (nw, nh) != shape[1::-1] else image
    px, py = int(box.pad_x), int(box.pad_y)
    expected = cv2.copyMakeBorder(resized, py, 64 - nh - py, px, 64 - nw - px, cv2.BORDER_CONSTANT, value=(114,) * 3)
    assert canvas.shape == (64, 64, 3) and np.array_equal(canvas, expected)


def test_one_pass_padding_and_normalisation_equals_the_two_steps():
    """``blob`` (what the Predictor feeds backends that take normalised input) pads and
    normalises fitted images of every shape, in a batch of mixed shapes, exactly as ``pad``
    then ``normalize`` do (what training sees)."""
    prep = Preprocess(64)
    rng = np.random.default_rng(1)
    shapes = [(50, 100, 3), (100, 50, 3), (64, 64, 3), (7, 200, 3), (96, 95, 3), (1, 1, 3), (300, 2, 3), (63, 64, 3)]
    fitted = [prep.fit(rng.integers(0, 256, s, dtype=np.uint8))[0] for s in shapes]
    assert all(max(f.shape[:2]) == 64 for f in fitted)
    blob = prep.blob(fitted)
    assert blob.shape == (len(shapes), 3, 64, 64)
    assert np.array_equal(blob, prep.normalize(np.stack([prep.pad(f) for f in fitted])))


def test_padding_refuses_images_that_were_not_fitted():
    prep = Preprocess(64)
    for image, message in ((np.zeros((70, 64, 3), np.uint8), "fitted to 64 px"),
                           (np.zeros((32, 50, 3), np.uint8), "fitted to 64 px"),
                           (np.zeros((64, 64), np.uint8), "BGR uint8")):
        for step in (prep.pad, lambda x: prep.blob([x])):
            with pytest.raises(InvalidImageError, match=message):
                step(image)
