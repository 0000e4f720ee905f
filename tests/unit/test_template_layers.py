"""Layers: each function carries only what it imports, and the layer builds target Lambda.

The size budget and the import check of the built layers under Python 3.12 are in
``layers/check_layers.py`` (needs ``sam build``); here: the template's layer map, the layer
requirements, the pip flags, and that every stage's imports need no layer it does not have.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from yolo_sfn.local.template import load_cfn_yaml
from yolo_sfn.workflow.handlers import LOGICAL_IDS

ROOT = Path(__file__).resolve().parents[2]
LAYERS = ROOT / "layers"
# distribution -> the top-level module a stage imports
IMPORT_NAME = {"ai-edge-litert": "ai_edge_litert", "opencv-python-headless": "cv2",
               "numpy": "numpy", "aws-lambda-powertools": "aws_lambda_powertools"}
EXPECTED = {  # stage -> its own layers (CoreLayer comes from Globals)
    "plan": [], "preprocess": ["ImageLayer"], "infer": ["RuntimeLayer"],
    "postprocess": ["NumpyLayer"], "store": [], "summarize": [],
}
# what each stage imports lazily, beyond its handler module
STAGE_MODULES = {
    "preprocess": ["yolo_sfn.core.image", "yolo_sfn.core.preprocess"],
    "infer": ["yolo_sfn.core.runtime"],
    "postprocess": ["yolo_sfn.core.postprocess", "yolo_sfn.core.preprocess"],
}


@pytest.fixture(scope="module")
def template() -> dict:
    return load_cfn_yaml(ROOT / "template.yaml")


def layer_resources(template: dict) -> dict[str, dict]:
    return {k: v for k, v in template["Resources"].items()
            if v["Type"] == "AWS::Serverless::LayerVersion"}


def requirements(layer_dir: Path) -> set[str]:
    names = set()
    for line in (layer_dir / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            names.add(re.split(r"[<>=!~;\[ ]", line, maxsplit=1)[0].lower())
    return names


def layers_of(template: dict, stage: str) -> list[str]:
    glob = template["Globals"]["Function"].get("Layers", [])
    own = template["Resources"][LOGICAL_IDS[stage]]["Properties"].get("Layers", [])
    return [ref["Ref"] for ref in (*glob, *own)]


def provided_modules(template: dict, layer_ids: list[str]) -> set[str]:
    res = template["Resources"]
    return {IMPORT_NAME[d] for lid in layer_ids
            for d in requirements(ROOT / res[lid]["Properties"]["ContentUri"])
            if d in IMPORT_NAME}


def test_each_function_gets_exactly_its_layers(template: dict) -> None:
    assert [r["Ref"] for r in template["Globals"]["Function"]["Layers"]] == ["CoreLayer"]
    for stage, own in EXPECTED.items():
        assert layers_of(template, stage) == ["CoreLayer", *own], stage
    infer = layers_of(template, "infer")
    assert "RuntimeLayer" in infer and "ImageLayer" not in infer


def test_layer_requirements_split_the_runtime_dependencies(template: dict) -> None:
    res = layer_resources(template)
    assert set(res) == {"CoreLayer", "RuntimeLayer", "ImageLayer", "NumpyLayer"}
    req = {lid: requirements(ROOT / r["Properties"]["ContentUri"]) for lid, r in res.items()}
    assert req["RuntimeLayer"] == {"ai-edge-litert", "numpy"}
    assert req["ImageLayer"] == {"opencv-python-headless", "numpy"}
    assert req["NumpyLayer"] == {"numpy"}
    assert req["CoreLayer"] == {"aws-lambda-powertools"}  # not in the python3.12 runtime
    # the package's own runtime dependencies are all in some layer (boto3: the runtime's)
    pyproject = (ROOT / "pyproject.toml").read_text()
    deps = re.search(r"^dependencies = \[(.*?)\]", pyproject, re.S | re.M).group(1)
    names = {re.split(r"[<>=!~;\[ ]", d, maxsplit=1)[0].lower()
             for d in re.findall(r'"([^"]+)"', deps)}
    assert names - {"boto3", "pyyaml"} <= set().union(*req.values())


def test_layers_are_makefile_builds_for_lambda_python312(template: dict) -> None:
    pip_mk = (LAYERS / "pip.mk").read_text()
    for flag in ("--only-binary=:all:", "--implementation cp", "--python-version 3.12",
                 "manylinux_2_28_$(PIP_PLATFORM_ARCH)", "constraints.txt"):
        assert flag in pip_mk, flag
    for lid, r in layer_resources(template).items():
        props = r["Properties"]
        assert r["Metadata"]["BuildMethod"] == "makefile", lid
        assert props["CompatibleRuntimes"] == ["python3.12"], lid
        makefile = (ROOT / props["ContentUri"] / "Makefile").read_text()
        assert f"build-{lid}:" in makefile and "include $(HERE)../pip.mk" in makefile, lid
        assert "$(PIP_LAMBDA)" in makefile and 'python"' in makefile, lid
        if lid != "CoreLayer":  # binary wheels: built for the chosen architecture
            assert props["CompatibleArchitectures"] == [{"Ref": "Architecture"}], lid


@pytest.mark.skipif(shutil.which("make") is None, reason="needs GNU make")
@pytest.mark.parametrize(("arch", "platform"), [("x86_64", "x86_64"), ("arm64", "aarch64")])
def test_layer_makefiles_follow_lambda_arch(arch: str, platform: str, tmp_path: Path) -> None:
    out = subprocess.run(
        ["make", "-n", "-f", str(LAYERS / "runtime" / "Makefile"), "build-RuntimeLayer",
         f"ARTIFACTS_DIR={tmp_path}", f"LAMBDA_ARCH={arch}"],
        capture_output=True, text=True, check=True, cwd=tmp_path).stdout
    assert f"--platform manylinux_2_28_{platform}" in out
    assert {"x86_64", "aarch64"} - {platform} & set(re.findall(r"manylinux\w+?_(x86_64|aarch64)",
                                                               out)) == set()
    bad = subprocess.run(
        ["make", "-n", "-f", str(LAYERS / "numpy" / "Makefile"), "build-NumpyLayer",
         f"ARTIFACTS_DIR={tmp_path}", "LAMBDA_ARCH=aarch64"],
        capture_output=True, text=True, cwd=tmp_path)
    assert bad.returncode != 0 and "expected x86_64 or arm64" in bad.stderr


_BLOCKED_IMPORT = r"""
import importlib.abc, importlib.util, json, sys
blocked, handler, modules = set(json.loads(sys.argv[1])), sys.argv[2], json.loads(sys.argv[3])

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in blocked:
            raise ImportError(f"{name} is not in this function's layers")
        return None

