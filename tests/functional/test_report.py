"""The HTML report: built from a real local run (toy project) and opened in headless Chromium,
from synthesised batched results, and from an execution of a stack deployed into moto.

The browser is driven over the DevTools protocol on a pipe (``--remote-debugging-pipe``:
NUL-separated JSON on fds 3 and 4), so no websocket library or driver is needed. Without a
Chromium (Debian package ``chromium``) the browser test skips and says so.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import queue
import re
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import unquote

import pytest

pytest.importorskip("jinja2")
pytest.importorskip("matplotlib")

from yolo_sfn.report import write_report
from yolo_sfn.report.data import build
from yolo_sfn.report.thumbs import Source, make_thumb, ordered_map

REPO = Path(__file__).resolve().parents[2]
IMAGES = sorted(p.name for p in (REPO / "testdata" / "images").iterdir())
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


# --- a headless browser over the DevTools pipe -----------------------------------------
class Browser:
    """Chromium with ``--remote-debugging-pipe``: ``call(method, params)`` on one page,
    every event kept in ``events``."""

    def __init__(self, exe: str, width: int = 1280, height: int = 900):
        self.profile = tempfile.mkdtemp(prefix="yolo-sfn-report-chrome-")
        to_chrome_r, to_chrome_w = os.pipe()
        from_chrome_r, from_chrome_w = os.pipe()
        keep_r, keep_w = os.dup(to_chrome_r), os.dup(from_chrome_w)  # above 4: dup2 is safe

        def child_fds() -> None:
            os.dup2(keep_r, 3)
            os.dup2(keep_w, 4)

        self.proc = subprocess.Popen(
            [exe, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--no-default-browser-check", "--disable-extensions", "--remote-debugging-pipe",
             f"--user-data-dir={self.profile}", "--host-resolver-rules=MAP * ~NOTFOUND",
             "about:blank"],
            preexec_fn=child_fds, pass_fds=(3, 4), stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for fd in (to_chrome_r, from_chrome_w, keep_r, keep_w):
            os.close(fd)
        self._out = os.fdopen(to_chrome_w, "wb")
        self._in = os.fdopen(from_chrome_r, "rb")
        self._queue: queue.Queue = queue.Queue()
        self.events: list[dict] = []
        self._id = 0
        threading.Thread(target=self._reader, daemon=True).start()
        target = self._send("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = self._send("Target.attachToTarget",
                                  {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Runtime", "Log", "Network", "Page"):
            self.call(f"{domain}.enable")
        self.call("Emulation.setDeviceMetricsOverride", {
            "width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})

    def _reader(self) -> None:
        buf = b""
        while chunk := self._in.read1(1 << 16):
            buf += chunk
            *messages, buf = buf.split(b"\0")
            for m in messages:
                self._queue.put(json.loads(m))
        self._queue.put(None)

    def _next(self, deadline: float) -> dict:
        msg = self._queue.get(timeout=max(0.05, deadline - time.monotonic()))
        if msg is None:
            raise RuntimeError("the browser exited")
        return msg

    def _send(self, method: str, params: dict | None = None, session: str | None = None,
              timeout: float = 60) -> dict:
        self._id += 1
        msg = {"id": self._id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        self._out.write(json.dumps(msg).encode() + b"\0")
        self._out.flush()
        deadline = time.monotonic() + timeout
        while True:
            m = self._next(deadline)
            if m.get("id") == self._id:
                if "error" in m:
                    raise RuntimeError(f"{method}: {m['error']}")
                return m.get("result", {})
            self.events.append(m)

    def call(self, method: str, params: dict | None = None) -> dict:
        return self._send(method, params, self.session)

    def open(self, path: Path) -> None:
        self.events.clear()
        self.call("Page.navigate", {"url": path.resolve().as_uri()})
        deadline = time.monotonic() + 60
        while not any(e.get("method") == "Page.loadEventFired" for e in self.events):
            self.events.append(self._next(deadline))

    def js(self, expression: str):
        r = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        if "exceptionDetails" in r:
            raise RuntimeError(f"{expression}: {r['exceptionDetails']}")
        return r["result"].get("value")

    def screenshot(self, path: Path) -> None:
        shot = self.call("Page.captureScreenshot", {"format": "png",
                                                    "captureBeyondViewport": True})
        path.write_bytes(base64.b64decode(shot["data"]))

    def problems(self) -> list[str]:
        """Console errors/warnings, uncaught exceptions, browser log errors (CSP included)."""
        out = []
        for e in self.events:
            m, p = e.get("method"), e.get("params", {})
            if m == "Runtime.exceptionThrown":
                out.append(f"exception: {p['exceptionDetails']}")
            elif m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "warning",
                                                                        "assert"):
                out.append(f"console.{p['type']}: {p.get('args')}")
            elif m == "Log.entryAdded" and p["entry"]["level"] in ("error", "warning"):
                out.append(f"log: {p['entry'].get('text')} {p['entry'].get('url', '')}")
        return out

    def requested(self) -> list[str]:
        return [e["params"]["request"]["url"] for e in self.events
                if e.get("method") == "Network.requestWillBeSent"]

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._send("Browser.close", timeout=10)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.profile, ignore_errors=True)


def _browser_exe() -> str | None:
    for name in BROWSERS:
        if exe := shutil.which(name):
            return exe
    return None


@pytest.fixture(scope="module")
def browser():
    exe = _browser_exe()
    if exe is None:
        pytest.skip("no headless Chromium found (Debian: apt-get install -y chromium); the "
                    "report's browser check needs one")
    b = Browser(exe)
    yield b
    b.close()


# --- a real local run with failures ------------------------------------------------------
@pytest.fixture(scope="module")
def local_run(tmp_path_factory):
    """``yolo-sfn run`` (toy project) on the test images + a file that is no image, with
    Preprocess crashing on it and Postprocess on kite.jpg; then ``yolo-sfn report DIR``."""
    pytest.importorskip("moto")
    pytest.importorskip("samtranslator")
    from fixtures.toystack import write_toy_project

    from yolo_sfn.cli import main

    tmp = tmp_path_factory.mktemp("report-run")
    toy = write_toy_project(tmp / "toy")
    out = tmp / "out"
    (tmp / "gone.jpg").write_bytes(b"not an image")  # no thumbnail; its Preprocess crashes
    rc = main(["run", "--project", str(toy), "--out", str(out),  # the demo model, unused
               "--fault", "postprocess:crash:*kite.jpg:all",
               "--fault", "preprocess:crash:*gone.jpg:all", "--json",
               str(REPO / "testdata" / "images"), str(tmp / "gone.jpg")])
    assert rc == 1
    assert main(["report", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    return out, summary


def test_report_in_a_browser(local_run, browser, tmp_path):
    out, summary = local_run
    report = out / "report.html"
    failed = sorted(i["uri"].rsplit("/", 1)[-1] for i in summary["images"]
                    if i["status"] == "failed")
    assert failed == ["gone.jpg", "kite.jpg"]
    browser.open(report)
    # nothing but the file itself and its data: URIs; no console or CSP errors
    urls = browser.requested()
    assert urls and urls[0].startswith("file://")
    assert [u for u in urls if not u.startswith(("file:", "data:"))] == []
    assert browser.problems() == []

    page = browser.js("""(() => {
      const vis = el => !!el && el.offsetParent !== null && el.getBoundingClientRect().width > 0;
      const cards = [...document.querySelectorAll('#images .card')];
      const chart = document.getElementById('class-chart');
      return {
        title: document.title,
        failureRows: [...document.querySelectorAll('#failure-table tbody tr')].map(
            tr => [...tr.cells].map(td => td.innerText.trim())),
        failuresTop: document.getElementById('failures').getBoundingClientRect().top,
        gridTop: document.getElementById('images').getBoundingClientRect().top,
        cards: cards.map(c => ({name: c.querySelector('.name').textContent,
                                status: c.dataset.status, visible: vis(c),
                                thumb: vis(c.querySelector('svg image')),
                                placeholder: vis(c.querySelector('.noimg')),
                                links: [...c.querySelectorAll('.links a')].map(a => a.text)})),
        chart: vis(chart) && chart.complete && chart.naturalWidth > 0,
        chartAlt: chart && chart.alt,
        shown: document.getElementById('shown').innerText,
      };
    })()""")
    assert summary["batch_id"] in page["title"]
    # failures first: their own table, above the grid, and the first cards of the grid
    assert [r[0] for r in page["failureRows"]] == ["gone.jpg", "kite.jpg"]
    assert page["failureRows"][0][1:3] == ["preprocess", "RuntimeError"]
    assert page["failureRows"][1][1:3] == ["postprocess", "RuntimeError"]
    assert page["failuresTop"] < page["gridTop"]
    cards = page["cards"]
    assert [c["status"] for c in cards] == ["failed"] * 2 + ["succeeded"] * len(IMAGES[:-1])
    # one card per image, every one visible; a thumbnail for each image that could be read
    assert sorted(c["name"] for c in cards) == sorted([*IMAGES, "gone.jpg"])
    assert all(c["visible"] for c in cards)
    assert all(c["thumb"] != c["placeholder"] for c in cards)  # a picture or a placeholder
    assert next(c["name"] for c in cards if c["placeholder"]) == "gone.jpg"
    assert all(c["thumb"] for c in cards if c["status"] == "succeeded")
    if any(i.get("local_path") for i in summary["images"]):  # kite.jpg's input is known
        assert next(c["name"] for c in cards if c["thumb"]) == "kite.jpg"
    ok = [c for c in cards if c["status"] == "succeeded"]
    assert all(c["links"] == ["annotated image", "result JSON"] for c in ok)
    # the class chart is there and drawn
    assert page["chart"] and "jpg" in page["chartAlt"]
    assert page["shown"] == f"{len(cards)} of {len(cards)} shown"

    # filters (CSS, driven by radio buttons)
    def visible_after(label_for: str) -> list[str]:
        return browser.js(f"""(() => {{
          document.querySelector('label[for="{label_for}"]').click();
          return [...document.querySelectorAll('#images .card')]
            .filter(c => c.offsetParent !== null).map(c => c.querySelector('.name').textContent);
        }})()""")

    assert sorted(visible_after("st-failed")) == ["gone.jpg", "kite.jpg"]
    assert browser.js("document.getElementById('shown').innerText") == f"2 of {len(cards)} shown"
    visible_after("st-all")
    token = browser.js("""[...document.querySelectorAll('#images label')]
        .find(l => l.innerText.startsWith('png')).htmlFor""")
    assert visible_after(token) == ["girl.png"]
    visible_after("k-all")
    browser.screenshot(tmp_path / "report.png")
    assert (tmp_path / "report.png").stat().st_size > 10_000
    assert browser.problems() == []

    # JavaScript off: the same content, the filters still work (they are CSS)
    browser.call("Emulation.setScriptExecutionDisabled", {"value": True})
    try:
        browser.open(report)
        n = browser.js("[...document.querySelectorAll('#images .card')]"
                       ".filter(c => c.offsetParent !== null).length")
        assert n == len(cards)
        assert browser.js("document.getElementById('shown').hidden") is True
        assert sorted(visible_after("st-failed")) == ["gone.jpg", "kite.jpg"]
        assert browser.problems() == []
    finally:
        browser.call("Emulation.setScriptExecutionDisabled", {"value": False})


def test_links_point_at_the_run_files(local_run):
    out, _ = local_run
    html = (out / "report.html").read_text()
    hrefs = set(re.findall(r'<a href="([^"#][^"]*)"', html))
    assert hrefs, "no links to annotated images / result JSONs"
    for href in hrefs:
        assert (out / unquote(href)).is_file(), href


def test_links_survive_odd_file_names(tmp_path):
    r = _result(1)
    odd = tmp_path / "annotated" / "a #1?é.jpg"
    odd.parent.mkdir()
    shutil.copy(REPO / "testdata" / "images" / "dog.jpg", odd)
    html = write_report(tmp_path / "r.html", summary=_summary([r]), results=[r],
                        annotated={r["image_id"]: odd}).read_text()
    href = re.search(r'<a href="([^"]+)">annotated image', html).group(1)
    assert href == "annotated/a%20%231%3F%C3%A9.jpg"
    assert (tmp_path / unquote(href)).is_file()


# --- synthesised results: batched fields, cost, escaping ----------------------------------
def _result(i: int, *, failed: bool = False, child: int | None = None, name: str = "") -> dict:
    t0 = 1_700_000_000_000 + 1000 * (child or 0)
    r = {"image_id": f"img{i:04d}", "uri": f"s3://in/{name or f'p{i}.jpg'}",
         "status": "failed" if failed else "succeeded", "width": 640, "height": 480,
         "detections": [] if failed else [
             {"label": "dog", "class_id": 16, "score": 0.9, "box": [10, 10, 100, 100],
              "box_norm": [0.02, 0.02, 0.16, 0.2]}],
         "timings_ms": {"preprocess": 10.0 + i} if failed else
         {"preprocess": 10.0 + i, "infer": 300.0, "postprocess": 5.0, "store": 2.0},
         "model": {"name": "yolov4", "precision": "fp16", "weights_sha256": "ab" * 32},
         "params": {"score": 0.3, "iou": 0.5, "resize": "letterbox"},
         "error": {"stage": "infer", "type": "ModelError", "message": f"bad model {i}"}
         if failed else None}
    if child is not None:
        r["child"] = {"id": f"child-{child}", "size": 4}
        r["spans_ms"] = {"preprocess": [t0, t0 + 200], "infer": [t0 + 200, t0 + 1500],
                         "postprocess": [t0 + 1500, t0 + 1600], "store": [t0 + 1600, t0 + 1650]}
    return r


def _summary(results: list[dict], **extra) -> dict:
    failed = [r for r in results if r["status"] == "failed"]
    return {"batch_id": "b1", "execution_arn": "arn:aws:states:x", "submitted": len(results),
            "unique": len(results), "duplicates": [], "succeeded": len(results) - len(failed),
            "failed": len(failed), "class_counts": {"dog": len(results) - len(failed)},
            "images": [{"image_id": r["image_id"], "uri": r["uri"], "status": r["status"],
                        "result_uri": None, "num_detections": len(r["detections"]),
                        "error": r["error"]} for r in results], **extra}


def test_batched_results_cost_and_timeline(tmp_path):
    results = [_result(i, failed=i == 5, child=i // 4) for i in range(12)]
    cost = {"images": 12, "prices_as_of": "2026-11", "counts": {"s3_get": 36, "x": {}},
            "notes": ["prices <as of> 2026-11"],
            "usd": {"lambda": 0.0012, "step_functions": 0.0003, "s3": 0.0001,
                    "dynamodb": 0.0001, "total": 0.0017},
            "usd_per_1000_images": 0.1417, "orchestration_share": 0.18}
    path = write_report(tmp_path / "r.html", summary=_summary(results), results=iter(results),
                        notes=["a note <b>"], cost=cost,
                        execution={"status": "SUCCEEDED", "elapsed_s": 3.5})
    html = path.read_text()
    assert 'id="timeline-chart"' in html and "3 Distributed Map children" in html
    assert "$0.0017" in html and "$0.1417 per 1,000 images" in html and "18%" in html
    assert "prices &lt;as of&gt; 2026-11" in html and "<td>s3 get</td>" in html
    assert "yolov4 &middot; fp16" in html and "ab" * 32 in html
    assert "score &ge; 0.3 &middot; NMS IoU 0.5 &middot; resize letterbox" in html
    assert "a note &lt;b&gt;" in html and "3.5 s" in html
    assert html.count('class="card ') == 12
    # no spans: no timeline, and the page says why
    for r in results:
        r.pop("spans_ms")
    path = write_report(tmp_path / "r2.html", summary=_summary(results), results=results)
    html = path.read_text()
    assert 'id="timeline-chart"' not in html and "no per-child stage spans" in html


def test_user_data_is_escaped(tmp_path):
    evil = '<img src=x onerror=alert(1)>.jpg'
    r = _result(1, failed=True, name=evil)
    r["error"]["message"] = "<script>alert(2)</script>"
    html = write_report(tmp_path / "r.html", summary=_summary([r]), results=[r]).read_text()
    assert "<script>alert(2)" not in html and "&lt;script&gt;alert(2)" in html
    assert "<img src=x" not in html and "&lt;img src=x onerror=alert(1)&gt;.jpg" in html


def test_odd_cost_json_is_ignored_not_fatal(tmp_path):
    r = _result(1)
    for cost in ({"usd": 3}, {"usd": {"total": None}, "counts": [1], "notes": "x"}, [1]):
        html = write_report(tmp_path / "r.html", summary=_summary([r]), results=[r],
                            cost=cost).read_text()
        assert html.count('class="card ') == 1


def test_thumbnails_follow_the_workflow_decoder():
    """EXIF-rotated, gray, 16-bit, palette, RGBA, CMYK inputs: a thumbnail with the aspect of
    the decoded image (boxes are relative to it); a non-image: none."""
    Image = pytest.importorskip("PIL.Image")
    import io

    import numpy as np

    from yolo_sfn.core.image import decode_image

    base = Image.open(REPO / "testdata" / "images" / "dog.jpg")

    def enc(img, fmt, **kw) -> bytes:
        buf = io.BytesIO()
        img.save(buf, fmt, **kw)
        return buf.getvalue()

    exif = base.getexif()
    exif[0x0112] = 6  # displayed rotated by 90 degrees
    cases = [enc(base, "JPEG", exif=exif.tobytes()), enc(base.convert("L"), "PNG"),
             enc(base.convert("RGBA"), "PNG"), enc(base.convert("CMYK"), "JPEG"),
             enc(base.convert("P"), "GIF"), enc(base, "WEBP"),
             enc(Image.fromarray(np.asarray(base.convert("L")).astype(np.uint16) * 256), "PNG")]
    for data in cases:
        thumb = make_thumb(Source(data))
        h, w = decode_image(data, name="x").shape[:2]
        assert max(thumb.width, thumb.height) == 224
        assert abs(thumb.width / thumb.height - w / h) < 0.02
        assert thumb.data_uri.startswith("data:image/jpeg;base64,")
    assert make_thumb(Source(b"not an image")) is None


def test_ordered_map_keeps_order_and_a_bounded_window():
    started = []

    def slow(i: int) -> int:
        started.append(i)
        time.sleep(0.001 * (i % 3))
        return i * i

    seen = []
    for i, sq in ordered_map(slow, range(200), workers=4, window=8):
        assert sq == i * i
        assert len(started) <= i + 8  # never more than the window ahead of the consumer
        seen.append(i)
    assert seen == list(range(200))


def test_missing_result_and_data_shapes():
    results = [_result(1), _result(2, failed=True)]
    summary = _summary([*results, _result(3)])  # the summary lists an image with no result
    summary["images"][2].update(status="failed", error=None)
    data = build(summary, results)
    assert [r.image_id for r in data.rows] == ["img0002", "img0003", "img0001"]  # by stage
    assert data.rows[1].error["type"] == "MissingResult"
    assert data.failure_counts == [("infer", "ModelError", 1), ("unknown", "MissingResult", 1)]
    assert data.class_counts == {"dog": 2} and data.class_ids == {"dog": 16}
    assert [s.stage for s in data.stage_stats] == ["preprocess", "infer", "postprocess", "store"]


# --- a deployed execution (the toy stack in moto) -------------------------------------------
def test_report_for_an_execution(tmp_path, capsys):
    pytest.importorskip("moto")
    pytest.importorskip("samtranslator")
    from fixtures.toystack import write_toy_project

    from yolo_sfn.cli import main
    from yolo_sfn.local.engine import LocalEngine
    from yolo_sfn.local.invoke import Fault
    from yolo_sfn.remote import api

    stack = "yolo-sfn-report-test"
    toy = write_toy_project(tmp_path / "toy")
    with LocalEngine(toy, retry_scale=0.0, stack_name=stack) as eng:
        eng.deploy()
        uris, _ = eng.upload_inputs([REPO / "testdata" / "images"])
        eng.router.faults = [Fault("postprocess", "crash", match="kite.jpg", times=None)]
        sub = api.submit(stack, [*uris, "s3://yolo-sfn-input/absent.jpg"], batch_id="rep",
                         name="rep-exec")
        assert api.wait(sub["execution_arn"], poll_s=0.1, timeout_s=60)["status"] == "SUCCEEDED"
        out = tmp_path / "exec.html"
        assert main(["report", "rep-exec", "--stack", stack, "-o", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    html = out.read_text()
    assert "execution arn:aws:states:" in html and "SUCCEEDED" in html
    cards = re.findall(r'<div class="card ([^"]*)" id="img-([^"]+)"', html)
    assert len(cards) == len(IMAGES) + 1
    assert [c[0].split()[0] for c in cards[:2]] == ["s-failed", "s-failed"]
    assert html.count('<image href="data:image/jpeg;base64,') == len(IMAGES)  # from S3
    assert "ObjectNotFoundError" in html and "RuntimeError" in html
    assert "s3.console.aws.amazon.com/s3/object/yolo-sfn-input?prefix=dog.jpg" in html
