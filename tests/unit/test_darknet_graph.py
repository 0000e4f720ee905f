"""Graph handlers vs a direct numpy port of darknet's forward passes (eager TF, no TFLite).

Covers the padding rules on arbitrary geometry: conv ``pad=1`` symmetric padding (TF 'SAME' is
asymmetric for stride 2) and maxpool's ``padding // 2`` top/left with -inf fill.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from yolo_sfn.darknet.cfg import parse_cfg_text

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("tensorflow") is None, reason="needs TensorFlow (yolo-sfn[convert])"
)
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
TAIL = "[convolutional]\nfilters=6\n[yolo]\nmask=0\nanchors=1,1\nclasses=1\nnum=1\n"


@pytest.fixture(scope="module")
def tf():
    from yolo_sfn.convert._tf import tensorflow

    return tensorflow()


def first_layer(section: str, h: int, w: int, c: int):
    net = parse_cfg_text(f"[net]\nwidth={w}\nheight={h}\nchannels={c}\n{section}{TAIL}")
    return net.layers[0]


def darknet_maxpool(x: np.ndarray, size: int, stride: int, padding: int) -> np.ndarray:
    """Port of darknet ``forward_maxpool_layer``; x (H, W, C) -> (oh, ow, C)."""
    h, w, _ = x.shape
    oh, ow = (h + padding - size) // stride + 1, (w + padding - size) // stride + 1
    off = -(padding // 2)
    flt_max = np.finfo(np.float32).max
    out = np.full((oh, ow, x.shape[2]), -flt_max, np.float32)  # padded pixels read -FLT_MAX
    for i in range(oh):
        for j in range(ow):
            for n in range(size):
                for m in range(size):
                    y, xx = off + i * stride + n, off + j * stride + m
                    if 0 <= y < h and 0 <= xx < w:
                        out[i, j] = np.maximum(out[i, j], x[y, xx])
    return out


def darknet_conv(x: np.ndarray, k_hwio: np.ndarray, stride: int, pad: int) -> np.ndarray:
    """Port of darknet im2col + gemm: zero padding ``pad`` on every side; x (H, W, C)."""
    h, w, _ = x.shape
    size = k_hwio.shape[0]
    oh, ow = (h + 2 * pad - size) // stride + 1, (w + 2 * pad - size) // stride + 1
    xp = np.pad(x, ((pad, pad), (pad, pad), (0, 0)))
    out = np.zeros((oh, ow, k_hwio.shape[3]), np.float64)
    for i in range(oh):
        for j in range(ow):
            patch = xp[i * stride : i * stride + size, j * stride : j * stride + size]
            out[i, j] = np.einsum("hwi,hwio->o", patch, k_hwio)
    return out.astype(np.float32)


@SETTINGS
@given(
    size=st.integers(1, 6),
    stride=st.integers(1, 3),
    h=st.integers(3, 14),
    w=st.integers(3, 14),
    explicit_padding=st.one_of(st.none(), st.integers(0, 5)),
    seed=st.integers(0, 2**16),
)
def test_maxpool_matches_darknet(tf, size, stride, h, w, explicit_padding, seed):
    from yolo_sfn.convert.graph import REGISTRY

    pad_opt = "" if explicit_padding is None else f"padding={explicit_padding}\n"
    padding = size - 1 if explicit_padding is None else explicit_padding
    if (h + padding - size) < 0 or (w + padding - size) < 0:
        return
    layer = first_layer(f"[maxpool]\nsize={size}\nstride={stride}\n{pad_opt}", h, w, 2)
    x = np.random.default_rng(seed).normal(size=(h, w, 2)).astype(np.float32)
    got = REGISTRY["maxpool"].build(tf, layer, [tf.constant(x[None])], None).numpy()[0]
    want = darknet_maxpool(x, size, stride, padding)
    assert got.shape == layer.out_shape == want.shape
    np.testing.assert_array_equal(got, want)


@SETTINGS
@given(
    size=st.sampled_from([1, 2, 3, 5]),
    stride=st.integers(1, 3),
    pad=st.booleans(),
    h=st.integers(5, 13),
    w=st.integers(5, 13),
    seed=st.integers(0, 2**16),
)
def test_conv_matches_darknet(tf, size, stride, pad, h, w, seed):
    from yolo_sfn.convert.graph import REGISTRY

    section = f"[convolutional]\nfilters=3\nsize={size}\nstride={stride}\npad={int(pad)}\n"
    section += "activation=linear\n"
    layer = first_layer(section, h, w, 2)
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(h, w, 2)).astype(np.float32)
    weights = {
        "kernel": rng.normal(size=(size, size, 2, 3)).astype(np.float32),
        "bias": np.zeros(3, np.float32),
    }
    got = REGISTRY["convolutional"].build(tf, layer, [tf.constant(x[None])], weights).numpy()[0]
    want = darknet_conv(x, weights["kernel"], stride, size // 2 if pad else 0)
    assert got.shape == layer.out_shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["leaky", "mish", "swish", "logistic", "relu", "linear"])
def test_activations_match_darknet(tf, name):
    from yolo_sfn.convert.graph import ACTIVATIONS

    x = np.linspace(-30, 30, 601, dtype=np.float32)
    softplus = np.where(x > 20, x, np.where(x < -20, np.exp(x), np.log1p(np.exp(x))))
    want = {
        "leaky": np.where(x > 0, x, 0.1 * x),
        "mish": x * np.tanh(softplus),  # darknet mish_yashas with its softplus thresholds
        "swish": x / (1 + np.exp(-x)),
        "logistic": 1 / (1 + np.exp(-x)),
        "relu": np.maximum(x, 0),
        "linear": x,
    }[name]
    got = ACTIVATIONS[name](tf, tf.constant(x)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_route_groups_take_the_group_id_chunk(tf):
    from yolo_sfn.convert.graph import REGISTRY

    net = parse_cfg_text(
        "[net]\nwidth=4\nheight=4\nchannels=3\n[convolutional]\nfilters=8\n"
        "[route]\nlayers=-1\ngroups=2\ngroup_id=1\n" + TAIL
    )
    x = np.arange(4 * 4 * 8, dtype=np.float32).reshape(1, 4, 4, 8)
    got = REGISTRY["route"].build(tf, net.layers[1], [tf.constant(x)], None).numpy()
    np.testing.assert_array_equal(got, x[..., 4:])


# --- Winograd F(2x2, 3x3) ----------------------------------------------------------------
def test_winograd_kernel_transform_reproduces_a_3x3_tile_convolution():
    """Pure numpy: A^T [(G g G^T) * (B^T d B)] A == the 2x2 valid correlation of a 4x4 tile."""
    from yolo_sfn.convert import winograd as w

    rng = np.random.default_rng(0)
    g = rng.normal(size=(3, 3))
    d = rng.normal(size=(4, 4))
    u = w.G @ g @ w.G.T
    y = w.A_T @ (u * (w.B_T @ d @ w.B_T.T)) @ w.A_T.T
    want = np.array([[np.sum(d[i : i + 3, j : j + 3] * g) for j in range(2)] for i in range(2)])
    np.testing.assert_allclose(y, want, rtol=1e-12, atol=1e-12)
    kernel = rng.normal(size=(3, 3, 2, 5))
    got = w.transform_kernel(kernel)
    assert got.shape == (4, 4, 2, 5) and got.dtype == np.float32
    np.testing.assert_allclose(got[..., 1, 3], w.G @ kernel[..., 1, 3] @ w.G.T, rtol=1e-6)


@pytest.mark.parametrize(
    ("shape", "stride", "pad", "expected"),
    [
        ((3, 3, 64, 8), 1, 1, True),
        ((3, 3, 512, 1024), 1, 1, True),
        ((3, 3, 63, 8), 1, 1, False),  # too few input channels to pay for the transforms
        ((3, 3, 64, 8), 2, 1, False),
        ((3, 3, 64, 8), 1, 0, False),
        ((1, 1, 256, 8), 1, 0, False),
        ((5, 5, 64, 8), 1, 2, False),
    ],
)
def test_winograd_eligibility(shape, stride, pad, expected):
    from yolo_sfn.convert import winograd

    assert winograd.eligible(shape, stride, pad) is expected


def _run_as_tflite(tf, layer, x: np.ndarray, weights: dict, opts) -> np.ndarray:
    """One conv layer -> TFLite (the project's converter path) -> LiteRT. TF's own CPU kernel
    cannot run the transform's (2, 1)-strided depthwise convs; TFLite / XNNPACK can."""
    from yolo_sfn.convert.graph import REGISTRY

    litert = pytest.importorskip("ai_edge_litert.interpreter")  # the runtime Lambda runs

    graph = tf.Graph()
    with graph.as_default():
        image = tf.compat.v1.placeholder(tf.float32, (1, *x.shape), name="image")
        out = REGISTRY["convolutional"].build(tf, layer, [image], weights, opts)
        out = tf.identity(out, name="out")
    blob = tf.compat.v1.lite.TFLiteConverter(graph.as_graph_def(), [image], [out]).convert()
    it = litert.Interpreter(model_content=blob, num_threads=1)
    it.allocate_tensors()
    it.set_tensor(it.get_input_details()[0]["index"], x[None])
    it.invoke()
    return it.get_tensor(it.get_output_details()[0]["index"])[0]


@pytest.mark.parametrize(("h", "w"), [(1, 1), (2, 3), (5, 4), (13, 13), (14, 15), (7, 26)])
def test_winograd_conv_matches_darknet(tf, h, w):
    """Odd and even sizes (odd ones pad one extra row/column and crop), bias included."""
    from yolo_sfn.convert.graph import BuildOptions, uses_winograd

    cin, cout = 64, 5
    section = f"[convolutional]\nfilters={cout}\nsize=3\nstride=1\npad=1\nactivation=linear\n"
    layer = first_layer(section, h, w, cin)
    rng = np.random.default_rng(h * 100 + w)
    x = rng.normal(size=(h, w, cin)).astype(np.float32)
    weights = {
        "kernel": rng.normal(size=(3, 3, cin, cout)).astype(np.float32),
        "bias": rng.normal(size=cout).astype(np.float32),
    }
    opts = BuildOptions(winograd=True)
    assert uses_winograd(layer, weights, opts)
    got = _run_as_tflite(tf, layer, x, weights, opts)
    plain = _run_as_tflite(tf, layer, x, weights, BuildOptions(winograd=False))
    want = darknet_conv(x, weights["kernel"], 1, 1) + weights["bias"]
    assert got.shape == plain.shape == layer.out_shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=2e-4)
    # float32 rounding: within 1e-5 of the output range (measured ~1.5e-6; CONV_2D ~5e-7)
    scale = float(np.abs(want).max())
    assert np.abs(got - want).max() <= 1e-5 * scale
    assert np.abs(plain - want).max() <= 1e-5 * scale


