"""Fixtures for the reliability suite: the model every workflow run uses."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import pytest


def _as_path(model) -> Path:
    for attr in ("path", "model_path", "tflite"):
        if hasattr(model, attr):
            return Path(getattr(model, attr))
    return Path(model)


def content_named_copy(model: Path, folder: Path) -> Path:
    """Copy ``model`` + sidecar to ``folder/<stem>-<sha12>.tflite``.

    The stages cache models by URI (in-process and on disk under MODEL_CACHE_DIR) and the
    local engine uploads to ``models/<file name>``: a content-derived name keeps another
    run's same-named model from being served (docs/RELIABILITY.md, finding F4).
    """
    digest = hashlib.sha256(model.read_bytes()).hexdigest()[:12]
    meta = model.with_name(model.name + ".json")
    digest += hashlib.sha256(meta.read_bytes()).hexdigest()[:4]
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / f"{model.stem}-{digest}.tflite"
    shutil.copyfile(model, out)
    shutil.copyfile(meta, out.with_name(out.name + ".json"))
    return out


@pytest.fixture(scope="session")
def rel_model(request, tmp_path_factory) -> Path:
    """The converted demo model (the converter's ``demo_model`` fixture), or a ``.tflite``
    named by ``YOLO_SFN_TEST_MODEL`` (sidecar next to it) for running this suite alone;
    always as a content-named copy."""
    override = os.environ.get("YOLO_SFN_TEST_MODEL")
    if override:
        model = Path(override)
    else:
        try:
            model = _as_path(request.getfixturevalue("demo_model"))
        except pytest.FixtureLookupError:
            pytest.skip("no demo_model fixture (tests/conftest.py) and YOLO_SFN_TEST_MODEL unset")
    return content_named_copy(model, tmp_path_factory.mktemp("model"))
