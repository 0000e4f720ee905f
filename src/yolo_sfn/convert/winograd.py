"""3x3 stride-1 convolutions as Winograd F(2x2, 3x3), built from ops XNNPACK delegates.

XNNPACK has no Winograd kernels: a TFLite ``CONV_2D`` 3x3 runs as an implicit GEMM with
``9 * Cin * Cout`` multiply-adds per output pixel. F(2x2, 3x3) computes each 2x2 output tile
from a 4x4 input tile with ``16 * Cin * Cout`` multiply-adds, i.e. 2.25x fewer, at the cost of
cheap linear transforms on either side (Lavin & Gray, "Fast Algorithms for Convolutional
Neural Networks", 2016). The graph emitted for one layer, ``th = ceil(H / 2)``,
``tw = ceil(W / 2)``::

    x (1, H, W, Cin)
    PAD 1 top/left, 1 or 2 bottom/right     -> (1, 2 th + 2, 2 tw + 2, Cin)
    4 DEPTHWISE_CONV_2D 4x1, stride (2, 1)  -> rows[i] (1, th, 2 tw + 2, Cin)  (B^T row i)
    16 DEPTHWISE_CONV_2D 1x4, stride (1, 2) -> V[i][j] (1, th, tw, Cin)        (B^T row j)
    16 CONV_2D 1x1 Cin -> Cout, U[i][j]     -> M[i][j] (1, th, tw, Cout)  (+ bias in M[1][1])
    24 ADD/SUB (A^T M A, separable)         -> Y[r][s] (1, th, tw, Cout)
    CONCATENATION [Y00, Y01, Y10, Y11]      -> (1, th, tw, 4 Cout)
    DEPTH_TO_SPACE 2                        -> (1, 2 th, 2 tw, Cout)
    SLICE                                   -> (1, H, W, Cout)   (only when H or W is odd)

``U = G g G^T`` is computed once, in float64, at conversion. The bias is added to ``M[1][1]``
only: column 1 of ``A^T`` is all ones, so it reaches every output pixel exactly once.
Float32 rounding: ~1.5e-6 of the output range against a float64 reference, a few times
XNNPACK's direct kernel (~5e-7), far inside the 1e-3 the OpenCV oracle allows (YOLOv4-416
heads: 1e-6 relative to the plain CONV_2D model). The weights of a converted layer grow 16/9x.

Measured on this project's 2-vCPU machine (LiteRT 2.3, 2 threads, one layer at a time):
13x13 512->1024 1.78x, 26x26 256->512 2.05x, 52x52 128->256 1.92x, 104x104 64->64 1.17x faster
than ``CONV_2D``. Below 64 input channels the transforms cost more than the GEMM saves.
"""

from __future__ import annotations

from typing import Any

import numpy as np

MIN_CHANNELS = 64  # input channels below which a direct CONV_2D stays faster

# F(2x2, 3x3): Y = A^T [ (G g G^T) * (B^T d B) ] A, tile 4x4 in, 2x2 out
B_T = np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], np.float64)
G = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]], np.float64)
A_T = np.array([[1, 1, 1, 0], [0, 1, -1, -1]], np.float64)
TILE_IN, TILE_OUT = 4, 2
BIAS_COMPONENT = (1, 1)  # A_T[:, 1] == 1: every output pixel gets M[1][1] exactly once


def eligible(kernel_hwio_shape: tuple[int, ...], stride: int, pad_px: int) -> bool:
    """A 3x3, stride 1, pad 1 (darknet ``pad=1``), non-grouped conv with >= MIN_CHANNELS
    inputs. ``kernel_hwio_shape``: (3, 3, Cin, Cout)."""
    kh, kw, cin, _ = kernel_hwio_shape
    return (kh, kw, stride, pad_px) == (3, 3, 1, 1) and cin >= MIN_CHANNELS


def transform_kernel(kernel_hwio: np.ndarray) -> np.ndarray:
    """(3, 3, Cin, Cout) -> U (4, 4, Cin, Cout) float32, ``U[i, j] = (G g G^T)[i, j]``."""
    u = np.einsum("ia,jb,abco->ijco", G, G, kernel_hwio.astype(np.float64))
    return np.ascontiguousarray(u, dtype=np.float32)


def _output_1d(m: list) -> list:
    """A^T applied along one axis of 4 tensors -> 2 tensors (4 ADD/SUB)."""
    t = m[1] + m[2]
    u = m[1] - m[2]
    return [m[0] + t, u - m[3]]


def conv3x3(tf, x, kernel_hwio: np.ndarray, bias: np.ndarray) -> Any:
    """Winograd F(2x2, 3x3) of ``x`` (1, H, W, Cin) with a SAME (pad 1) 3x3 stride-1 kernel
    (3, 3, Cin, Cout) and bias (Cout,) -> (1, H, W, Cout). Graph in the module docstring."""
    _, h, w, cin = (int(d) for d in x.shape)
    cout = int(kernel_hwio.shape[3])
    th, tw = -(-h // TILE_OUT), -(-w // TILE_OUT)
    pad_h, pad_w = TILE_OUT * th + 2 - h - 1, TILE_OUT * tw + 2 - w - 1
    xp = tf.pad(x, [[0, 0], [1, pad_h], [1, pad_w], [0, 0]])
    f32 = np.float32
    rows = []
    for i in range(TILE_IN):
        k = np.broadcast_to(B_T[i].astype(f32)[:, None, None, None], (TILE_IN, 1, cin, 1))
        rows.append(tf.nn.depthwise_conv2d(xp, np.ascontiguousarray(k), [1, 2, 1, 1], "VALID"))
    u = transform_kernel(kernel_hwio)
    m = [[None] * TILE_IN for _ in range(TILE_IN)]
    for j in range(TILE_IN):
        k = np.ascontiguousarray(
            np.broadcast_to(B_T[j].astype(f32)[None, :, None, None], (1, TILE_IN, cin, 1))
        )
        for i in range(TILE_IN):
            v = tf.nn.depthwise_conv2d(rows[i], k, [1, 1, 2, 1], "VALID")  # (1, th, tw, Cin)
            mij = tf.nn.conv2d(v, u[i, j][None, None], 1, "VALID")  # (1, th, tw, Cout)
            if (i, j) == BIAS_COMPONENT:
                mij = tf.nn.bias_add(mij, bias.astype(f32))
            m[i][j] = mij
    t = [_output_1d(m[i]) for i in range(TILE_IN)]  # t[i][s]: columns transformed
    y = [_output_1d([t[i][s] for i in range(TILE_IN)]) for s in range(TILE_OUT)]  # y[s][r]
    tiles = tf.concat([y[s][r] for r in range(TILE_OUT) for s in range(TILE_OUT)], axis=-1)
    out = tf.nn.depth_to_space(tiles, TILE_OUT)  # (1, 2 th, 2 tw, Cout)
    if (TILE_OUT * th, TILE_OUT * tw) != (h, w):
        out = out[:, :h, :w, :]
    assert tuple(int(d) for d in out.shape) == (1, h, w, cout)
    return out
