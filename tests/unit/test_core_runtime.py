"""core.runtime: loading, sidecar checks, input conversion, dequantization, thread safety.

Uses a tiny model built here with TensorFlow (tests only): a 64x64 input, two heads
(2x2 and 4x4 grids, 2 anchors, 3 classes), each ``avg_pool -> 1x1 conv``.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from yolo_sfn.core.runtime import Model, default_threads
from yolo_sfn.errors import ModelError
from yolo_sfn.model.meta import HeadMeta, ModelMeta

tf = pytest.importorskip("tensorflow")

NET = 64
NAMES = ["cat", "dog", "bird"]
HEADS = [((2, 2), [[20.0, 30.0], [40.0, 50.0]]), ((4, 4), [[8.0, 10.0], [12.0, 16.0]])]
CH = 2 * (5 + len(NAMES))


def tiny_meta(precision: str = "fp32") -> ModelMeta:
    heads = [HeadMeta(grid=g, stride=NET // g[0], anchors=a) for g, a in HEADS]
    return ModelMeta(
        name="tiny",
        input_size=(NET, NET),
        num_classes=3,
        names=NAMES,
        heads=heads,
        precision=precision,
    )


def tiny_weights() -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(7)
    out = []
    for _ in HEADS:
        w = rng.normal(0, 2.0, (1, 1, 3, CH)).astype(np.float32)
        b = rng.normal(0, 0.5, (CH,)).astype(np.float32)
        b[4] += 3.0  # anchor 0: confident object ...
        b[5] += 3.0  # ... of class 0
        out.append((w, b))
    return out


def reference_heads(batch_u8: np.ndarray) -> list[np.ndarray]:
    """numpy forward pass of the tiny model (float64), for checking the interpreter."""
    x = batch_u8.astype(np.float64) / 255.0
    out = []
    for ((gh, gw), _), (w, b) in zip(HEADS, tiny_weights(), strict=True):
        k = NET // gh
        pooled = x.reshape(1, gh, k, gw, k, 3).mean(axis=(2, 4))
        out.append(pooled @ w[0, 0].astype(np.float64) + b)
    return out


def build_tiny_model(directory: Path, precision: str = "fp32", name: str = "tiny") -> Path:
    """Write ``<name>.tflite`` + sidecar into directory; returns the model path."""
    weights = tiny_weights()

    @tf.function(input_signature=[tf.TensorSpec((1, NET, NET, 3), tf.float32)])
    def net(x):
        outs = []
        for ((gh, _), _), (w, b) in zip(HEADS, weights, strict=True):
            k = NET // gh
            pooled = tf.nn.avg_pool2d(x, k, k, "VALID")
            outs.append(tf.nn.conv2d(pooled, tf.constant(w), 1, "VALID") + tf.constant(b))
        return outs[::-1]  # deliberately not in meta order: matched by shape

    conv = tf.lite.TFLiteConverter.from_concrete_functions([net.get_concrete_function()], net)
    if precision == "fp16":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.target_spec.supported_types = [tf.float16]
    elif precision == "int8":
        rng = np.random.default_rng(0)

        def rep():
            for _ in range(16):
                yield [rng.integers(0, 256, (1, NET, NET, 3)).astype(np.float32) / 255.0]

        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = rep
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = tf.uint8
        conv.inference_output_type = tf.int8
    path = Path(directory) / f"{name}.tflite"
    path.write_bytes(conv.convert())
    tiny_meta(precision).save(path)
    return path


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("tiny")
    return {p: build_tiny_model(d, p, name=f"tiny-{p}") for p in ("fp32", "fp16", "int8")}


def _batch(seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (1, NET, NET, 3), dtype=np.uint8)


@pytest.mark.parametrize("precision,atol", [("fp32", 1e-4), ("fp16", 2e-2), ("int8", 0.25)])
def test_run_matches_reference(models, precision, atol):
    model = Model.load(models[precision], threads=1)
    assert model.meta.precision == precision
    batch = _batch()
    heads = model.run(batch)
    ref = reference_heads(batch)
    assert [h.shape for h in heads] == [tiny_meta().head_shape(i) for i in range(2)]
    for h, r in zip(heads, ref, strict=True):
        assert h.dtype == np.float32
        np.testing.assert_allclose(h, r, atol=atol * max(1.0, float(np.abs(r).max())))


def test_int8_model_has_quantized_io(models):
    """The int8 file takes uint8 pixels and has quantized outputs (read with LiteRT's own
    interpreter), and Model.run still hands back dequantized float32 heads."""
    litert = pytest.importorskip("ai_edge_litert.interpreter")
    it = litert.Interpreter(model_path=str(models["int8"]))
    assert it.get_input_details()[0]["dtype"] == np.uint8
    assert all(d["quantization"][0] > 0 for d in it.get_output_details())
    heads = Model.load(models["int8"], threads=1).run(_batch())
    assert all(h.dtype == np.float32 for h in heads)
    assert any(not np.allclose(h, np.round(h)) for h in heads)  # dequantized, not raw integers


def test_run_rejects_wrong_input(models):
    model = Model.load(models["fp32"])
    with pytest.raises(ValueError, match="uint8"):
        model.run(np.zeros((1, NET, NET, 3), np.float32))
    with pytest.raises(ValueError, match="64"):
        model.run(np.zeros((1, 32, 32, 3), np.uint8))


def test_outputs_are_not_views_of_interpreter_memory(models):
    model = Model.load(models["fp32"])
    a = model.run(_batch(1))
    a_copy = [h.copy() for h in a]
    model.run(_batch(2))
    for h, c in zip(a, a_copy, strict=True):
        np.testing.assert_array_equal(h, c)


def test_thread_safe(models):
    model = Model.load(models["fp32"], threads=1)
    batches = [_batch(s) for s in range(8)]
    expected = [model.run(b) for b in batches]
    errors = []

    def work(k):
        for _ in range(10):
            got = model.run(batches[k])
            if not all(np.array_equal(g, e) for g, e in zip(got, expected[k], strict=True)):
                errors.append(k)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_threads_default_from_env(monkeypatch):
    monkeypatch.setenv("INFER_THREADS", "3")
    assert default_threads() == 3
    monkeypatch.delenv("INFER_THREADS")
    assert default_threads() >= 1
    monkeypatch.setenv("INFER_THREADS", "many")
    with pytest.raises(ModelError, match="INFER_THREADS"):
        default_threads()


# --- errors: always a one-line ModelError naming the file --------------------------------
def _one_line(err: pytest.ExceptionInfo, *needles: str) -> str:
    msg = str(err.value)
    assert "\n" not in msg
    for n in needles:
        assert n in msg
    return msg


def test_missing_model(tmp_path):
    with pytest.raises(ModelError) as e:
        Model.load(tmp_path / "nope.tflite")
    _one_line(e, "nope.tflite", "not found")


def test_directory_as_model(tmp_path):
    with pytest.raises(ModelError) as e:
        Model.load(tmp_path)
    _one_line(e, str(tmp_path))


def test_missing_sidecar(models, tmp_path):
    p = tmp_path / "m.tflite"
    p.write_bytes(models["fp32"].read_bytes())
    with pytest.raises(ModelError) as e:
        Model.load(p)
    _one_line(e, "m.tflite.json", "missing")


@pytest.mark.parametrize(
    "content",
    [b"", b"hello, not a model", b"\x00" * 4 + b"TFL3" + b"\x00" * 64, None],
    ids=["empty", "text", "header-only", "truncated"],
)
def test_corrupt_model(models, tmp_path, content):
    good = models["fp32"].read_bytes()
    p = tmp_path / "bad.tflite"
    p.write_bytes(good[: len(good) // 2] if content is None else content)
    tiny_meta().save(p)
    with pytest.raises(ModelError) as e:
        Model.load(p)
    _one_line(e, "bad.tflite")


def test_sidecar_head_mismatch(models, tmp_path):
    p = tmp_path / "m.tflite"
    p.write_bytes(models["fp32"].read_bytes())
    meta = tiny_meta()
    wrong = ModelMeta(
        **{**meta.__dict__, "heads": [meta.heads[0], HeadMeta((8, 8), 8, [[1, 1]] * 2)]}
    )
    wrong.save(p)
    with pytest.raises(ModelError) as e:
        Model.load(p)
    _one_line(e, "m.tflite", "(1, 8, 8, 16)")


def test_sidecar_class_count_mismatch(models, tmp_path):
    p = tmp_path / "m.tflite"
    p.write_bytes(models["fp32"].read_bytes())
    meta = tiny_meta()
    ModelMeta(**{**meta.__dict__, "num_classes": 4, "names": [*NAMES, "fish"]}).save(p)
    with pytest.raises(ModelError) as e:
        Model.load(p)
    _one_line(e, "m.tflite", "head 0")


def test_sidecar_input_size_mismatch(models, tmp_path):
    p = tmp_path / "m.tflite"
    p.write_bytes(models["fp32"].read_bytes())
    ModelMeta(**{**tiny_meta().__dict__, "input_size": (128, 128)}).save(p)
    with pytest.raises(ModelError) as e:
        Model.load(p)
    _one_line(e, "m.tflite", "input")

