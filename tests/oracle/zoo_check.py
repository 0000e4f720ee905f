"""One darknet cfg through the converter and an oracle: shared by ``tools/zoo.py`` (every cfg
of a folder, by hand) and ``tests/oracle/test_zoo.py`` (the CI subset).

:func:`check` writes random darknet weights for the cfg at a small input size, converts them
with ``yolo_sfn.convert`` (fp32 unless told), runs the ``.tflite`` on a real image (stretched,
RGB / 255) and decodes the heads with ``yolo_sfn.core.decode``. The oracle computes the same
rows (``cx, cy, w, h, obj, obj * class prob``) from the cfg and the weights file:

* ``opencv``: ``cv2.dnn.readNetFromDarknet`` on a normalized copy of the cfg (``thresh=0.001``
  in every head, as oracle.md says; the input size set; a repeated option kept once, its first
  value, as darknet reads it; anchor lists cut or padded to ``2 * num`` as darknet reads them);
* ``numpy``: :mod:`darknet_ref`, an independent numpy forward pass written from darknet's layer
  definitions, where OpenCV cannot load the cfg or ignores an option darknet honours (xnor /
  binary, dilation, share_index, stride_x != stride_y, shortcut weights, Gaussian_yolo heads,
  sam, reorg3d, local_avgpool), and for [region] cfgs at fp16/int8 (OpenCV's region layer
  ends in an NMS that turns small quantization differences into zeroed scores).

Pass: every row matches within ``ATOL`` (boxes in normalized coordinates, scores), and the
scores are not degenerate (random weights must give spread-out objectness).
"""

from __future__ import annotations

import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from yolo_sfn.darknet.cfg import HEAD_SECTIONS

ROOT = Path(__file__).resolve().parents[2]
IMAGE = sorted((ROOT / "testdata" / "images").iterdir())[0]
ATOL = 1e-3


@dataclass
class Result:
    cfg: str
    size: tuple[int, int] | None = None
    converts: bool = False
    oracle: str = ""  # opencv | numpy | ""
    passed: bool = False
    max_box: float = float("nan")
    max_score: float = float("nan")
    gflop: float = float("nan")
    seconds: float = 0.0
    error: str = ""
    rows: int = 0


def opencv_cfg_text(text: str, size_hw: tuple[int, int], network) -> str:
    """The cfg as darknet reads it, in a form OpenCV's importer reads the same way."""
    out, seen, section, head_no = [], set(), "", -1
    heads = network.yolo_layers
    for raw in text.splitlines():
        line = "".join(raw.split()).split("#", 1)[0]
        if not line or line[0] == ";":
            continue
        if line.startswith("["):
            section, seen = line[1:-1], set()
            out.append(line)
            if section in HEAD_SECTIONS:
                head_no += 1
                p = heads[head_no].params
                out.append("thresh=0.001")
                out.append("nms_threshold=0")
                out.append("anchors=" + ",".join(f"{a:g}" for a in p.anchors))
                seen |= {"thresh", "anchors", "nms_threshold"}
            if section in ("net", "network"):
                out += [f"height={size_hw[0]}", f"width={size_hw[1]}"]
                seen |= {"height", "width"}
            continue
        key = line.partition("=")[0]
        if key in seen:
            continue  # darknet keeps the first value; OpenCV would keep the last
        seen.add(key)
        out.append(line)
    return "\n".join(out) + "\n"


def opencv_region_nms(rows: np.ndarray, nms: float = 0.4) -> np.ndarray:
    """OpenCV's [region] layer ends with darknet's old ``do_nms_sort`` (NMS threshold 0.4,
    not configurable from the cfg): per class, walk the rows by score (stable, descending)
    and zero that class's score in every later row whose centre-format IoU with a kept row
    exceeds 0.4; before that it zeroes scores <= the cfg's thresh (0.001 in our copy).
    Applied to our rows so they compare with OpenCV's."""
    out = rows.copy()
    out[:, 5:][out[:, 5:] <= np.float32(0.001)] = 0
    cx, cy, w, h = (out[:, k].astype(np.float64) for k in range(4))
    x1, x2, y1, y2 = cx - w / 2, cx + w / 2, cy - h / 2, cy + h / 2
    area = w * h
    for k in range(5, out.shape[1]):
        probs = out[:, k]
        order = np.argsort(-probs, kind="stable")
        for n, i in enumerate(order):
            if probs[i] == 0:
                continue
            rest = order[n + 1 :]
            iw = np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest])
            ih = np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest])
            inter = np.where((iw < 0) | (ih < 0), 0.0, iw * ih)
            iou = inter / (area[i] + area[rest] - inter)
            probs[rest[iou > nms]] = 0
    return out


def needs_numpy_oracle(network) -> str:
    """Why OpenCV's importer cannot stand for darknet on this network ('' if it can)."""
    for layer in network.layers:
        p = layer.params
        if layer.kind in ("Gaussian_yolo", "sam", "reorg3d", "local_avgpool", "contrastive",
                          "activation", "crnn"):
            return f"[{layer.kind}]"
        if layer.kind == "convolutional" and (
            p.xnor or p.binary or p.dilation > 1 or p.share_index is not None
            or p.stride_x != p.stride_y
        ):
            return "conv xnor/binary/dilation/share_index/stride_x"
        if layer.kind == "shortcut" and p.weights_type != "none":
            return "shortcut weights"
        if layer.kind == "maxpool" and p.stride_x != p.stride_y:
            return "maxpool stride_x"
    return ""


