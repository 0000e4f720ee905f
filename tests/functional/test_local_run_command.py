"""``yolo-sfn run`` on the toy project (see test_local_engine.py): outputs, event files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

pytest.importorskip("moto")
pytest.importorskip("samtranslator")

from yolo_sfn.local.testing import write_toy_project

REPO = Path(__file__).resolve().parents[2]
IMAGES = sorted(p.name for p in (REPO / "testdata" / "images").iterdir())


@pytest.fixture
def toy(tmp_path_factory):
    return write_toy_project(tmp_path_factory.mktemp("toy"))


def _model(tmp_path=None):
    """A real model: `run` loads it before deploying (the toy handlers do not use it)."""
    from yolo_sfn.demo import ensure_demo_model

    return Path(ensure_demo_model())


def test_run_command_writes_outputs(toy, tmp_path, capsys):
    from yolo_sfn.cli import main

    model = _model()
    images = tmp_path / "in"
    images.mkdir()
    for name in IMAGES[:2]:
        shutil.copy(REPO / "testdata" / "images" / name, images / name)
    shutil.copy(REPO / "testdata" / "images" / IMAGES[0], images / "with space é.jpg")
    out = tmp_path / "out"
    # a mistyped path: one line naming it, before anything is deployed or written
    rc = main(["run", "--project", str(toy), "--model", str(model), "--out", str(out),
               "--json", str(images), str(tmp_path / "gone.jpg")])
    assert rc == 2 and not out.exists()
    assert f"{tmp_path / 'gone.jpg'}: no such file or folder" in capsys.readouterr().err
    rc = main(["run", "--project", str(toy), "--model", str(model), "--out", str(out),
               "--json", str(images)])
    assert rc == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["status"] == "SUCCEEDED" and doc["local_engine_notes"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["unique"] == 3 and summary["failed"] == 0
    assert {i["uri"].rsplit("/", 1)[-1] for i in summary["images"]} == {
        *IMAGES[:2], "with space é.jpg"}
    assert len(list((out / "results").glob("*.json"))) == 3
    assert (out / "annotated" / "with space é.jpg").is_file()


def test_run_command_event_file(toy, tmp_path, capsys):
    from yolo_sfn.cli import main

    shutil.copytree(REPO / "testdata" / "images", toy / "testdata" / "images",
                    dirs_exist_ok=True)
    (tmp_path / "photo.jpg").write_bytes((REPO / "testdata" / "images" / IMAGES[0]).read_bytes())
    event = tmp_path / "batch.json"
    event.write_text(json.dumps({
        "images": [f"s3://yolo-sfn-input/{IMAGES[1]}", "s3://other-bucket/x/photo.jpg"],
        "batch_id": "evt", "local_files": {"s3://other-bucket/x/photo.jpg":
                                           str(tmp_path / "photo.jpg")}}))
    rc = main(["run", "--project", str(toy), "--model", str(_model()), "--out",
               str(tmp_path / "out"), "--json", str(event)])
    assert rc == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["summary"]["batch_id"] == "evt" and doc["summary"]["succeeded"] == 2


def test_same_file_name_from_two_folders_is_kept_apart(tmp_path):
    from yolo_sfn.local.runner import inputs_from_paths

    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
        shutil.copy(REPO / "testdata" / "images" / IMAGES[0], tmp_path / sub / "x.jpg")
    inputs = inputs_from_paths([tmp_path / "a", tmp_path / "b", tmp_path / "a" / "x.jpg"])
    assert inputs.execution_input["images"] == [
        "s3://yolo-sfn-input/x.jpg", "s3://yolo-sfn-input/2/x.jpg", "s3://yolo-sfn-input/x.jpg"]
    assert len(inputs.uploads) == 2 and not inputs.missing


def test_run_command_injected_faults_show_retries_and_failures(toy, tmp_path, capsys):
    from yolo_sfn.cli import main

    rc = main(["run", "--project", str(toy), "--model", str(_model(tmp_path)), "--out",
               str(tmp_path / "out"), "--fast-retries", "--fault", "infer:s3_transient:dog.jpg",
               "--fault", "postprocess:crash:kite.jpg:all",
               str(REPO / "testdata" / "images" / "dog.jpg"),
               str(REPO / "testdata" / "images" / "kite.jpg")])
    assert rc == 1  # kite.jpg failed
    out = capsys.readouterr().out
    assert "retried invokes: 1" in out
    assert "postprocess: RuntimeError: injected crash" in out


def test_run_command_exits_non_zero_when_the_execution_fails(toy, tmp_path, capsys):
    from yolo_sfn.cli import main

    rc = main(["run", "--project", str(toy), "--model", str(_model(tmp_path)), "--json",
               "--out", str(tmp_path / "out"), "--fault", "plan:crash::all",
               str(REPO / "testdata" / "images" / "dog.jpg")])
    assert rc == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["status"] == "FAILED" and doc["error"] == "RuntimeError"


def test_fault_option_parsing():
    from yolo_sfn.commands.run import parse_fault
    from yolo_sfn.errors import InputValidationError

    f = parse_fault("store:throttle:*.png:all")
    assert (f.stage, f.kind, f.match, f.times) == ("store", "throttle", "*.png", None)
    assert parse_fault("infer:timeout").times == 1
    with pytest.raises(InputValidationError):
        parse_fault("infer")
    with pytest.raises(InputValidationError):
        parse_fault("infer:explode")


def test_same_name_images_get_two_annotated_files_and_reruns_replace_outputs(toy, tmp_path):
    from yolo_sfn.cli import main

    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
    shutil.copy(REPO / "testdata" / "images" / "dog.jpg", tmp_path / "a" / "x.jpg")
    shutil.copy(REPO / "testdata" / "images" / "kite.jpg", tmp_path / "b" / "x.jpg")
    out = tmp_path / "out"
    base = ["run", "--project", str(toy), "--model", str(_model(tmp_path)), "--out", str(out),
            "--json"]
    assert main([*base, str(tmp_path / "a" / "x.jpg"), str(tmp_path / "b" / "x.jpg")]) == 0
    assert sorted(p.name for p in (out / "annotated").iterdir()) == ["x-2.jpg", "x.jpg"]
    assert len(list((out / "results").glob("*.json"))) == 2
    (out / "mine.txt").write_text("not ours")
    (out / "results" / "notes.json").write_text("{}")  # the user's, not in the run's record
    assert main([*base, str(tmp_path / "a" / "x.jpg")]) == 0
    assert [p.name for p in (out / "annotated").iterdir()] == ["x.jpg"]
    results = sorted(p.name for p in (out / "results").glob("*.json"))
    assert len(results) == 2 and "notes.json" in results  # the earlier run's result is gone
    assert (out / "mine.txt").read_text() == "not ours"
    # the earlier run's annotated images as this run's input, written into the same folder
    before = (out / "annotated" / "x.jpg").read_bytes()
    assert main([*base, str(out / "annotated")]) == 0
    assert (out / "annotated" / "x.jpg").read_bytes() == before  # an input: not touched
    assert sorted(p.name for p in (out / "annotated").iterdir()) == ["x-2.jpg", "x.jpg"]


def test_sub_folders_are_named_not_silently_skipped(toy, tmp_path, capsys):
    from yolo_sfn.cli import main

    (tmp_path / "in" / "deeper").mkdir(parents=True)
    shutil.copy(REPO / "testdata" / "images" / "dog.jpg", tmp_path / "in" / "dog.jpg")
    shutil.copy(REPO / "testdata" / "images" / "dog.jpg", tmp_path / "in" / "deeper" / "d.jpg")
    rc = main(["run", "--project", str(toy), "--model", str(_model(tmp_path)), "--out",
               str(tmp_path / "out"), "--json", str(tmp_path / "in")])
    doc = json.loads(capsys.readouterr().out)
    assert rc == 0 and doc["summary"]["unique"] == 1
    (note,) = doc["input_notes"]
    assert "not searched recursively" in note and str(tmp_path / "in" / "deeper") in note
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    rc = main(["run", "--project", str(toy), str(tmp_path / "empty")])
    err = capsys.readouterr().err
    assert rc == 2 and f"no input images in {tmp_path / 'empty'}" in err
    assert "skipped 1 sub-folder(s)" in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--fault", "nostage:crash"], "no stage 'nostage' (the template's stages: infer, plan"),
        (["--fault", "infer:crash:*:0"], "fault times must be >= 1 or 'all', got 0"),
        (["--out", "/proc/yolo-sfn-no"], "--out /proc/yolo-sfn-no: cannot write there"),
    ],
)
def test_bad_run_options_are_refused_before_the_run(toy, tmp_path, capsys, argv, message):
    from yolo_sfn.cli import main

    rc = main(["run", "--project", str(toy), "--model", str(_model(tmp_path)), *argv,
               str(REPO / "testdata" / "images" / "dog.jpg")])
    assert rc == 2 and message in capsys.readouterr().err
