"""``yolo-sfn run`` / ``detect`` on a folder like a user's own (issue 10), on the real project.

One folder holds odd names (newline, tab, a byte that is not UTF-8, ``%``, ``#``, ``?``, a
backslash, emoji, a 250-byte name), files that are not images (``.DS_Store``, ``notes.txt``,
a macOS ``._`` file), a broken link, a FIFO, a sub-folder, broken images, an HEIC file, a
48 MP phone-sized JPEG and ordinary images; ``--out`` is the folder itself.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("moto")
pytest.importorskip("samtranslator")
cv2 = pytest.importorskip("cv2")

REPO = Path(__file__).resolve().parents[2]
SAMPLES = sorted((REPO / "testdata" / "images").iterdir())
ODD_NAMES = ["new\nline.jpg", "tab\there.jpg", "percent%20x.jpg", "hash#q?.jpg",
             "back\\slash.jpg", " leading space.jpg", "emoji 🐶.jpg", "x" * 250 + ".jpg",
             "UPPER.JPG", "no-extension"]
BAD_BYTES_NAME = b"latin1-\xe9t\xe9.jpg"


def _folder(d: Path) -> dict[str, str]:
    """Build the folder; -> {local path: what it is} for every image file in it."""
    d.mkdir()
    images = {}
    for i, name in enumerate(ODD_NAMES + [f"img{k:02d}.jpg" for k in range(9)]):
        shutil.copy(SAMPLES[i % len(SAMPLES)], d / name)
        images[str(d / name)] = "good"
    bad = Path(os.fsdecode(os.fsencode(d) + b"/" + BAD_BYTES_NAME))
    shutil.copy(SAMPLES[0], bad)
    images[str(bad)] = "good"
    big = cv2.resize(cv2.imread(str(REPO / "testdata" / "images" / "dog.jpg")), (8064, 6048))
    cv2.imwrite(str(d / "phone-48mp.jpg"), big, [cv2.IMWRITE_JPEG_QUALITY, 70])
    images[str(d / "phone-48mp.jpg")] = "good"
    (d / "empty.jpg").write_bytes(b"")
    (d / "truncated.jpg").write_bytes(SAMPLES[0].read_bytes()[:5000])
    (d / "iphone.heic").write_bytes(b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(64))
    _, tiff = cv2.imencode(".tiff", cv2.imread(str(SAMPLES[0])))
    (d / "camera.NEF").write_bytes(tiff.tobytes())  # a raw file: never its thumbnail's boxes
    images.update({str(d / n): "bad" for n in ("empty.jpg", "truncated.jpg", "iphone.heic",
                                                "camera.NEF")})
    (d / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1" + bytes(100))
    (d / "notes.txt").write_text("my notes")
    (d / "._dog.jpg").write_bytes(b"\x00\x05\x16\x07" + bytes(100))
    (d / "broken.jpg").symlink_to(d / "gone.jpg")
    os.mkfifo(d / "pipe.jpg")
    (d / "sub").mkdir()
    shutil.copy(SAMPLES[0], d / "sub" / "deep.jpg")
    return images


def _checksums(d: Path) -> dict[str, str]:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in d.rglob("*") if p.is_file() and not p.is_symlink()}


def _detect(capsys, paths: list[str]) -> dict[str, list]:
    from yolo_sfn.cli import main

    capsys.readouterr()
    assert main(["detect", "--json", *paths]) == 0
    return {r["image"]: r["detections"] for r in json.loads(capsys.readouterr().out)}


def test_a_real_folder_run_into_itself(tmp_path, capsys):
    from yolo_sfn.cli import main

    d = tmp_path / "photos"
    images = _folder(d)
    before = _checksums(d)
    rc = main(["run", "--out", str(d), "--json", str(d)])
    doc = json.loads(capsys.readouterr().out)
    assert rc == 1  # the three broken images failed, each on its own
    summary = json.loads((d / "summary.json").read_text())
    listed = [i["local_path"] for i in summary["images"]]
    assert sorted(listed) == sorted(images)  # every image file once, nothing else
    by_path = {i["local_path"]: i for i in summary["images"]}
    for path, kind in images.items():
        assert by_path[path]["status"] == ("succeeded" if kind == "good" else "failed"), path
    assert "HEIC" in by_path[str(d / "iphone.heic")]["error"]["message"]
    assert "camera raw" in by_path[str(d / "camera.NEF")]["error"]["message"]
    notes = " | ".join(doc["input_notes"])
    for skipped in (".DS_Store", "notes.txt", "._dog.jpg", "broken.jpg -> ", "pipe.jpg", "sub"):
        assert skipped in notes
    # results name their local file; detections equal detect's on the same files
    good = [p for p, k in images.items() if k == "good"]
    expected = _detect(capsys, good)
    for path in good:
        result = json.loads((d / by_path[path]["result_path"]).read_text())
        assert result["local_path"] == path
        assert result["detections"] == expected[path], path
    # the 48 MP photo, decoded at 1/2 scale, is reported in its own pixels
    phone = json.loads((d / by_path[str(d / "phone-48mp.jpg")]["result_path"]).read_text())
    assert (phone["width"], phone["height"]) == (8064, 6048)
    assert max(b for det in phone["detections"] for b in det["box"]) > 4032
    # nothing that was there changed; annotated copies are new files in annotated/
    after = _checksums(d)
    assert {p: after[p] for p in before} == before
    annotated = [d / i["annotated_path"] for i in summary["images"] if i["annotated_path"]]
    assert len(annotated) == len(good) and all(p.parent == d / "annotated" for p in annotated)
    # the next run does not read its own outputs back as images, and replaces only them;
    # its table shows every error whole and no OpenCV log line
    (d / "annotated" / "mine.jpg").write_bytes(SAMPLES[0].read_bytes())  # the user's
    assert main(["run", "--out", str(d), str(d)]) == 1
    printed = capsys.readouterr()
    summary = json.loads((d / "summary.json").read_text())
    assert sorted(i["local_path"] for i in summary["images"]) == sorted(images)
    assert "file(s) yolo-sfn wrote (a previous run's outputs)" in printed.err
    assert "[ WARN" not in printed.err + printed.out and "[ERROR" not in printed.err + printed.out
    heic = by_path[str(d / "iphone.heic")]["error"]["message"].replace(
        by_path[str(d / "iphone.heic")]["uri"], str(d / "iphone.heic"))
    assert heic in printed.out  # whole, naming the local file, not the internal s3:// URI
    assert "new\\nline.jpg" in printed.out and "latin1-\\xe9t\\xe9.jpg" in printed.out
    after = _checksums(d)
    assert {p: after[p] for p in before} == before
    assert (d / "annotated" / "mine.jpg").read_bytes() == SAMPLES[0].read_bytes()
    assert len(list((d / "results").iterdir())) == len(images)


def test_detect_annotate_into_the_images_own_folder_keeps_every_input(tmp_path, capsys):
    from yolo_sfn.cli import main

    d = tmp_path / "photos"
    d.mkdir()
    for s in SAMPLES:
        shutil.copy(s, d / s.name)
    (d / "dog-2.jpg").write_bytes(b"the user's own file")
    before = _checksums(d)
    paths = [str(d / s.name) for s in SAMPLES]
    for _ in range(2):  # a rerun replaces its own copies, never makes more
        assert main(["detect", "--annotate", str(d), "--json", *paths]) == 0
        doc = json.loads(capsys.readouterr().out)
        after = _checksums(d)
        assert {p: after[p] for p in before} == before
        written = [Path(r["annotated"]) for r in doc]
        assert len(set(written)) == len(SAMPLES) and not {str(p) for p in written} & set(before)
        assert str(d / "dog-3.jpg") in {str(p) for p in written}
    assert len(list(d.iterdir())) == 2 * len(SAMPLES) + 2  # + dog-2.jpg + the record


def test_detect_a_48mp_phone_photo_reports_the_photos_own_pixels(tmp_path, capsys):
    """An 8064 x 6048 JPEG (upright, and turned by EXIF orientation 6) decodes at 1/2 scale;
    ``detect`` still reports its width, height and boxes in the photo's pixels, as a
    full-size decode (limit raised) does, and draws the boxes on the annotated copy."""
    from test_stages_pipeline import assert_close_to_full_decode, phone_photos

    from yolo_sfn.cli import main
    from yolo_sfn.core.annotate import class_color_rgb
    from yolo_sfn.core.detector import Detector
    from yolo_sfn.core.image import decode_image
    from yolo_sfn.demo import ensure_demo_model

    photos = phone_photos(8064, 6048)
    for name, (data, _) in photos.items():
        (tmp_path / name).write_bytes(data)
    out = tmp_path / "annotated"
    paths = [str(tmp_path / name) for name in photos]
    assert main(["detect", "--json", "--annotate", str(out), *paths]) == 0
    doc = {Path(r["image"]).name: r for r in json.loads(capsys.readouterr().out)}
    detector = Detector(ensure_demo_model())
    for name, (data, (w, h)) in photos.items():
        r = doc[name]
        assert (r["width"], r["height"]) == (w, h)
        full = detector.detect(decode_image(data, name=name, max_pixels=10 ** 8))
        assert_close_to_full_decode(r["detections"], [d.to_dict() for d in full], (w, h))
        # the copy is the 1/2 scale decode, each box drawn at half its pixel coordinates
        copy = cv2.imread(r["annotated"])[..., ::-1]
        assert copy.shape == (h // 2, w // 2, 3)
        best = r["detections"][0]
        x1, y1, _, y2 = (v / 2 for v in best["box"])
        edge = copy[round((y1 + y2) / 2), round(x1) + 1].astype(int)
        assert np.abs(edge - class_color_rgb(best["class_id"])).max() < 40, edge
