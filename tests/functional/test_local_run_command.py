"""``yolo-sfn run`` on the toy project (see test_local_engine.py): outputs, event files."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

pytest.importorskip("moto")
pytest.importorskip("samtranslator")

from fixtures.toystack import write_toy_project

REPO = Path(__file__).resolve().parents[2]
IMAGES = sorted(p.name for p in (REPO / "testdata" / "images").iterdir())


@pytest.fixture
def toy(tmp_path_factory):
    # one environment for every function: the engine then runs invokes concurrently (a
    # per-function STAGE_NAME serializes them, so one hanging image would hold up the rest)
    return write_toy_project(tmp_path_factory.mktemp("toy"), per_function_env=False)


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


def test_run_never_replaces_files_it_did_not_write(toy, tmp_path, capsys):
    from yolo_sfn.cli import main

    out = tmp_path / "out"
    (out / "annotated").mkdir(parents=True)
    (out / "annotated" / "dog.jpg").write_bytes(b"the user's own dog.jpg")
    (out / "summary.json").write_text('{"mine": true}')
    dog = str(REPO / "testdata" / "images" / "dog.jpg")
    base = ["run", "--project", str(toy), "--model", str(_model()), "--out", str(out), "--json"]
    assert main([*base, dog]) == 2  # named before anything runs
    err = capsys.readouterr().err
    assert "summary.json is there and yolo-sfn did not write it" in err
    assert (out / "summary.json").read_text() == '{"mine": true}'
    (out / "summary.json").unlink()
    assert main([*base, dog]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert (out / "annotated" / "dog.jpg").read_bytes() == b"the user's own dog.jpg"
    assert doc["summary"]["images"][0]["annotated_path"] == "annotated/dog-2.jpg"
    assert doc["written"]["annotated"] == [str(out / "annotated" / "dog-2.jpg")]


def test_a_write_failing_midway_is_reported_and_recorded(toy, tmp_path, capsys, monkeypatch):
    import yolo_sfn.core.annotate as annotate
    from yolo_sfn.cli import main
    from yolo_sfn.errors import InputFileError

    real = annotate.annotate_file

    def disk_full_at_kite(path, rgb, dets, **kw):
        if Path(path).stem == "kite":
            Path(path).write_bytes(b"half an image")  # what a full disk leaves
            raise InputFileError(f"{path}: cannot write (No space left on device)")
        return real(path, rgb, dets, **kw)

    monkeypatch.setattr(annotate, "annotate_file", disk_full_at_kite)
    out = tmp_path / "out"
    images = [str(REPO / "testdata" / "images" / n) for n in ("dog.jpg", "kite.jpg", "girl.png")]
    base = ["run", "--project", str(toy), "--model", str(_model()), "--out", str(out), "--json"]
    assert main([*base, *images]) == 1  # not 2: the options were fine
    doc = json.loads(capsys.readouterr().out)
    assert "No space left on device" in doc["written"]["errors"][0]
    summary = json.loads((out / "summary.json").read_text())
    assert "No space left on device" in summary["write_errors"][0]
    by_name = {Path(i["local_path"]).name: i for i in summary["images"]}
    assert by_name["kite.jpg"]["annotated_path"] is None
    assert by_name["girl.png"]["annotated_path"] == "annotated/girl.jpg"  # the others went on
    record = json.loads((out / ".yolo-sfn-outputs.json").read_text())["run"]
    assert "annotated/kite.jpg" in record  # the half-written file is recorded...
    monkeypatch.setattr(annotate, "annotate_file", real)
    assert main([*base, images[0]]) == 0
    capsys.readouterr()
    # ...so the next run leaves no stale file beside a summary that does not list it
    assert sorted(p.name for p in (out / "annotated").iterdir()) == ["dog.jpg"]
    assert len(list((out / "results").iterdir())) == 1


@pytest.mark.parametrize("broken", ["text", "class_count"])
def test_run_checks_the_model_before_deploying(toy, tmp_path, capsys, broken):
    from yolo_sfn.cli import main

    model = tmp_path / "m.tflite"
    shutil.copy(_model(), model)
    meta = json.loads(Path(str(_model()) + ".json").read_text())
    if broken == "text":
        model.write_text("this is not a model\n")
    else:
        meta["num_classes"], meta["names"] = 3, meta["names"][:3]
    (tmp_path / "m.tflite.json").write_text(json.dumps(meta))
    out = tmp_path / "out"
    rc = main(["run", "--project", str(toy), "--model", str(model), "--out", str(out),
               str(REPO / "testdata" / "images" / "dog.jpg")])
    err = capsys.readouterr().err
    assert rc == 2 and not out.exists()
    assert err.startswith(f"yolo-sfn: error: {model}") and err.count("\n") == 1


def _interrupt(argv: list[str], when: str) -> tuple[int, str, str]:
    """Run ``argv`` (a yolo-sfn subprocess), send SIGINT once ``when`` is in its progress."""
    import signal
    import subprocess
    import sys
    import time

    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.Popen([sys.executable, "-m", "yolo_sfn.cli", *argv], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen, deadline = "", time.monotonic() + 120
    while when not in seen[-200:]:
        assert time.monotonic() < deadline and proc.poll() is None, seen[-2000:]
        seen += proc.stderr.read(1)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    return proc.returncode, stdout, seen + stderr


def test_ctrl_c_keeps_what_finished_and_says_so(toy, tmp_path):
    """SIGINT while one image hangs: the finished images are kept and listed, the
    unfinished one is named, exit 130. With nothing finished, --out is left as it was."""
    from yolo_sfn.cli import main

    out = tmp_path / "out"
    base = ["run", "--project", str(toy), "--model", str(_model()), "--out", str(out),
            "--fast-retries"]
    images = [str(REPO / "testdata" / "images" / n) for n in IMAGES]
    assert main([*base, images[0]]) == 0
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    rc, _, err = _interrupt([*base, "--fault", "infer:timeout:*:all", *images], "items 0/")
    assert rc == 130 and f"interrupted before any image finished: {out} was left as it was" in err
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    # postprocess, not infer: the engine runs one Infer invoke at a time (one loaded model),
    # so a hanging Infer would hold up every other image until its Lambda timeout
    rc, stdout, err = _interrupt([*base, "--fault", "postprocess:timeout:kite.jpg", *images],
                                 f"{len(images) - 1}/{len(images)} done")
    assert rc == 130, err[-2000:]
    assert "interrupted: 1 image(s) not finished" in stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["interrupted"] and summary["succeeded"] == len(images) - 1
    (kite,) = [i for i in summary["images"] if i["status"] == "interrupted"]
    assert kite["local_path"].endswith("kite.jpg")
    assert len(list((out / "results").iterdir())) == len(images) - 1
    assert (out / "function-logs.jsonl").is_file()
    assert not (out / ".yolo-sfn-function-logs.partial.jsonl").exists()


NAMES_S3_CANNOT_TAKE = ["cr\rreturn.jpg", "del\x7f.jpg", "c1\x85next.jpg", "line\u2028sep.jpg",
                        "nonchar\ufffe.jpg", "nul-ish\x01.jpg", "%0A.jpg", "\n.jpg", "a..b.jpg",
                        "é" * 120 + ".jpg"]


def test_names_s3_cannot_take_are_mapped_one_by_one(toy, tmp_path, capsys):
    from yolo_sfn.cli import main

    d = tmp_path / "in"
    d.mkdir()
    for name in NAMES_S3_CANNOT_TAKE:
        shutil.copy(REPO / "testdata" / "images" / "dog.jpg", d / name)
    bad = os.fsdecode(os.fsencode(d) + b"/\xff\xfe.jpg")  # not UTF-8: an old zip's names
    shutil.copy(REPO / "testdata" / "images" / "dog.jpg", bad)
    out = tmp_path / "out"
    rc = main(["run", "--project", str(toy), "--model", str(_model()), "--out", str(out), str(d)])
    printed = capsys.readouterr()
    assert rc == 0, printed.err
    summary = json.loads((out / "summary.json").read_text())
    local = {i["local_path"]: i for i in summary["images"]}
    assert sorted(local) == sorted([str(d / n) for n in NAMES_S3_CANNOT_TAKE] + [bad])
    assert all(i["status"] == "succeeded" for i in local.values())
    assert len({i["uri"] for i in local.values()}) == len(local)  # "%0A.jpg" and "\n.jpg" apart
    assert "\\xff\\xfe.jpg" in printed.out and "cr\\rreturn.jpg" in printed.out
    annotated = {local[p]["annotated_path"] for p in local}
    assert len(annotated) == len(local) and all((out / a).is_file() for a in annotated)


def test_names_at_the_filesystem_limit_still_get_annotated_copies(toy, tmp_path):
    from yolo_sfn.cli import main

    name = "y" * 251 + ".jpg"  # 255 bytes: "-2" more would be a name the filesystem refuses
    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
        shutil.copy(REPO / "testdata" / "images" / "dog.jpg", tmp_path / sub / name)
    out = tmp_path / "out"
    assert main(["run", "--project", str(toy), "--model", str(_model()), "--out", str(out),
                 "--json", str(tmp_path / "a"), str(tmp_path / "b")]) == 0
    written = sorted(p.name for p in (out / "annotated").iterdir())
    assert written == sorted([name, "y" * 249 + "-2.jpg"])


def test_a_record_from_before_two_writers_still_clears_that_run(toy, tmp_path):
    from yolo_sfn.cli import main

    out = tmp_path / "out"
    (out / "results").mkdir(parents=True)
    (out / "results" / "old.json").write_text("{}")
    (out / "summary.json").write_text("{}")
    (out / "function-logs.jsonl").write_text("")  # written, not listed, by that version
    (out / "IMG_0001.jpg").write_bytes(b"a photo")  # listed below by hand: never removed
    (out / ".yolo-sfn-outputs.json").write_text(
        '["summary.json", "results/old.json", "IMG_0001.jpg"]')
    assert main(["run", "--project", str(toy), "--model", str(_model()), "--out", str(out),
                 "--json", str(REPO / "testdata" / "images" / "dog.jpg")]) == 0
    assert not (out / "results" / "old.json").exists()
    assert (out / "IMG_0001.jpg").read_bytes() == b"a photo"
    record = json.loads((out / ".yolo-sfn-outputs.json").read_text())
    assert "results/old.json" not in record["run"] and "summary.json" in record["run"]


def test_a_file_that_cannot_be_read_fails_alone(toy, tmp_path, capsys, monkeypatch):
    from yolo_sfn.cli import main

    real_open = Path.open

    def denied(self, *args, **kwargs):  # what chmod 000 does to anyone but root
        if self.name == "kite.jpg":
            raise PermissionError(13, "Permission denied", str(self))
        return real_open(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", denied)
    images = [str(REPO / "testdata" / "images" / n) for n in ("dog.jpg", "kite.jpg")]
    rc = main(["run", "--project", str(toy), "--model", str(_model()), "--out",
               str(tmp_path / "out"), *images])
    assert rc == 1
    out = capsys.readouterr().out
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    by_name = {Path(i["local_path"]).name: i for i in summary["images"]}
    assert by_name["dog.jpg"]["status"] == "succeeded"
    assert by_name["kite.jpg"]["error"]["stage"] == "upload"
    assert f"{images[1]}: cannot read (Permission denied)" in out


def test_batch_size_option_sets_the_children_and_cost_json_counts_them(tmp_path, capsys):
    """`run --batch-size 2` on the real template: 5 images in children of 2, 2 and 1 (a size
    that does not divide the count), every image once; cost.json's counts follow the batches
    (4 invokes per child + Plan + Summarize; one EXPRESS request per child)."""
    from yolo_sfn.cli import main

    out = tmp_path / "out"
    rc = main(["run", "--batch-size", "2", "--out", str(out), "--json",
               str(REPO / "testdata" / "images")])
    assert rc == 0
    capsys.readouterr()
    results = [json.loads(p.read_text()) for p in (out / "results").glob("*.json")]
    sizes = {r["child"]["id"]: r["child"]["size"] for r in results}
    assert sorted(sizes.values()) == [1, 2, 2]
    summary = json.loads((out / "summary.json").read_text())
    assert sorted(i["uri"].rsplit("/", 1)[-1] for i in summary["images"]) == IMAGES
    cost = json.loads((out / "cost.json").read_text())
    assert cost["images"] == len(IMAGES)
    assert cost["counts"]["lambda_invocations"] == 4 * 3 + 2
    assert cost["counts"]["sfn_express_requests"] == 3
    assert cost["usd"]["total"] == pytest.approx(sum(
        cost["usd"][k] for k in ("lambda", "step_functions", "s3", "dynamodb")))
