"""darknet cfg parser: schema defaults, index resolution, shapes, error messages."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from yolo_sfn.cli import main
from yolo_sfn.darknet.cfg import (
    SCHEMAS,
    TRAINING_ONLY,
    ConvParams,
    MaxPoolParams,
    parse_cfg,
    parse_cfg_text,
)
from yolo_sfn.errors import CfgError, InputFileError

CFG_DIR = Path(__file__).resolve().parents[2] / "testdata" / "cfg"

HEAD = "[net]\nwidth=64\nheight=64\nchannels=3\n"
YOLO = "[yolo]\nmask=0\nanchors=10,14\nclasses=1\nnum=1\n"


def net_text(body: str, head: str = HEAD) -> str:
    return head + body


# --- the four reference cfgs -----------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "layers", "grids"),
    [
        ("yolov3-tiny", 24, [(13, 13), (26, 26)]),
        ("yolov4-tiny", 38, [(13, 13), (26, 26)]),
        ("yolov3", 107, [(13, 13), (26, 26), (52, 52)]),
        ("yolov4", 162, [(52, 52), (26, 26), (13, 13)]),
    ],
)
def test_reference_cfgs_shapes(name, layers, grids):
    net = parse_cfg(CFG_DIR / f"{name}.cfg", size=416)
    assert len(net.layers) == layers
    assert [y.out_shape for y in net.yolo_layers] == [(*g, 255) for g in grids]
    for layer in net.layers:
        assert all(v > 0 for v in layer.out_shape)
        assert all(i < layer.index for i in layer.inputs)


def test_size_override_and_cfg_default():
    assert parse_cfg(CFG_DIR / "yolov4.cfg").input_shape == (608, 608, 3)
    net = parse_cfg(CFG_DIR / "yolov4.cfg", size=320)
    assert net.input_shape == (320, 320, 3)
    assert [y.out_shape[:2] for y in net.yolo_layers] == [(40, 40), (20, 20), (10, 10)]
    assert parse_cfg(CFG_DIR / "yolov3-tiny.cfg", size=(320, 416)).input_shape == (320, 416, 3)


@pytest.mark.parametrize("size", [0, 100, 417, -32])
def test_size_must_be_multiple_of_32(size):
    with pytest.raises(CfgError, match="multiples of 32"):
        parse_cfg(CFG_DIR / "yolov3-tiny.cfg", size=size)


def test_yolov3_tiny_maxpool_size2_stride1_keeps_13x13():
    net = parse_cfg(CFG_DIR / "yolov3-tiny.cfg", size=416)
    pools = [layer for layer in net.layers if layer.kind == "maxpool"]
    assert [p.params.stride for p in pools] == [2, 2, 2, 2, 2, 1]
    last = pools[-1]
    assert last.params == MaxPoolParams(size=2, stride=1, padding=1, stride_x=1, stride_y=1)
    assert last.params.pad_before == 0
    assert last.in_shapes[0] == last.out_shape == (13, 13, 512)


def test_yolov4_spp_maxpools():
    net = parse_cfg(CFG_DIR / "yolov4.cfg", size=416)
    spp = [layer for layer in net.layers if layer.kind == "maxpool"]
    assert [(p.params.size, p.params.padding, p.params.pad_before) for p in spp] == [
        (5, 4, 2),
        (9, 8, 4),
        (13, 12, 6),
    ]
    assert all(p.out_shape == (13, 13, 512) for p in spp)


def test_negative_route_and_shortcut_resolved_at_parse_time():
    net = parse_cfg(CFG_DIR / "yolov3-tiny.cfg")
    routes = [layer for layer in net.layers if layer.kind == "route"]
    assert [r.params.layers for r in routes] == [(13,), (19, 8)]  # "-4" and "-1, 8"
    assert routes[1].out_shape == (26, 26, 384)
    v3 = parse_cfg(CFG_DIR / "yolov3.cfg")
    sc = next(layer for layer in v3.layers if layer.kind == "shortcut")
    assert sc.params.from_ == (sc.index - 3,)
    assert sc.inputs == (sc.index - 1, sc.index - 3)


def test_route_groups_take_a_channel_chunk():
    net = parse_cfg(CFG_DIR / "yolov4-tiny.cfg", size=416)
    r = net.layers[3]
    assert r.kind == "route" and (r.params.groups, r.params.group_id) == (2, 1)
    assert r.in_shapes == ((104, 104, 64),) and r.out_shape == (104, 104, 32)


def test_yolo_params_from_yolov4():
    net = parse_cfg(CFG_DIR / "yolov4.cfg")
    y = net.yolo_layers[0].params
    assert (y.classes, y.num, y.mask, y.scale_x_y) == (80, 9, (0, 1, 2), 1.2)
    assert (y.nms_kind, y.beta_nms, y.new_coords) == ("greedy", 0.6, False)
    assert y.masked_anchors == ((12.0, 16.0), (19.0, 36.0), (40.0, 28.0))


# --- schema defaults ---------------------------------------------------------------------------
def test_every_darknet_default_spelled_out():
    body = "[convolutional]\n[maxpool]\n[maxpool]\nstride=2\n[convolutional]\nfilters=6\n"
    net = parse_cfg_text(net_text(body + YOLO), path="t.cfg")
    conv = net.layers[0].params
    assert conv == ConvParams(
        filters=1,
        size=1,
        stride=1,
        pad=False,
        padding=0,
        groups=1,
        batch_normalize=False,
        activation="logistic",
        stride_x=1,
        stride_y=1,
    )
    assert net.layers[1].params == MaxPoolParams(size=1, stride=1, padding=0, stride_x=1,
                                                 stride_y=1)
    assert net.layers[2].params == MaxPoolParams(size=2, stride=2, padding=1, stride_x=2,
                                                 stride_y=2)  # size := stride
    assert net.layers[2].out_shape == (32, 32, 1)
    y = net.yolo_layers[0].params
    assert (y.scale_x_y, y.thresh, y.nms_kind, y.beta_nms) == (1.0, 0.2, "greedy", 0.6)


def test_conv_pad_semantics():
    text = net_text(
        "[convolutional]\nfilters=6\nsize=3\nstride=2\npad=1\n"
        "[convolutional]\nfilters=6\nsize=3\nstride=1\npadding=0\n"
        "[convolutional]\nfilters=6\nsize=1\n" + YOLO
    )
    net = parse_cfg_text(text)
    assert net.layers[0].params.pad_px == 1 and net.layers[0].out_shape == (32, 32, 6)
    assert net.layers[1].params.pad_px == 0 and net.layers[1].out_shape == (30, 30, 6)


def test_training_only_options_are_accepted():
    parse_cfg_text(
        net_text(
            YOLO.replace(
                "num=1\n", "num=1\njitter=.3\nignore_thresh=.7\niou_loss=ciou\nmax_delta=5\n"
            ).replace("[yolo]", "[convolutional]\nfilters=6\n[yolo]"),
            HEAD + "batch=64\nmosaic=1\nlearning_rate=0.001\n",
        )
    )


def test_description_is_immutable():
    net = parse_cfg(CFG_DIR / "yolov3-tiny.cfg")
    with pytest.raises(dataclasses.FrozenInstanceError):
        net.layers[0].params.filters = 3  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        net.layers[0].out_shape = (1, 1, 1)  # type: ignore[misc]
    assert isinstance(net.layers, tuple)


def test_schema_table_covers_supported_sections():
    assert set(SCHEMAS) == {
        "net", "convolutional", "route", "shortcut", "maxpool", "local_avgpool", "avgpool",
        "dropout", "contrastive", "upsample", "scale_channels", "sam", "reorg3d", "reorg",
        "activation", "crnn", "yolo", "Gaussian_yolo", "region",
    }


# --- errors ---------------------------------------------------------------------------------------
def _err(text: str) -> str:
    with pytest.raises(CfgError) as e:
        parse_cfg_text(text, path="x.cfg")
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("x.cfg")
    return msg


def test_unknown_section_names_file_line_section():
    msg = _err(net_text("[convolutional]\nfilters=6\n\n[reorg4d]\nstride=2\n" + YOLO))
    assert msg.startswith("x.cfg:8:") and "[reorg4d]" in msg and "unknown section" in msg


def test_unknown_option_names_file_line_option():
    msg = _err(net_text("[convolutional]\nfilters=6\nfliters=3\n" + YOLO))
    assert msg.startswith("x.cfg:7:") and "'fliters'" in msg and "[convolutional]" in msg


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ("[convolutional]\nfilters=abc\n", "filters='abc'"),
        ("[convolutional]\nfilters=6\nactivation=stair\n", "unsupported activation"),
        ("[convolutional]\nfilters=6\nbatch_normalize=3\n", "batch_normalize"),
        ("[route]\nlayers=-9\n", "out of range"),
        ("[route]\n", "missing required option 'layers'"),
        (
            "[convolutional]\nfilters=7\n[yolo]\nmask=0\nanchors=1,2\nclasses=1\nnum=1\n",
            "expected len(mask)",
        ),
        ("[convolutional]\nfilters=6\n[yolo]\nmask=0,4\nanchors=1,2\nclasses=1\nnum=1\n", "mask"),
        ("[convolutional]\nfilters=6\nsize=99\n", "empty"),
        ("[convolutional]\nfilters=6\nfliters=6\nfliters=7\n", "'fliters'"),
        ("[convolutional]\nfilters\n", "expected option=value"),
    ],
)
def test_bad_values(body, needle):
    text = (
        net_text(body)
        if "[yolo]" in body
        else net_text(body + "[convolutional]\nfilters=6\n" + YOLO)
    )
    assert needle in _err(text)


def test_first_section_must_be_net_and_a_yolo_is_needed():
    assert "first section" in _err("[convolutional]\nfilters=1\n")
    assert "no detection head" in _err(net_text("[convolutional]\nfilters=6\n"))


def test_missing_file():
    with pytest.raises(InputFileError, match=r"nope\.cfg: cfg file not found"):
        parse_cfg("nope.cfg")


def test_cli_reports_cfg_error_in_one_line(tmp_path, capsys):
    cfg = tmp_path / "bad.cfg"
    cfg.write_text(net_text("[convolutional]\nfilters=6\n[yolo3]\n"))
    weights = tmp_path / "w.weights"
    weights.write_bytes(b"\0" * 20)
    rc = main(
        [
            "model",
            "convert",
            "--cfg",
            str(cfg),
            "--weights",
            str(weights),
            "-o",
            str(tmp_path / "m.tflite"),
        ]
    )
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert err.count("\n") == 0 and str(cfg) in err and "[yolo3]" in err


def test_cli_missing_cfg(tmp_path, capsys):
    rc = main(
        [
            "model",
            "convert",
            "--cfg",
            str(tmp_path / "no.cfg"),
            "--weights",
            "w",
            "-o",
            str(tmp_path / "m.tflite"),
        ]
    )
    assert rc == 2 and "no.cfg: cfg file not found" in capsys.readouterr().err


# --- property: darknet's maxpool/conv output-size formulas --------------------------------------
@given(size=st.integers(1, 7), stride=st.integers(1, 3), hw=st.integers(8, 40))
def test_maxpool_shape_matches_brute_force_window_count(size, stride, hw):
    text = net_text(
        f"[maxpool]\nsize={size}\nstride={stride}\n[convolutional]\nfilters=6\n" + YOLO,
        head=f"[net]\nwidth={hw}\nheight={hw}\nchannels=3\n",
    )
    out = parse_cfg_text(text).layers[0].out_shape[0]
    before = (size - 1) // 2
    # darknet: output i covers input rows [i*stride - before, i*stride - before + size)
    # and the loop runs while the window start stays inside the padded input
    n = len(range(0, hw + (size - 1) - size + 1, stride))
    assert out == n
    assert (out - 1) * stride - before < hw  # every window sees at least one real pixel


# --- the darknet zoo: options table, repeated options, new sections -------------------------
def test_repeated_option_keeps_the_first_value_as_darknet():
    net = parse_cfg_text(net_text("[convolutional]\nfilters=6\nfilters=9\n" + YOLO))
    assert net.layers[0].params.filters == 6


def test_training_only_options_are_type_checked_and_listed_with_a_reason():
    assert all(why for _, why in TRAINING_ONLY.values())
    assert ("net", "label_smooth_eps") in TRAINING_ONLY
    assert ("net", "label_smoothing_eps") not in TRAINING_ONLY  # darknet never read that one
    assert ("convolutional", "stopbackward") in TRAINING_ONLY or ("*", "stopbackward") in (
        TRAINING_ONLY)
    msg = _err(net_text("[convolutional]\nfilters=6\nstopbackward=yes\n" + YOLO))
    assert msg.startswith("x.cfg:7:") and "stopbackward='yes'" in msg
    parse_cfg_text(net_text("[convolutional]\nfilters=6\nstopbackward=1\n" + YOLO,
                            HEAD + "ema_alpha=0.9998\nmax_epochs=300\n"))


def test_only_default_values_are_refused_with_the_reason():
    msg = _err(net_text("[convolutional]\nfilters=6\nantialiasing=1\n" + YOLO))
    assert msg.startswith("x.cfg:7:") and "antialiasing=1 is not supported" in msg


@pytest.mark.parametrize(
    ("section", "needle"),
    [("[detection]\nclasses=20\n", "YOLOv1"), ("[local]\nfilters=4\n", "YOLOv1"),
     ("[connected]\noutput=4\n", "[connected] (fully connected")],
)
def test_unsupported_darknet_sections_say_so(section, needle):
    msg = _err(net_text("[convolutional]\nfilters=6\n" + section))
    assert msg.startswith("x.cfg:7:") and needle in msg


def test_anchor_lists_read_as_darknet_reads_them():
    longer = YOLO.replace("anchors=10,14", "anchors=10,14,20,30,40,50")
    y = parse_cfg_text(net_text("[convolutional]\nfilters=6\n" + longer)).yolo_layers[0].params
    assert y.anchors == (10.0, 14.0)  # only 2 * num values are read
    no_mask = YOLO.replace("mask=0\n", "").replace("num=1", "num=2").replace(
        "anchors=10,14", "anchors=10,14,20")
    y = parse_cfg_text(net_text("[convolutional]\nfilters=12\n" + no_mask)).yolo_layers[0]
    assert y.params.mask == (0, 1) and y.params.anchors == (10.0, 14.0, 20.0, 0.5)


def test_region_gaussian_and_new_layer_shapes():
    text = net_text(
        "[convolutional]\nfilters=8\nsize=3\npad=1\n"  # 0: 64x64x8
        "[avgpool]\n"  # 1: 1x1x8
        "[scale_channels]\nfrom=-2\n"  # 2: 64x64x8
        "[sam]\nfrom=-3\n"  # 3
        "[reorg3d]\nstride=2\n"  # 4: 32x32x32
        "[local_avgpool]\nsize=2\nstride=2\n"  # 5: 16x16x32
        "[dropout]\nprobability=.5\n"  # 6
        "[convolutional]\nfilters=16\ngroups=4\nsize=3\npad=1\n"  # 7: grouped
        "[shortcut]\nfrom=-3\n"  # 8: partial add 16 + 32 channels
        "[convolutional]\nfilters=12\n"
        "[region]\nanchors=1,2,3,4\nclasses=1\nnum=2\nsoftmax=1\n"
        "[route]\nlayers=-3\n"
        "[convolutional]\nfilters=10\n"
        "[Gaussian_yolo]\nmask=0\nanchors=4,5\nclasses=1\nnum=1\n"
    )
    net = parse_cfg_text(text)
    shapes = [layer.out_shape for layer in net.layers]
    assert shapes[1] == (1, 1, 8) and shapes[2] == (64, 64, 8) and shapes[4] == (32, 32, 32)
    assert shapes[5] == (16, 16, 32) and shapes[7] == (16, 16, 16) and shapes[8] == (16, 16, 16)
    assert [la.kind for la in net.yolo_layers] == ["region", "Gaussian_yolo"]
    assert net.layers[8].inputs == (7, 5) and net.layers[2].inputs == (1, 0)


def test_sidecar_heads_and_nms_as_darknet_detects():
    """Region anchors become pixels; nms_kind/beta_nms come from the LAST head (darknet's
    test_detector uses its last detection layer); letter_box from [net]."""
    from yolo_sfn.convert.tflite import build_meta

    zoo = CFG_DIR / "zoo"
    net = parse_cfg(zoo / "mini-features.cfg")
    meta = build_meta(net, name="m", names=["a", "b", "c"], precision="fp32",
                      weights_sha256="", source={})
    assert [h.kind for h in meta.heads] == ["gaussian_yolo", "yolo"]
    assert (meta.nms_kind, meta.beta_nms, meta.letter_box) == ("diou", 0.6, True)
    assert meta.input_size == (64, 96) and meta.head_shape(0) == (1, 8, 12, 2 * 12)
    v2 = parse_cfg(zoo / "mini-v2-reorg.cfg")
    meta = build_meta(v2, name="v2", names=["a", "b"], precision="fp32", weights_sha256="",
                      source={})
    (head,) = meta.heads
    assert head.kind == "region" and head.softmax and meta.nms_kind == "greedy"
    assert head.anchors[0] == [1.08 * 64 / 16, 1.19 * 64 / 16]


def test_every_activation_the_parser_accepts_has_a_converter():
    from yolo_sfn.convert.graph import ACTIVATIONS as BUILT
    from yolo_sfn.darknet.cfg import ACTIVATIONS

    assert set(ACTIVATIONS) == set(BUILT)
    assert "stair" in _err(net_text("[convolutional]\nfilters=6\nactivation=stair\n" + YOLO))


def test_option_tables_do_not_overlap():
    """An option is either converted (SCHEMAS), refused off its default (ONLY_DEFAULT, a
    subset of SCHEMAS) or training-only (TRAINING_ONLY), never two of them."""
    from yolo_sfn.darknet.cfg import ONLY_DEFAULT

    assert not [(s, k) for (s, k) in TRAINING_ONLY if s in SCHEMAS and k in SCHEMAS[s].options]
    assert all(k in SCHEMAS[s].options for (s, k) in ONLY_DEFAULT)