for m in list(sys.modules):
    if m.split(".")[0] in blocked:
        del sys.modules[m]
sys.meta_path.insert(0, Block())
spec = importlib.util.spec_from_file_location("app", handler)
app = importlib.util.module_from_spec(spec)
spec.loader.exec_module(app)
for m in modules:
    __import__(m)
if "yolo_sfn.core.preprocess" in modules and "cv2" in blocked:  # Transform works without cv2
    from yolo_sfn.core.preprocess import Transform
    t = Transform.from_dict({"mode": "stretch", "src_hw": [2, 4], "dst_hw": [4, 4],
                             "scale_xy": [1.0, 2.0], "pad_xy": [0, 0]})
    import numpy as np
    assert t.norm_to_src_xyxy(np.array([[0, 0, 1, 1]], np.float32)).tolist() == [[0, 0, 4, 2]]
print(sorted({m.split(".")[0] for m in sys.modules} & set(json.loads(sys.argv[4]))))
"""


@pytest.mark.parametrize("stage", sorted(EXPECTED))
def test_stage_imports_need_no_layer_it_lacks(template: dict, stage: str) -> None:
    """Handler + the stage's lazy imports, in a fresh interpreter where every module that
    only other functions' layers provide raises ImportError."""
    all_layers = list(layer_resources(template))
    everything = provided_modules(template, all_layers)
    mine = provided_modules(template, layers_of(template, stage))
    blocked = sorted(everything - mine)
    proc = subprocess.run(
        [sys.executable, "-c", _BLOCKED_IMPORT, json.dumps(blocked),
         str(ROOT / "functions" / stage / "app.py"), json.dumps(STAGE_MODULES.get(stage, [])),
         json.dumps(sorted(everything))],
        capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    loaded = set(json.loads(proc.stdout.strip().splitlines()[-1].replace("'", '"')))
    assert loaded <= mine, (stage, loaded - mine)
    if stage == "infer":
        assert "cv2" in blocked and "cv2" not in loaded
