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
    model = Model.load(models["int8"])
    assert model._in_dtype == np.uint8
    assert all(q is not None for q in model._out_quant)


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


# --- XNNPACK weight cache ---------------------------------------------------------------
@pytest.fixture
def cache_dir(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("MODEL_CACHE_DIR", str(tmp_path / "mc"))
    return tmp_path / "mc.xnnpack"


def _heads_equal(a, b) -> bool:
    return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_weight_cache_built_once_then_reused_with_identical_results(models, cache_dir, precision):
    batch = _batch(3)
    plain = Model.load(models[precision], threads=1, weight_cache=False)
    assert not plain._compiled
    want = plain.run(batch)
    first = Model.load(models[precision], threads=1, weight_cache=True)
    assert first._compiled
    files = sorted(cache_dir.iterdir())
    assert [f.suffix for f in files] == [".xnnpack"]  # no temporary file left behind
    assert _heads_equal(first.run(batch), want)
    again = Model.load(models[precision], threads=1, weight_cache=True)
    assert again._compiled and sorted(cache_dir.iterdir()) == files
    assert _heads_equal(again.run(batch), want)
    assert first.meta == plain.meta and again.input_hw == plain.input_hw


@pytest.mark.parametrize("content", ["empty", "garbage", "truncated", "other-model"])
def test_corrupt_or_foreign_cache_file_gives_the_same_results(models, cache_dir, content):
    batch = _batch(4)
    want = Model.load(models["fp32"], threads=1, weight_cache=False).run(batch)
    Model.load(models["fp32"], threads=1, weight_cache=True)
    (path,) = cache_dir.iterdir()
    good = path.read_bytes()
    if content == "empty":
        path.write_bytes(b"")
    elif content == "garbage":
        path.write_bytes(np.random.default_rng(0).bytes(len(good)))
    elif content == "truncated":
        path.write_bytes(good[: len(good) // 2])
    else:
        Model.load(models["fp16"], threads=1, weight_cache=True)
        other = next(f for f in cache_dir.iterdir() if f != path)
        path.write_bytes(other.read_bytes())
    m = Model.load(models["fp32"], threads=1, weight_cache=True)
    assert _heads_equal(m.run(batch), want)
    assert _heads_equal(Model.load(models["fp32"], threads=1, weight_cache=True).run(batch), want)


def test_unusable_cache_dir_falls_back_to_the_interpreter(models, tmp_path, monkeypatch, caplog):
    (tmp_path / "mc.xnnpack").write_text("a file where the cache directory should be")
    monkeypatch.setenv("MODEL_CACHE_DIR", str(tmp_path / "mc"))
    batch = _batch(5)
    with caplog.at_level("WARNING", logger="yolo_sfn.core.runtime"):
        m = Model.load(models["fp32"], threads=1, weight_cache=True)
    assert not m._compiled
    assert "weight cache not used" in caplog.text
    want = Model.load(models["fp32"], threads=1, weight_cache=False).run(batch)
    assert _heads_equal(m.run(batch), want)


def test_int8_model_keeps_the_interpreter(models, cache_dir):
    assert not Model.load(models["int8"], threads=1, weight_cache=True)._compiled
    assert not cache_dir.exists() or not any(cache_dir.iterdir())


def test_concurrent_first_loads_share_one_cache_file(models, cache_dir):
    batch = _batch(6)
    want = Model.load(models["fp32"], threads=1, weight_cache=False).run(batch)
    got, errors = [], []

    def work():
        try:
            got.append(Model.load(models["fp32"], threads=1, weight_cache=True).run(batch))
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(got) == 4
    assert all(_heads_equal(g, want) for g in got)
    assert [f.suffix for f in cache_dir.iterdir()] == [".xnnpack"]


def test_cache_dir_is_pruned(models, cache_dir, monkeypatch):
    import yolo_sfn.core.runtime as rt

    monkeypatch.setattr(rt, "WEIGHT_CACHE_KEEP", 1)
    Model.load(models["fp32"], threads=1, weight_cache=True)
    Model.load(models["fp16"], threads=1, weight_cache=True)
    (only,) = cache_dir.iterdir()
    assert only.name.startswith("tiny-fp16.")


@pytest.mark.parametrize("failure", ["disk-full", "child-aborts"])
def test_cache_build_failure_falls_back(models, cache_dir, monkeypatch, caplog, failure):
    import collections

    import yolo_sfn.core.runtime as rt

    if failure == "disk-full":
        usage = collections.namedtuple("usage", "total used free")
        monkeypatch.setattr(rt.shutil, "disk_usage", lambda _: usage(1 << 30, 1 << 30, 1 << 20))
    else:  # what XNNPACK does when the disk fills up mid-write
        monkeypatch.setattr(rt, "_BUILD_CHILD", "import os; os.abort()")
    batch = _batch(7)
    want = Model.load(models["fp32"], threads=1, weight_cache=False).run(batch)
    with caplog.at_level("WARNING", logger="yolo_sfn.core.runtime"):
        m = Model.load(models["fp32"], threads=1, weight_cache=True)
    assert not m._compiled and "weight cache not used" in caplog.text
    assert _heads_equal(m.run(batch), want)
    assert not any(cache_dir.iterdir())  # no partial or temporary file left


@pytest.mark.parametrize(
    ("value", "lambda_env", "compiled"),
    [
        ("", False, True),
        ("1", False, True),
        ("0", False, False),
        ("", True, False),
        ("1", True, True),
    ],
)
def test_weight_cache_default(models, cache_dir, monkeypatch, value, lambda_env, compiled):
    """Unset/empty: on, except on Lambda (where /tmp starts empty); 1 / 0 force it."""
    import yolo_sfn.core.runtime as rt

    monkeypatch.setattr(rt, "WEIGHT_CACHE_MIN_BYTES", 0)
    monkeypatch.setenv("YOLO_SFN_WEIGHT_CACHE", value)
    if lambda_env:
        monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "yolo-sfn-infer")
    else:
        monkeypatch.delenv("AWS_LAMBDA_FUNCTION_NAME", raising=False)
    assert Model.load(models["fp32"], threads=1)._compiled is compiled
    assert not Model.load(models["fp32"], threads=1, weight_cache=False)._compiled


def test_weight_cache_env_typo_is_an_error(models, monkeypatch):
    monkeypatch.setenv("YOLO_SFN_WEIGHT_CACHE", "yes")
    with pytest.raises(ModelError) as e:
        Model.load(models["fp32"], threads=1)
    _one_line(e, "YOLO_SFN_WEIGHT_CACHE", "'yes'")


def test_flipped_bit_in_cache_is_detected_and_rebuilt(models, cache_dir, caplog):
    """XNNPACK has no checksum: the file name carries one, checked on every load."""
    batch = _batch(8)
    want = Model.load(models["fp32"], threads=1, weight_cache=False).run(batch)
    Model.load(models["fp32"], threads=1, weight_cache=True)
    (path,) = cache_dir.iterdir()
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x10  # inside the packed weights: XNNPACK itself would accept it
    path.write_bytes(bytes(data))
    with caplog.at_level("WARNING", logger="yolo_sfn.core.runtime"):
        m = Model.load(models["fp32"], threads=1, weight_cache=True)
    assert m._compiled and "does not match its checksum" in caplog.text
    assert _heads_equal(m.run(batch), want)
    (rebuilt,) = cache_dir.iterdir()
    assert rebuilt.read_bytes() != bytes(data)


def test_compiled_load_keeps_stderr_free_of_litert_probing(models, cache_dir, capfd):
    Model.load(models["fp32"], threads=1, weight_cache=True).run(_batch(9))
    err = capfd.readouterr().err
    assert "INFO: [" not in err and "WARNING: [" not in err, err


def test_litert_noise_filter_passes_everything_else():
    from yolo_sfn.core.runtime import _pass_on

    text = (
        "INFO: [environment.cc:36] Creating LiteRT environment with options\n"
        "WARNING: [compiler_plugin.cc:312] Failed to load plugin at: x.so with error: E\n"
        "\u2514 Could not load shared library x.so\n"
        "ERROR: [compiled_model.cc:1] real trouble\n"
        "\u2514 its detail\n"
        "INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n"
        "Traceback (most recent call last):\n"
    )
    out: list[str] = []
    _pass_on(text, out.append)
    assert out == [
        "ERROR: [compiled_model.cc:1] real trouble\n",
        "\u2514 its detail\n",
        "Traceback (most recent call last):\n",
    ]


def test_process_exit_drops_litert_teardown_lines_only(models, tmp_path):
    """LiteRT logs DestroyAccelerator after Python has finished: filtered, the rest kept."""
    import subprocess
    import sys

    code = (
        "import atexit, sys, numpy as np\n"
        "from yolo_sfn.core.runtime import Model\n"
        f"m = Model.load({str(models['fp32'])!r}, threads=1, weight_cache=True)\n"
        "m.run(np.zeros((1, 64, 64, 3), np.uint8))\n"
        "atexit.register(lambda: print('goodbye from atexit', file=sys.stderr))\n"
        "raise SystemExit(3)\n"
    )
    env = {**__import__("os").environ, "MODEL_CACHE_DIR": str(tmp_path / "mc")}
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )
    assert proc.returncode == 3
    assert "goodbye from atexit" in proc.stderr
    assert "DestroyAccelerator" not in proc.stderr and "INFO: [" not in proc.stderr, proc.stderr


def test_plain_load_keeps_the_delegate_banner_off_stderr(models):
    """TFLite logs "Created TensorFlow Lite XNNPACK delegate" once per process, mid-progress-
    line in ``yolo-sfn run``: checked in a fresh process, where that first time happens."""
    import subprocess
    import sys

    code = (
        "import numpy as np\n"
        "from yolo_sfn.core.runtime import Model\n"
        f"m = Model.load({str(models['fp32'])!r}, threads=1, weight_cache=False)\n"
        "m.run(np.zeros((1, 64, 64, 3), np.uint8))\n"
        "print('done', flush=True)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0 and proc.stdout == "done\n", proc.stderr
    assert "Created TensorFlow Lite" not in proc.stderr, proc.stderr


def test_small_models_skip_the_cache_even_when_opted_in(models, cache_dir, monkeypatch):
    monkeypatch.setenv("YOLO_SFN_WEIGHT_CACHE", "1")
    assert not Model.load(models["fp32"], threads=1)._compiled  # 64x64 test model, KiB
    assert not cache_dir.exists()


def test_cache_dir_is_pruned_by_size(models, cache_dir, monkeypatch):
    import yolo_sfn.core.runtime as rt

    monkeypatch.setattr(rt, "WEIGHT_CACHE_MAX_BYTES", 1)  # the newest file always stays
    Model.load(models["fp32"], threads=1, weight_cache=True)
    Model.load(models["fp16"], threads=1, weight_cache=True)
    (only,) = cache_dir.iterdir()
    assert only.name.startswith("tiny-fp16.")
