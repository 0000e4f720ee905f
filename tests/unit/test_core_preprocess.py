"""core.preprocess: stretch == blobFromImage numerics, letterbox geometry, box round trips."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from yolo_sfn.core.preprocess import Transform, to_network_input


def _img(h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.mark.parametrize("hw", [(480, 640), (416, 416), (100, 37)])
def test_stretch_matches_blob_from_image(hw):
    rgb = _img(*hw)
    batch, t = to_network_input(rgb, (416, 320), "stretch")
    assert batch.shape == (1, 416, 320, 3) and batch.dtype == np.uint8
    bgr = rgb[..., ::-1].copy()
    blob = cv2.dnn.blobFromImage(bgr, 1 / 255, (320, 416), swapRB=True, crop=False)
    np.testing.assert_allclose(
        batch[0].astype(np.float32) / 255, blob[0].transpose(1, 2, 0), atol=1e-6
    )
    assert t.mode == "stretch" and t.pad_xy == (0, 0)
    assert t.src_hw == hw and t.dst_hw == (416, 320)


def test_letterbox_geometry_and_padding():
    rgb = _img(100, 200)
    batch, t = to_network_input(rgb, (416, 416), "letterbox")
    assert t.scale_xy == (416 / 200, 208 / 100)
    assert t.pad_xy == (0, 104)
    assert np.all(batch[0, :104] == 128) and np.all(batch[0, 104 + 208 :] == 128)
    inner = cv2.resize(rgb, (416, 208), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_array_equal(batch[0, 104:312], inner)


def test_letterbox_tall_image():
    _, t = to_network_input(_img(300, 100), (416, 416), "letterbox")
    assert t.pad_xy == ((416 - 139) // 2, 0)
    assert t.scale_xy[1] == 416 / 300


@pytest.mark.parametrize("mode", ["stretch", "letterbox"])
@pytest.mark.parametrize("hw", [(480, 640), (333, 500), (416, 416), (1080, 720)])
def test_box_round_trip(mode, hw):
    _, t = to_network_input(_img(*hw), (416, 416), mode)
    boxes = np.array([[0, 0, hw[1], hw[0]], [10.5, 20.25, 100, 200]], np.float32)
    norm = t.src_to_norm_xyxy(boxes)
    np.testing.assert_allclose(t.norm_to_src_xyxy(norm), boxes, atol=1e-3)
    if mode == "stretch":
        np.testing.assert_allclose(norm[0], [0, 0, 1, 1], atol=1e-6)
    else:  # the whole image maps onto the unpadded area
        px, py = t.pad_xy
        np.testing.assert_allclose(norm[0, :2], [px / 416, py / 416], atol=1e-6)


def test_letterbox_maps_net_pixels_to_source_pixels():
    # a feature at source pixel column 50 of a 200-wide image shows up at 50 * 416/200
    rgb = np.zeros((100, 200, 3), np.uint8)
    rgb[:, 100:] = 255
    batch, t = to_network_input(rgb, (416, 416), "letterbox")
    edge_net = np.argmax(batch[0, 208, :, 0] > 127)
    edge_src = t.norm_to_src_xyxy(np.array([[edge_net / 416, 0.5, 1, 1]], np.float32))[0, 0]
    assert abs(edge_src - 100) < 1.0


@pytest.mark.parametrize("mode", ["stretch", "letterbox"])
def test_src_hw_maps_boxes_of_a_reduced_decode_to_the_original(mode):
    # a 1/4 scale decode of a 6048 x 8064 photo: the same network input, boxes in full pixels
    full_hw, reduced = (6048, 8064), _img(1512, 2016)
    batch, t = to_network_input(reduced, (416, 416), mode, src_hw=full_hw)
    same, t_reduced = to_network_input(reduced, (416, 416), mode)
    np.testing.assert_array_equal(batch, same)
    assert t.src_hw == full_hw and t.pad_xy == t_reduced.pad_xy
    norm = np.array([[0.1, 0.2, 0.6, 0.9]], np.float32)
    np.testing.assert_allclose(t.norm_to_src_xyxy(norm), t_reduced.norm_to_src_xyxy(norm) * 4,
                               rtol=1e-5)
    whole = np.array([[0, 0, 8064, 6048]], np.float32)  # the original maps onto the image area
    px, py = t.pad_xy
    np.testing.assert_allclose(t.src_to_norm_xyxy(whole)[0],
                               [px / 416, py / 416, 1 - px / 416, 1 - py / 416], atol=1e-6)
    with pytest.raises(ValueError, match="src_hw"):
        to_network_input(reduced, (416, 416), mode, src_hw=(0, 8064))


def test_transform_json_round_trip():
    _, t = to_network_input(_img(123, 456), (416, 416), "letterbox")
    d = json.loads(json.dumps(t.to_dict()))
    assert Transform.from_dict(d) == t


def test_bad_inputs():
    with pytest.raises(ValueError, match="mode"):
        to_network_input(_img(10, 10), (32, 32), "crop")
    with pytest.raises(ValueError, match="uint8"):
        to_network_input(np.zeros((10, 10, 3), np.float32), (32, 32))
    with pytest.raises(ValueError, match="RGB"):
        to_network_input(np.zeros((10, 10), np.uint8), (32, 32))
