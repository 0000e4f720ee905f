"""Option checks shared by the subcommands (yolo_sfn.commands.checks) and the CLI's handling
of AWS client errors: bad input is one line naming it, exit status 2, before any work."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from yolo_sfn import cli
from yolo_sfn.commands import checks
from yolo_sfn.errors import InputFileError

CFG = Path(__file__).resolve().parents[2] / "testdata" / "cfg" / "yolov3-tiny.cfg"


def test_path_arg_refuses_an_empty_path():
    assert checks.path_arg("a/b") == Path("a/b")
    for bad in ("", "  "):
        with pytest.raises(argparse.ArgumentTypeError, match="empty path"):
            checks.path_arg(bad)


def test_unit_float_and_int_in():
    assert checks.unit_float("0.5") == 0.5
    for bad in ("1.5", "-0.1", "nan", "inf", "abc"):
        with pytest.raises(argparse.ArgumentTypeError):
            checks.unit_float(bad)
    parse = checks.int_in(1, 8)
    assert parse("8") == 8
    for bad in ("0", "9", "1.5", "x"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse(bad)


def test_output_dir_and_file(tmp_path):
    made = checks.output_dir(tmp_path / "a" / "b", "--out")
    assert made.is_dir() and not list(made.iterdir())  # the write probe is removed
    a_file = tmp_path / "f"
    a_file.write_text("x")
    with pytest.raises(InputFileError, match=r"--out .*f: exists and is not a folder"):
        checks.output_dir(a_file, "--out")
    with pytest.raises(InputFileError, match="cannot write there"):
        checks.output_dir(Path("/proc/yolo-sfn-test"), "--out")
    with pytest.raises(InputFileError, match="is a folder, give a file name"):
        checks.output_file(tmp_path, "-o/--out")
    assert checks.output_file(tmp_path / "new" / "m.tflite", "-o") == tmp_path / "new" / "m.tflite"
    assert (tmp_path / "new").is_dir()


def test_convert_refuses_an_unwritable_output_before_converting(tmp_path, capsys):
    weights = tmp_path / "w.weights"
    weights.write_bytes(b"\0" * 64)  # never read: the output check comes first
    rc = cli.main(["model", "convert", "--cfg", str(CFG), "--weights", str(weights),
                   "-o", "/proc/yolo-sfn-test/m.tflite"])
    assert rc == 2 and "-o/--out /proc/yolo-sfn-test: cannot write there" in (
        capsys.readouterr().err)
    rc = cli.main(["model", "convert", "--cfg", str(CFG), "--weights", str(weights),
                   "-o", str(tmp_path)])
    assert rc == 2 and "is a folder, give a file name" in capsys.readouterr().err


def test_threads_are_bounded(monkeypatch, capsys):
    """XNNPACK's thread pool segfaults at 65,536 threads: refused, on the CLI and in the env."""
    from yolo_sfn.core.runtime import default_threads
    from yolo_sfn.env import INFER_THREADS, MAX_THREADS
    from yolo_sfn.errors import ModelError

    with pytest.raises(SystemExit) as e:
        cli.main(["detect", "--threads", str(MAX_THREADS + 1), "x.jpg"])
    assert e.value.code == 2 and f"not in 1..{MAX_THREADS}" in capsys.readouterr().err
    monkeypatch.setenv(INFER_THREADS, str(MAX_THREADS + 1))
    with pytest.raises(ModelError, match=f"must be in 1..{MAX_THREADS}"):
        default_threads()


def test_aws_client_errors_are_one_line(monkeypatch, tmp_path, capsys):
    pytest.importorskip("boto3")
    for var in ("AWS_DEFAULT_REGION", "AWS_REGION", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    rc = cli.main(["list"])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("yolo-sfn: error: AWS: ") and "region" in err


def test_submit_checks_its_input_before_asking_aws(monkeypatch, capsys):
    for var in ("AWS_DEFAULT_REGION", "AWS_REGION"):
        monkeypatch.delenv(var, raising=False)
    rc = cli.main(["submit", "--stack", "s", "s3://b/k.jpg", "--batch-id", "bad id/x"])
    assert rc == 2 and "--batch-id 'bad id/x'" in capsys.readouterr().err
    rc = cli.main(["submit", "--stack", "s", "notanuri"])
    assert rc == 2 and "'notanuri': not an s3:// URI" in capsys.readouterr().err
