"""``yolo-sfn detect`` end to end on the tiny TF-built model (see test_core_runtime.py)."""

from __future__ import annotations

import importlib.util
import json
import sys
import types
from pathlib import Path

import cv2
import numpy as np
import pytest

from yolo_sfn.cli import main

pytest.importorskip("tensorflow")

ROOT = Path(__file__).resolve().parents[2]
DOG = ROOT / "testdata" / "images" / "dog.jpg"


def _tiny_builder():
    spec = importlib.util.spec_from_file_location(
        "_tiny_model_for_cli", Path(__file__).with_name("test_core_runtime.py")
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.build_tiny_model


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return _tiny_builder()(tmp_path_factory.mktemp("cli-model"))


@pytest.fixture()
def images(tmp_path) -> dict[str, Path]:
    rng = np.random.default_rng(0)
    good = tmp_path / "noise.png"
    cv2.imwrite(str(good), rng.integers(0, 256, (90, 120, 3), np.uint8))
    text = tmp_path / "text.jpg"
    text.write_text("not an image\n")
    return {"good": good, "dog": DOG, "text": text, "missing": tmp_path / "missing.jpg"}


def _run(capsys, *argv) -> tuple[int, str, str]:
    rc = main(["detect", *map(str, argv)])
    out, err = capsys.readouterr()
    return rc, out, err


def test_json_shape(model, images, capsys):
    rc, out, err = _run(capsys, "--model", model, "--json", images["good"], images["dog"])
    assert rc == 0, err
    res = json.loads(out)
    assert [r["image"] for r in res] == [str(images["good"]), str(images["dog"])]
    assert (res[0]["width"], res[0]["height"]) == (120, 90)
    assert (res[1]["width"], res[1]["height"]) == (768, 576)
    for r in res:
        assert set(r) == {"image", "width", "height", "detections"}
        assert r["detections"], "the tiny model is biased to always find something"
        for d in r["detections"]:
            assert set(d) == {"label", "class_id", "score", "box", "box_norm"}
            assert d["label"] in ("cat", "dog", "bird") and d["score"] >= 0.25
            x1, y1, x2, y2 = d["box"]
            assert 0 <= x1 <= x2 <= r["width"] and 0 <= y1 <= y2 <= r["height"]
            assert all(0 <= v <= 1 for v in d["box_norm"])
        scores = [d["score"] for d in r["detections"]]
        assert scores == sorted(scores, reverse=True)


def test_bad_images_are_reported_and_the_rest_continue(model, images, capsys):
    argv = ["--model", model, "--json", images["text"], images["good"], images["missing"]]
    rc, out, err = _run(capsys, *argv, images["dog"])
    assert rc == 1
    res = json.loads(out)
    assert len(res) == 4
    assert res[0]["error"]["type"] == "ImageDecodeError" and "detections" not in res[0]
    assert res[2]["error"]["type"] == "InputFileError"
    assert "detections" in res[1] and "detections" in res[3]
    lines = err.strip().splitlines()
    assert len(lines) == 2
    assert str(images["text"]) in lines[0] and str(images["missing"]) in lines[1]


def test_table_output_and_options(model, images, capsys):
    rc, out, _ = _run(
        capsys,
        "--model",
        model,
        "--resize",
        "letterbox",
        "--nms",
        "diou",
        "--threads",
        "1",
        "--score",
        "0.3",
        "--iou",
        "0.5",
        images["good"],
    )
    assert rc == 0
    assert out.startswith(f"{images['good']} (120x90): ")
    assert " detections" in out.splitlines()[0]


def test_annotate_writes_images(model, images, capsys, tmp_path):
    outdir = tmp_path / "ann"
    rc, _, _ = _run(capsys, "--model", model, "--annotate", outdir, images["good"], images["dog"])
    assert rc == 0
    written = sorted(p.name for p in outdir.iterdir())
    assert written == [".yolo-sfn-outputs.json", "dog.jpg", "noise.png"]  # + what it wrote
    ann = cv2.imread(str(outdir / "noise.png"))
    assert ann.shape == (90, 120, 3)
    assert not np.array_equal(ann, cv2.imread(str(images["good"])))  # something was drawn


def test_model_errors_exit_2(images, capsys, tmp_path):
    rc, _, err = _run(capsys, "--model", tmp_path / "none.tflite", images["good"])
    assert rc == 2
    assert "none.tflite" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("bad", [["--score", "2"], ["--iou", "x"], ["--threads", "0"], []])
def test_usage_errors_exit_2(bad, images, capsys):
    with pytest.raises(SystemExit) as e:
        main(["detect", *bad, *([str(images["good"])] if bad else [])])
    assert e.value.code == 2


def test_default_model_is_the_demo_model(model, images, capsys, monkeypatch):
    calls = []

    def ensure_demo_model():
        calls.append(1)
        return model

    monkeypatch.setitem(
        sys.modules, "yolo_sfn.demo", types.SimpleNamespace(ensure_demo_model=ensure_demo_model)
    )
    rc, out, _ = _run(capsys, "--json", images["good"])
    assert rc == 0 and calls == [1]
    assert json.loads(out)[0]["detections"]


# --- the real converted yolov3-tiny (tests/conftest.py ``demo_model``) ----------------------
# Expected values: OpenCV's darknet importer on the same weights, its raw yolo heads run
# through our postprocess, agreed with cv2.dnn.NMSBoxesBatched detection for detection.
DOG_EXPECTED = {
    "dog": (0.8289, [124.4, 218.9, 382.3, 518.5]),
    "car": (0.7252, [466.5, 82.5, 686.5, 171.8]),
    "truck": (0.5822, [530.2, 94.1, 630.2, 161.3]),
    "bicycle": (0.3783, [229.3, 196.2, 559.0, 444.9]),
}


def test_demo_model_on_dog(demo_model):
    from yolo_sfn.core.detector import Detector
    from yolo_sfn.core.image import load_image_file

    dets = Detector(demo_model, threads=1).detect(load_image_file(DOG))
    best = {}
    for d in dets:
        best.setdefault(d.label, d)
    assert set(DOG_EXPECTED) <= set(best)
    for label, (score, box) in DOG_EXPECTED.items():
        assert best[label].score == pytest.approx(score, abs=0.02)
        np.testing.assert_allclose(best[label].box, box, atol=3.0)


def test_an_annotated_copy_that_cannot_be_written_leaves_nothing_half_written(
        model, images, capsys, tmp_path, monkeypatch):
    import os

    real_fdopen = os.fdopen

    class DiskFull:
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def write(self, data):
            self.f.write(data[: len(data) // 2])
            raise OSError(28, "No space left on device")

    outdir = tmp_path / "ann"

    def fdopen(fd, *args, **kwargs):  # only the files written into outdir fill the disk
        f = real_fdopen(fd, *args, **kwargs)
        return DiskFull(f) if os.readlink(f"/proc/self/fd/{fd}").startswith(str(outdir)) else f

    if not os.path.isdir("/proc/self/fd"):
        pytest.skip("needs /proc/self/fd")
    monkeypatch.setattr(os, "fdopen", fdopen)
    rc, _, err = _run(capsys, "--model", model, "--annotate", outdir, images["good"])
    assert rc == 1 and "No space left on device" in err
    assert sorted(p.name for p in outdir.iterdir()) == [".yolo-sfn-outputs.json"]


def test_ctrl_c_prints_the_images_done_so_far(model, images, capsys, tmp_path, monkeypatch):
    import yolo_sfn.core.image as image

    real = image.read_image_bytes
    seen = []

    def interrupt_at_second(path, **kw):
        seen.append(path)
        if len(seen) == 2:
            raise KeyboardInterrupt
        return real(path, **kw)

    monkeypatch.setattr(image, "read_image_bytes", interrupt_at_second)
    rc, out, err = _run(capsys, "--model", model, "--json", images["good"], images["dog"])
    assert rc == 130 and "interrupted after 1 of 2 images" in err
    assert [r["image"] for r in json.loads(out)] == [str(images["good"])]


def _letter_box_copy(model: Path, directory: Path) -> Path:
    """``model`` as if converted from a cfg with ``letter_box=1`` (sidecar ``letter_box: true``)."""
    import shutil

    copy = directory / "letter-box.tflite"
    shutil.copyfile(model, copy)
    meta = json.loads(Path(f"{model}.json").read_text())
    Path(f"{copy}.json").write_text(json.dumps({**meta, "letter_box": True}))
    return copy


def test_resize_defaults_to_the_models_own(demo_model, tmp_path, capsys):
    """No --resize: letterbox for a letter_box model, stretch for the others."""
    from yolo_sfn.core.detector import Detector
    from yolo_sfn.core.image import load_image_file

    boxed = _letter_box_copy(Path(demo_model), tmp_path)
    rgb = load_image_file(DOG)
    by_mode = {mode: [d.to_dict() for d in Detector(demo_model, resize=mode).detect(rgb)]
               for mode in ("stretch", "letterbox")}
    assert by_mode["stretch"] != by_mode["letterbox"]
    assert Detector(boxed).resize == "letterbox" and Detector(demo_model).resize == "stretch"
    for model, mode in ((boxed, "letterbox"), (demo_model, "stretch")):
        rc, out, err = _run(capsys, "--model", model, "--json", DOG)
        assert rc == 0, err
        assert json.loads(out)[0]["detections"] == by_mode[mode], (model, mode)
    rc, out, err = _run(capsys, "--model", boxed, "--resize", "stretch", "--json", DOG)
    assert rc == 0 and json.loads(out)[0]["detections"] == by_mode["stretch"]
