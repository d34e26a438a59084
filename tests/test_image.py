
import cv2
import numpy as np
import pytest

from mipd_edge.deploy.image import load_image
from mipd_edge.errors import InvalidImageError, MipdEdgeError


def test_path_bytes_and_array(tmp_path):
    img = np.random.default_rng(0).integers(0, 255, (30, 40, 3), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "a.png"), img)
    assert np.array_equal(load_image(tmp_path / "a.png"), img)
    assert np.array_equal(load_image(str(tmp_path / "a.png")), img)
    assert np.array_equal(load_image((tmp_path / "a.png").read_bytes()), img)
    assert load_image(img) is img  # a valid BGR array passes through without a copy
    view = img[::2, ::-1]  # a strided view: made contiguous, same pixels
    assert load_image(view).flags.c_contiguous and np.array_equal(load_image(view), view)


def test_arrays_over_the_pixel_limit_are_refused(monkeypatch):
    from mipd_edge.deploy import image

    monkeypatch.setattr(image, "MAX_PIXELS", 100)
    for array in (np.zeros((10, 11, 3), np.uint8), np.zeros((10, 11), np.uint8)):
        with pytest.raises(InvalidImageError, match="11x10 is larger than 100 pixels"):
            load_image(array)
    assert load_image(np.zeros((10, 10, 3), np.uint8)).shape == (10, 10, 3)


def test_gray_rgba_and_16_bit(tmp_path):
    gray = np.full((8, 9), 200, np.uint8)
    assert load_image(gray).shape == (8, 9, 3) and (load_image(gray) == 200).all()
    assert load_image(gray[:, :, None]).shape == (8, 9, 3)
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., :3] = 255
    rgba[0, 0, 3] = 255  # one opaque white pixel, the rest fully transparent
    out = load_image(rgba)
    assert out[0, 0].tolist() == [255, 255, 255] and out[1, 1].tolist() == [127, 127, 127]
    cv2.imwrite(str(tmp_path / "rgba.png"), rgba)
    assert load_image(tmp_path / "rgba.png")[1, 1].tolist() == [127, 127, 127]
    deep = np.full((5, 5, 3), 65535, np.uint16)
    cv2.imwrite(str(tmp_path / "deep.png"), deep)
    assert load_image(tmp_path / "deep.png").dtype == np.uint8
    assert (load_image(deep) == 255).all()


def test_exif_orientation_is_honoured(tmp_path):
    from PIL import Image

    img = Image.new("RGB", (40, 20), (255, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    img.save(tmp_path / "rot.jpg", exif=exif.tobytes())
    assert load_image(tmp_path / "rot.jpg").shape == (40, 20, 3)


def test_pil_image_is_converted_to_bgr():
    from PIL import Image

    out = load_image(Image.new("RGB", (3, 2), (255, 0, 0)))
    assert out.shape == (2, 3, 3) and out[0, 0].tolist() == [0, 0, 255]


@pytest.mark.parametrize("source, message", [
    (b"", "empty"),
    (b"\xff\xd8\xff\xe0 truncated jpeg", "not a readable image"),
    (np.zeros((4, 4, 2), np.uint8), "expected shape"),
    (np.zeros((4, 4, 3), np.float32), "dtype"),
    (np.zeros((0, 4, 3), np.uint8), "empty image"),
    (12345, "unsupported image source"),
])
def test_bad_images_raise_typed_errors(source, message):
    with pytest.raises(InvalidImageError, match=message):
        load_image(source)


def test_missing_file(tmp_path):
    with pytest.raises(MipdEdgeError, match="not found"):
        load_image(tmp_path / "nope.jpg")