def image_batch(size_hw: tuple[int, int]) -> np.ndarray:
    from yolo_sfn.core.image import load_image_file
    from yolo_sfn.core.preprocess import to_network_input

    batch, _ = to_network_input(load_image_file(IMAGE), size_hw, "stretch")
    return batch


def opencv_rows(cfg_text: str, weights: Path, batch_u8: np.ndarray, tmp: Path) -> np.ndarray:
    import cv2

    copy = tmp / "oracle.cfg"
    copy.write_text(cfg_text)
    net = cv2.dnn.readNetFromDarknet(str(copy), str(weights))
    net.setInput(batch_u8.astype(np.float32).transpose(0, 3, 1, 2) / np.float32(255))
    outs = net.forward(net.getUnconnectedOutLayersNames())
    return np.concatenate([o.reshape(-1, o.shape[-1]) for o in outs])


def numpy_rows(network, weights: Path, batch_u8: np.ndarray) -> np.ndarray:
    import darknet_ref

    x = batch_u8[0].astype(np.float64).transpose(2, 0, 1) / 255.0
    return darknet_ref.decode(network, darknet_ref.forward(network, weights, x))


def our_rows(tflite: Path, batch_u8: np.ndarray) -> np.ndarray:
    from yolo_sfn.core.decode import decode_heads
    from yolo_sfn.core.runtime import Model

    model = Model.load(tflite)
    boxes, obj, cls = decode_heads(model.run(batch_u8), model.meta)
    return np.concatenate([boxes, obj[:, None], cls], axis=1)


def pick_size(cfg: Path, size: int | None):
    """The cfg parsed at ``size``; by default at its own size when that is at most 160 x 160
    pixels (the test cfgs, non-square ones too), else at the smallest of 128, 160, 192, 256
    it parses at."""
    from yolo_sfn.darknet.cfg import parse_cfg
    from yolo_sfn.errors import CfgError

    if size is not None:
        return parse_cfg(cfg, size=size)
    try:
        native = parse_cfg(cfg)
        if native.net.width * native.net.height <= 160 * 160:
            return native
    except CfgError:
        pass
    err = None
    for s in (128, 160, 192, 256):
        try:
            return parse_cfg(cfg, size=s)
        except CfgError as e:
            err = e
    raise err  # type: ignore[misc]


def check(
    cfg: Path,
    tmp: Path,
    *,
    size: int | None = None,
    seed: int = 7,
    precision: str = "fp32",
    oracle: str = "auto",
    winograd: bool = False,
    atol: tuple[float, float] = (ATOL, ATOL),
) -> Result:
    """Convert ``cfg`` with random weights and compare with an oracle (module docstring).
    ``winograd``: off by default (conversion is 2-4x faster without the Winograd graphs,
    which tests/oracle/test_opencv_oracle.py checks on yolov3/yolov4). ``atol``: (box, score)
    tolerances (reduced precisions need looser ones)."""
    from yolo_sfn.convert import convert
    from yolo_sfn.darknet.weights import write_random_weights

    t0 = time.perf_counter()
    res = Result(cfg.name)
    try:
        network = pick_size(cfg, size)
        res.size = network.input_shape[:2]
        res.gflop = network.conv_gflop
        weights = write_random_weights(network, tmp / f"{cfg.stem}.weights", seed=seed)
        classes = network.yolo_layers[0].params.classes
        names = tmp / "names.txt"
        names.write_text("".join(f"c{i}\n" for i in range(classes)))
        out = tmp / f"{cfg.stem}.tflite"
        convert(cfg, weights, out, names=names, size=res.size, precision=precision,
                calibration=IMAGE.parent if precision == "int8" else None,
                winograd=winograd and precision == "fp32")
        res.converts = True
        batch = image_batch(res.size)
        ours = our_rows(out, batch)
        why = needs_numpy_oracle(network)
        if precision != "fp32" and oracle == "auto" and all(
            la.kind == "region" for la in network.yolo_layers
        ):  # OpenCV's region NMS turns small quantization differences into zeroed scores
            why = "region head at reduced precision"
        ref = None
        if oracle in ("auto", "opencv") and not why:
            try:
                ref = opencv_rows(opencv_cfg_text(cfg.read_text(), res.size, network), weights,
                                  batch, tmp)
                res.oracle = "opencv"
                if all(layer.kind == "region" for layer in network.yolo_layers):
                    ours = opencv_region_nms(ours)
            except Exception as e:  # cv2.error: OpenCV cannot load or run it
                if oracle == "opencv":
                    raise
                why = f"opencv: {str(e).strip().splitlines()[-1][:80]}"
        if ref is None:
            ref = numpy_rows(network, weights, batch)
            res.oracle = "numpy"
        res.rows = int(ours.shape[0])
        if ours.shape != ref.shape:
            raise AssertionError(f"rows {ours.shape} vs oracle {ref.shape}")
        res.max_box = float(np.abs(ours[:, :4] - ref[:, :4]).max())
        res.max_score = float(np.abs(ours[:, 4:] - ref[:, 4:]).max())
        spread = float(ours[:, 4].std())
        res.passed = bool(
            np.isfinite(ours).all() and res.max_box <= atol[0] and res.max_score <= atol[1]
            and spread > 0.01
        )
        if not res.passed:
            res.error = f"objectness std {spread:.3f}" if spread <= 0.01 else "outside tolerance"
    except Exception as e:  # the table reports every failure in one line
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        res.error = f"{type(e).__name__}: {first[:160]}"
        if not res.converts and "Error" not in type(e).__name__:
            res.error += " @ " + traceback.format_exc().strip().splitlines()[-3].strip()[:80]
    res.seconds = time.perf_counter() - t0
    return res
