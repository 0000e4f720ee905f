"""The darknet zoo, CI subset: cfgs converted with random weights at small sizes, each checked
row by row (boxes and scores within 1e-3) against an oracle by ``zoo_check.check``:

* OpenCV's darknet importer (``cv2.dnn.readNetFromDarknet``) for the cfgs it loads and
  computes as darknet does;
* for the others, ``darknet_ref``: an independent numpy forward pass written from darknet's
  layer definitions (its own weights reader, CHW layout, unfolded batch norm, im2col
  convolution, darknet's head formulas). ``mini-features.cfg`` puts every layer type OpenCV
  cannot run into one small network: dilated and shared-weight convs, a weighted shortcut
  with softmax and relu normalization, darknet's partial add, grouped conv, local_avgpool,
  sam, avgpool + scale_channels, dropout, an XNOR conv, reorg3d, a Gaussian_yolo head and a
  new_coords yolo head, on a non-square letter_box input with 3 classes.

The full zoo (every detector cfg of darknet's cfg/ folder) runs by hand:
``python tools/zoo.py DIR`` (see docs/ZOO.md).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

pytest.importorskip("tensorflow")
cv2 = pytest.importorskip("cv2")
if not hasattr(cv2.dnn, "readNetFromDarknet"):
    pytest.skip("cv2.dnn.readNetFromDarknet unavailable (needs opencv < 5)",
                allow_module_level=True)

sys.path.insert(0, str(Path(__file__).resolve().parent))
import zoo_check  # noqa: E402

ZOO = Path(__file__).resolve().parents[2] / "testdata" / "cfg" / "zoo"

# (cfg, size, oracle that must be used)
CASES = [
    pytest.param("mini-features", None, "numpy", id="mini-features-96x64-numpy"),
    pytest.param("mini-v2-reorg", None, "opencv", id="mini-v2-reorg-region-opencv"),
    pytest.param("mini-activations", None, "numpy", id="mini-activations-numpy"),
    pytest.param("yolov3-tiny-prn", 128, "opencv", id="yolov3-tiny-prn-128"),
    pytest.param("enet-coco", 128, "opencv", id="enet-coco-128"),
    pytest.param("yolov4-csp-s-mish", 128, "opencv", id="yolov4-csp-s-mish-128"),
    pytest.param("yolov4-tiny-3l-custom", None, "opencv", id="yolov4-tiny-3l-custom-160x96"),
    pytest.param("yolov7-tiny", 128, "opencv", id="yolov7-tiny-128"),
    pytest.param("yolov4-tiny_contrastive", 128, "numpy", id="yolov4-tiny_contrastive-128"),
    pytest.param("yolov3-tiny_occlusion_track", 128, "numpy", id="occlusion_track-crnn-128"),
    pytest.param("yolov3-tiny_xnor", 128, "numpy", id="yolov3-tiny_xnor-128"),
]


@pytest.mark.zoo
@pytest.mark.parametrize(("name", "size", "oracle"), CASES)
def test_zoo_cfg_matches_its_oracle(name, size, oracle, tmp_path, record_property):
    r = zoo_check.check(ZOO / f"{name}.cfg", tmp_path, size=size, oracle=oracle)
    record_property("max_box", r.max_box)
    record_property("max_score", r.max_score)
    print(f"{name}: {r.oracle} max box {r.max_box:.1e} score {r.max_score:.1e} "
          f"({r.seconds:.1f} s)")
    assert r.converts, r.error
    assert r.oracle == oracle
    assert r.passed, r.error


@pytest.mark.zoo
@pytest.mark.parametrize(
    ("precision", "oracle", "atol"),
    [("fp16", "opencv", (1e-3, 1e-3)), ("int8", "numpy", (5e-2, 3e-2))],
)
def test_zoo_reduced_precision_matches_the_oracle(precision, oracle, atol, tmp_path):
    """fp16 and full-integer int8 (calibrated on testdata/images) of the YOLOv2-style cfg:
    old reorg and a softmax region head survive quantization. int8 goes against the numpy
    oracle: OpenCV's region layer ends in its own NMS, which turns small score differences
    into zeroed scores."""
    r = zoo_check.check(ZOO / "mini-v2-reorg.cfg", tmp_path, precision=precision,
                        oracle=oracle, atol=atol)
    print(f"mini-v2-reorg {precision}: max box {r.max_box:.1e} score {r.max_score:.1e}")
    assert r.converts, r.error
    assert r.passed, r.error


@pytest.mark.zoo
def test_custom_cfg_through_the_cli_pairs_with_opencv_detections(tmp_path, capsys):
    """The way users meet it: ``yolo-sfn model convert`` + ``yolo-sfn detect --nms greedy
    --json`` on a custom cfg (5 classes, other anchors, non-square 160x96), against OpenCV's
    importer + cv2.dnn.NMSBoxesBatched on the same random weights: every detection pairs
    (same class, IoU >= 0.95, score within 0.01)."""
    import json

    import numpy as np
    from test_opencv_oracle import opencv_detections, pair_up

    from yolo_sfn.cli import main
    from yolo_sfn.core.image import load_image_file
    from yolo_sfn.core.preprocess import to_network_input
    from yolo_sfn.darknet.cfg import parse_cfg
    from yolo_sfn.darknet.weights import write_random_weights

    cfg = ZOO / "yolov4-tiny-3l-custom.cfg"
    network = parse_cfg(cfg)
    weights = write_random_weights(network, tmp_path / "w.weights", seed=3)
    names = tmp_path / "names.txt"
    names.write_text("".join(f"k{i}\n" for i in range(5)))
    model = tmp_path / "m.tflite"
    assert main(["model", "convert", "--cfg", str(cfg), "--weights", str(weights), "--names",
                 str(names), "-o", str(model)]) == 0
    capsys.readouterr()
    image = zoo_check.IMAGE
    score = 0.5
    assert main(["detect", "--model", str(model), "--nms", "greedy", "--score", str(score),
                 "--json", str(image)]) == 0
    (result,) = json.loads(capsys.readouterr().out)
    dets = result["detections"]
    ours = (np.array([d["box"] for d in dets]).reshape(-1, 4),
            np.array([d["score"] for d in dets]), np.array([d["class_id"] for d in dets]))
    net = cv2.dnn.readNetFromDarknet(
        str(_write(tmp_path / "cv.cfg", zoo_check.opencv_cfg_text(cfg.read_text(), (96, 160),
                                                                    network))), str(weights))
    batch, transform = to_network_input(load_image_file(image), (96, 160), "stretch")
    ref = opencv_detections(net, batch, transform.src_hw, score, 0.45)
    pairs, lost, extra = pair_up(*ours, *ref)
    print(f"custom tiny-3l: ours {len(dets)}, opencv {len(ref[0])}, paired {len(pairs)}")
    assert len(dets) > 0 and not lost and not extra


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path
