"""Pure helpers of the bench scripts: detection matching, trained-like heads, BLAS env."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from yolo_sfn.bench import sgemm
from yolo_sfn.model.meta import HeadMeta, ModelMeta

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


def _meta(num_classes=3):
    heads = [
        HeadMeta(grid=(4, 4), stride=8, anchors=[[10, 10], [20, 20]]),
        HeadMeta(grid=(2, 2), stride=16, anchors=[[30, 30], [40, 40]]),
    ]
    return ModelMeta(
        name="t",
        input_size=(32, 32),
        num_classes=num_classes,
        names=[f"c{i}" for i in range(num_classes)],
        heads=heads,
    )


def test_trained_like_heads_keep_boxes_and_set_few_object_rows():
    m = _script("inference_vs_opencv")
    meta = _meta()
    rng = np.random.default_rng(0)
    heads = [rng.normal(size=meta.head_shape(i)).astype(np.float32) for i in range(2)]
    out = m.trained_like_heads(heads, meta, rows=10)
    stride = 5 + meta.num_classes
    objects = 0
    for h, o in zip(heads, out, strict=True):
        assert o.shape == h.shape and o.dtype == np.float32
        r, q = h.reshape(-1, stride), o.reshape(-1, stride)
        np.testing.assert_array_equal(q[:, :4], r[:, :4])  # box logits untouched
        hot = q[:, 4] > 0
        objects += int(hot.sum())
        assert set(np.unique(q[:, 4])) <= {-8.0, 3.0}
        # every object row has exactly one class switched on
        assert ((q[hot, 5:] > 0).sum(axis=1) == 1).all()
        assert (q[~hot, 5:] == -8.0).all()
    assert 1 <= objects <= 10


def test_sgemm_env_drops_the_slow_kernel_overrides_only(monkeypatch):
    monkeypatch.setenv("OPENBLAS_CORETYPE", "Haswell")
    monkeypatch.setenv("OPENBLAS_L2_SIZE", "1000")
    monkeypatch.setenv("KEEP_ME", "1")
    env = sgemm.sgemm_env(2)
    assert "OPENBLAS_CORETYPE" not in env and "OPENBLAS_L2_SIZE" not in env
    assert env["OPENBLAS_NUM_THREADS"] == "2" and env["KEEP_ME"] == "1"
    import os

    assert os.environ["OPENBLAS_CORETYPE"] == "Haswell"  # this process untouched


# --- what `yolo-sfn bench` prices: template.yaml's defaults --------------------------------
ROOT = Path(__file__).resolve().parents[2]


def test_bench_prices_the_template_defaults_batch_size_and_each_stage_memory():
    from yolo_sfn.commands.bench import deployed_design
    from yolo_sfn.contract import IMAGE_STAGES
    from yolo_sfn.local.template import FUNCTION_IDS, load_cfn_yaml

    doc = load_cfn_yaml(ROOT / "template.yaml")
    params = doc["Parameters"]

    def default(value):
        return int(params[value["Ref"]]["Default"]) if isinstance(value, dict) else int(value)

    d = deployed_design(ROOT)
    assert d.batch_size == default({"Ref": "BatchSize"})
    assert d.memory_mb == {
        st: default(doc["Resources"][FUNCTION_IDS[st]]["Properties"]["MemorySize"])
        for st in IMAGE_STAGES
    }
    assert d.invocations_per_image == pytest.approx(4 / d.batch_size)
    assert d.memory_mb["infer"] > d.memory_mb["store"]  # not one size for every stage
    d10 = deployed_design(ROOT, 10)
    assert d10.batch_size == 10 and d10.memory_mb == d.memory_mb
    assert d10.invocations_per_image == pytest.approx(0.4)


def test_a_template_without_batch_size_is_one_clean_error_unless_given():
    from yolo_sfn.commands.bench import deployed_design
    from yolo_sfn.errors import LocalEngineError

    toy = ROOT / "tests" / "fixtures" / "toy"
    with pytest.raises(LocalEngineError, match="no parameter BatchSize"):
        deployed_design(toy)
    assert deployed_design(toy, 5).batch_size == 5