def test_convert_uses_winograd_for_fp32_only(random_model, tmp_path):
    """yolov3-tiny has 6 eligible convs (3x3, stride 1, >= 64 inputs); --no-winograd and the
    default give the same heads to float32 rounding; int8 cannot use the transforms."""
    from yolo_sfn.convert import convert
    from yolo_sfn.core.runtime import Model
    from yolo_sfn.errors import ConversionError
    from yolo_sfn.model.meta import ModelMeta

    m = random_model("yolov3-tiny", size=96)
    assert ModelMeta.load(m.tflite).source["winograd_layers"] == 6
    plain = convert(m.cfg, m.weights, tmp_path / "plain.tflite", size=96, winograd=False)
    assert plain.meta.source["winograd_layers"] == 0
    x = np.random.default_rng(3).integers(0, 256, (1, 96, 96, 3), dtype=np.uint8)
    for a, b in zip(Model.load(m.tflite).run(x), Model.load(plain.path).run(x), strict=True):
        assert np.abs(a - b).max() <= 1e-5 * np.abs(b).max()
    images = tmp_path / "calib"
    images.mkdir()
    with pytest.raises(ConversionError, match="Winograd convolutions need --precision fp32"):
        convert(m.cfg, m.weights, tmp_path / "q.tflite", precision="int8", calibration=images,
                winograd=True)
