"""core.annotate: drawing never mutates the input; files are written by extension."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from yolo_sfn.core.annotate import annotate_file, class_color_rgb, draw_detections
from yolo_sfn.core.postprocess import Detection
from yolo_sfn.errors import InputFileError

DETS = [
    Detection("dog", 16, 0.9, (10.0, 0.0, 60.0, 40.0), (0.1, 0.0, 0.6, 0.5)),  # tag inside
    Detection("car", 2, 0.5, (70.0, 50.0, 100.0, 80.0), (0.7, 0.6, 1.0, 1.0)),  # at the edge
]


def test_draw_does_not_mutate_and_draws_class_colours():
    rgb = np.zeros((80, 100, 3), np.uint8)
    out = draw_detections(rgb, DETS)
    assert rgb.max() == 0 and out.shape == rgb.shape and out.dtype == np.uint8
    assert tuple(out[20, 10]) == class_color_rgb(16)  # left edge of the dog box
    assert class_color_rgb(16) != class_color_rgb(2)


def test_boxes_in_full_size_pixels_draw_on_a_reduced_decode():
    # DETS are in the pixels of an 80 x 100 picture decoded here at 1/2 scale (40 x 50)
    half = draw_detections(np.zeros((40, 50, 3), np.uint8), DETS, src_hw=(80, 100))
    full = draw_detections(np.zeros((80, 100, 3), np.uint8), DETS)
    assert tuple(half[32, 35]) == class_color_rgb(2)  # the car box's left edge, x = 70 / 2
    assert tuple(full[65, 70]) == class_color_rgb(2)
    assert tuple(draw_detections(np.zeros((40, 50, 3), np.uint8), DETS)[32, 35]) == (0, 0, 0)
    assert np.array_equal(draw_detections(np.zeros((80, 100, 3), np.uint8), DETS,
                                          src_hw=(80, 100)), full)


def test_empty_detections_copy():
    rgb = np.full((10, 10, 3), 7, np.uint8)
    out = draw_detections(rgb, [])
    assert np.array_equal(out, rgb) and out is not rgb


@pytest.mark.parametrize("ext", [".png", ".jpg", ".webp", ".bmp"])
def test_annotate_file_by_extension(tmp_path, ext):
    rgb = np.zeros((80, 100, 3), np.uint8)
    p = annotate_file(tmp_path / f"a{ext}", rgb, DETS)
    back = cv2.imread(str(p))
    assert back.shape == (80, 100, 3)


def test_annotate_file_errors(tmp_path):
    rgb = np.zeros((8, 8, 3), np.uint8)
    with pytest.raises(InputFileError, match="extension"):
        annotate_file(tmp_path / "a.nope", rgb, [])
    with pytest.raises(InputFileError, match="cannot write"):
        annotate_file(tmp_path / "missing-dir" / "a.png", rgb, [])
