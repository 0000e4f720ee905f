"""Sample events in the repository's ``events/`` folder, shared by the tests, the local
runner and ``sam local invoke -e events/<name>.json``.

Per stage: ``plan_images``, ``plan_prefix``, ``plan_manifest``, ``summarize``; per child
(one batch of three: ``dog.jpg``, ``girl.png`` and a ``not-an-image.jpg`` that fails in
Preprocess): ``preprocess`` (the ItemBatcher envelope), ``infer``, ``postprocess``, ``store``
and ``store_failure`` (RecordBatchFailure after Postprocess timed out). Whole executions:
``batch_samples`` (every image in ``testdata/images`` as ``s3://yolo-sfn-input/samples/<file>``)
and ``batch_with_errors`` (a duplicate, a missing object, a non-image).
"""

from __future__ import annotations

import json
from pathlib import Path

from yolo_sfn.errors import InputFileError

EVENTS_DIR = Path(__file__).resolve().parents[3] / "events"


def event_path(name: str, directory: str | Path | None = None) -> Path:
    base = Path(directory) if directory is not None else EVENTS_DIR
    return base / (name if name.endswith(".json") else name + ".json")


def load_event(name: str, directory: str | Path | None = None) -> dict:
    """``load_event("preprocess")`` -> the parsed ``events/preprocess.json`` (a fresh copy)."""
    path = event_path(name, directory)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        known = sorted(p.stem for p in path.parent.glob("*.json"))
        raise InputFileError(f"{path}: no such sample event (known: {', '.join(known)})") from None
    except (OSError, ValueError) as e:
        raise InputFileError(f"{path}: unreadable sample event ({e})") from e


def list_events(directory: str | Path | None = None) -> list[str]:
    base = Path(directory) if directory is not None else EVENTS_DIR
    return sorted(p.stem for p in base.glob("*.json"))
