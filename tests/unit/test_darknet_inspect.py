"""``yolo-sfn model inspect``: darknet's layer table, heads, GFLOP, weights byte count."""

from __future__ import annotations

from pathlib import Path

from yolo_sfn.cli import main
from yolo_sfn.darknet.cfg import parse_cfg
from yolo_sfn.darknet.weights import write_random_weights

ZOO = Path(__file__).resolve().parents[2] / "testdata" / "cfg" / "zoo"


def test_inspect_prints_darknet_table_heads_and_total(capsys):
    rc = main(["model", "inspect", "--cfg", str(ZOO / "mini-features.cfg")])
    out = capsys.readouterr().out
    assert rc == 0
    lines = out.splitlines()
    assert "input 96 x 64 x 3, letter_box" in lines[0]
    assert any(" 1 conv " in ln and "3 x3/ 1(2)" in ln and "48 x  32 x    8" in ln
               for ln in lines)
    assert any("reorg3d" in ln and "12 x   8 x   96" in ln for ln in lines)
    assert "head 0: [Gaussian_yolo] layer 17, grid 12x8" in out
    assert "head 1: [yolo] layer 22, grid 48x32" in out and "new_coords" in out
    assert "GFLOP" in out and "every section converts" in out


def test_inspect_checks_the_weights_byte_count(tmp_path, capsys):
    cfg = ZOO / "mini-v2-reorg.cfg"
    weights = write_random_weights(parse_cfg(cfg), tmp_path / "w.weights")
    assert main(["model", "inspect", "--cfg", str(cfg), "--weights", str(weights)]) == 0
    assert ": match" in capsys.readouterr().out
    weights.write_bytes(weights.read_bytes() + b"\0" * 8)
    assert main(["model", "inspect", "--cfg", str(cfg), "--weights", str(weights)]) == 2
    assert "DO NOT match" in capsys.readouterr().out


def test_inspect_size_override_and_cfg_error_name_file_and_line(tmp_path, capsys):
    assert main(["model", "inspect", "--cfg", str(ZOO / "mini-v2-reorg.cfg"),
                 "--size", "128x96"]) == 0
    assert "input 128 x 96 x 3" in capsys.readouterr().out
    bad = tmp_path / "bad.cfg"
    bad.write_text((ZOO / "mini-v2-reorg.cfg").read_text().replace("stride=2\n",
                                                                    "stirde=2\n", 1))
    assert main(["model", "inspect", "--cfg", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and f"{bad}:" in err and "'stirde'" in err
