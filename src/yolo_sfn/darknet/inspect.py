"""A parsed darknet cfg as darknet prints it: one row per layer (index, type, filters,
size/stride(dilation), input -> output ``W x H x C``, BFLOPs), the heads, total GFLOP, and
(given a ``.weights`` file) whether its byte count is the one the cfg needs.

Pure: builds text from a :class:`~yolo_sfn.darknet.cfg.Network`; reading files is the
caller's (``yolo-sfn model inspect``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from yolo_sfn.darknet.cfg import Layer, Network, layer_bflops
from yolo_sfn.darknet.weights import expected_floats, read_header

SHORT = {
    "convolutional": "conv",
    "maxpool": "max",
    "local_avgpool": "local_avg",
    "avgpool": "avg",
    "upsample": "upsample",
    "shortcut": "Shortcut",
    "scale_channels": "scale_ch",
    "Gaussian_yolo": "Gauss_yolo",
}


def _shape(s: tuple[int, int, int]) -> str:
    h, w, c = s
    return f"{w:4d} x{h:4d} x{c:5d}"


def _geometry(layer: Layer) -> tuple[str, str]:
    """(filters, size/stride(dilation)) columns."""
    p = layer.params
    if layer.kind == "convolutional":
        g = f"/{p.groups}" if p.groups > 1 else ""
        st = f"{p.stride_x}" if p.stride_x == p.stride_y else f"{p.stride_x},{p.stride_y}"
        dil = f"({p.dilation})" if p.dilation > 1 else ""
        xnor = " xnor" if p.xnor else ""
        return f"{p.filters}{g}", f"{p.size} x{p.size}/{st:>2}{dil}{xnor}"
    if layer.kind == "crnn":
        return f"{p.output}", f"{p.size} x{p.size}/{p.stride:>2} h{p.hidden}"
    if layer.kind in ("maxpool", "local_avgpool"):
        st = f"{p.stride_x}" if p.stride_x == p.stride_y else f"{p.stride_x},{p.stride_y}"
        return "", f"{p.size} x{p.size}/{st:>2}"
    if layer.kind in ("upsample", "reorg", "reorg3d"):
        return "", f"{'*' if layer.kind == 'upsample' else '/'}{p.stride}"
    if layer.kind == "route":
        g = f" {p.group_id}/{p.groups}" if p.groups > 1 else ""
        return "", " ".join(str(i) for i in p.layers) + g
    if layer.kind == "shortcut":
        return "", "from " + ",".join(str(i) for i in p.from_)
    if layer.kind in ("scale_channels", "sam"):
        return "", f"from {p.from_}"
    return "", ""


def layer_rows(network: Network) -> list[str]:
    """The darknet-style layer table, header first."""
    rows = [f"{'layer':>5} {'type':<11}{'filters':>8}  {'size/strd(dil)':<18}"
            f"{'input':>19}   -> {'output':>17}  {'BFLOPs':>7}"]
    for layer in network.layers:
        filters, geo = _geometry(layer)
        ins = _shape(layer.in_shapes[0]) if layer.in_shapes else ""
        bf = layer_bflops(layer)
        rows.append(
            f"{layer.index:5d} {SHORT.get(layer.kind, layer.kind):<11}{filters:>8}  {geo:<18}"
            f"{ins:>19}   -> {_shape(layer.out_shape):>17}  {bf:7.3f}".rstrip()
        )
    return rows


def head_rows(network: Network) -> list[str]:
    out = []
    _, w_in, _ = network.input_shape
    for n, layer in enumerate(network.yolo_layers):
        p = layer.params
        gh, gw, _ = layer.out_shape
        anchors = " ".join(f"{w:g},{h:g}" for w, h in p.masked_anchors)
        extra = ""
        if layer.kind != "region":
            extra = f", scale_x_y {p.scale_x_y:g}" + (", new_coords" if p.new_coords else "")
        elif p.softmax:
            extra = ", softmax"
        out.append(f"head {n}: [{layer.kind}] layer {layer.index}, grid {gw}x{gh} "
                   f"(stride {w_in // gw}), {p.classes} classes, anchors {anchors}{extra}")
    return out


@dataclass(frozen=True)
class WeightsCheck:
    path: str
    expected_bytes: int
    actual_bytes: int

    @property
    def matches(self) -> bool:
        return self.expected_bytes == self.actual_bytes

    def line(self) -> str:
        verdict = "match" if self.matches else "DO NOT match"
        return (f"weights {self.path}: {self.actual_bytes} bytes, the cfg needs "
                f"{self.expected_bytes}: {verdict}")


def check_weights(network: Network, path: str | Path) -> WeightsCheck:
    """Compare a weights file's size with what the cfg reads (header + float32 arrays)."""
    data = Path(path).read_bytes()
    header = read_header(data, path)
    need = header.nbytes + 4 * expected_floats(network)
    return WeightsCheck(str(path), need, len(data))


def report(network: Network, problems: list[str]) -> list[str]:
    """Layer table, heads, totals, and the converter's verdict (``problems``: one line each
    for layers the converter would refuse)."""
    h, w, c = network.input_shape
    lines = [f"{network.path}: input {w} x {h} x {c}"
             + (", letter_box" if network.net.letter_box else ""), *layer_rows(network), ""]
    lines += head_rows(network)
    lines.append(f"total {network.conv_gflop:.3f} GFLOP (convolutions, as darknet counts), "
                 f"{len(network.layers)} layers, {expected_floats(network)} weights")
    if problems:
        lines += ["does NOT convert:", *(f"  {p}" for p in problems)]
    else:
        lines.append("every section converts")
    return lines
