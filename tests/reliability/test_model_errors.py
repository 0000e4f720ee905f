"""Bad models at the core level (no workflow): ``Model.load`` names the file and the problem
in one plain line -- no interpreter traceback, no numpy reprs -- for every variant the
workflow test deploys (test_workflow_models.py), plus an empty file."""

from __future__ import annotations

import re

import pytest
from test_workflow_models import VARIANTS, _variant

runtime = pytest.importorskip("yolo_sfn.core.runtime")
from yolo_sfn.errors import ModelError  # noqa: E402

LOADABLE_META = [n for n in VARIANTS if n not in ("tflite-missing", "sidecar-missing")]
NUMPY_REPR = re.compile(r"np\.(u?int|float)\d+\(")


def _load_error(path) -> str:
    with pytest.raises(ModelError) as info:
        runtime.Model.load(path)
    return str(info.value)


@pytest.mark.parametrize("name", [*LOADABLE_META, "empty"])
def test_model_load_error_is_one_clear_line(rel_model, tmp_path, name) -> None:
    if name == "empty":
        path = tmp_path / "empty.tflite"
        path.write_bytes(b"")
        meta = rel_model.with_name(rel_model.name + ".json").read_text()
        path.with_name(path.name + ".json").write_text(meta)
    else:
        path, _ = _variant(rel_model, tmp_path, name)
    msg = _load_error(path)
    assert path.name in msg, msg
    assert "\n" not in msg.strip() and "Traceback" not in msg, msg


def test_input_size_mismatch_message_has_plain_numbers(rel_model, tmp_path) -> None:
    """F8 (fixed): the message used numpy 2 scalar reprs (np.int32(1), ...)."""
    path, _ = _variant(rel_model, tmp_path, "input-mismatch")
    msg = _load_error(path)
    assert not NUMPY_REPR.search(msg), msg
    assert "(1, 416, 416, 3)" in msg and "(320, 320)" in msg, msg
