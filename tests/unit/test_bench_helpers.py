"""Pure helpers of the bench scripts: detection matching, trained-like heads, BLAS env."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from yolo_sfn.bench import sgemm

BENCH = Path(__file__).resolve().parents[2] / "bench"


def _script(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def _det(cls, box):
    return SimpleNamespace(class_id=cls, box=box)


def test_iou_and_greedy_one_to_one_matching():
    m = _script("int8_vs_fp32")
    assert m.iou((0, 0, 10, 10), (0, 0, 10, 10)) == pytest.approx(1.0)
    assert m.iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(50 / 150)
    assert m.iou((0, 0, 1, 1), (2, 2, 3, 3)) == 0.0
    ref = [_det(1, (0, 0, 10, 10)), _det(1, (0, 0, 10, 10)), _det(2, (20, 20, 30, 30))]
    other = [_det(1, (0, 0, 10, 11)), _det(2, (0, 0, 10, 10))]
    # one int8 box can pair with only one fp32 box; class 2 box does not overlap
    assert m.match(ref, other) == 1
    assert m.match(ref, ref) == 3
    assert m.match([], other) == 0


def test_trained_like_weights_make_sparse_heads_and_keep_the_rest():
    from yolo_sfn.bench import models
    from yolo_sfn.darknet.cfg import parse_cfg
    from yolo_sfn.darknet.weights import layout, random_weights

    net = parse_cfg(models.CFG_DIR / "yolov3-tiny.cfg")
    plain = random_weights(net, 0)
    tl = models.trained_like_weights(net, 0)
    assert [a.shape for a in tl] == [a.shape for a in plain]
    heads = {i for layer in net.layers if layer.kind == "yolo" for i in layer.inputs}
    pos, changed = 0, 0
    for layer, parts in layout(net):
        names = [n for n, _ in parts]
        for j, _ in enumerate(parts):
            a, b = plain[pos + j], tl[pos + j]
            if layer.index not in heads:
                np.testing.assert_array_equal(a, b)
        if layer.index in heads:
            changed += 1
            bias = tl[pos + names.index("bias")]
            k = np.arange(bias.size) % 85
            assert (bias[k == 4] == models.HEAD_BIAS["objectness"]).all()
            assert (bias[k >= 5] == models.HEAD_BIAS["class"]).all()
            np.testing.assert_array_equal(bias[k < 4], plain[pos + names.index("bias")][k < 4])
            kern, kern0 = (
                tl[pos + names.index("kernel_oihw")],
                plain[pos + names.index("kernel_oihw")],
            )
            np.testing.assert_allclose(
                kern[k == 4], kern0[k == 4] * models.HEAD_KERNEL_SCALE["objectness"]
            )
        pos += len(parts)
    assert changed == 2  # yolov3-tiny has two [yolo] heads


def test_sgemm_env_drops_the_slow_kernel_overrides_only(monkeypatch):
    monkeypatch.setenv("OPENBLAS_CORETYPE", "Haswell")
    monkeypatch.setenv("OPENBLAS_L2_SIZE", "1000")
    monkeypatch.setenv("KEEP_ME", "1")
    env = sgemm.sgemm_env(2)
    assert "OPENBLAS_CORETYPE" not in env and "OPENBLAS_L2_SIZE" not in env
    assert env["OPENBLAS_NUM_THREADS"] == "2" and env["KEEP_ME"] == "1"
    import os

    assert os.environ["OPENBLAS_CORETYPE"] == "Haswell"  # this process untouched
