"""Read ``template.yaml`` (CloudFormation short tags included) and the ASL it points at.

This is the only place the local runner learns about the workflow: there is no second copy.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from yolo_sfn.errors import LocalEngineError

STATE_MACHINE_ID = "DetectStateMachine"
FUNCTION_IDS = {
    "plan": "PlanFunction",
    "preprocess": "PreprocessFunction",
    "infer": "InferFunction",
    "postprocess": "PostprocessFunction",
    "store": "StoreFunction",
    "summarize": "SummarizeFunction",
}
BUCKET_ID = "ArtifactsBucket"
TABLE_ID = "ResultsTable"


# --- YAML with CloudFormation short tags -------------------------------------------------
class CfnLoader(yaml.SafeLoader):
    """SafeLoader that turns ``!Ref x`` into ``{"Ref": "x"}``, ``!Sub`` into ``Fn::Sub`` ..."""


def _construct(loader: yaml.Loader, node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        return loader.construct_scalar(node)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    return loader.construct_mapping(node, deep=True)


def _short_tag(tag: str):
    def construct(loader: yaml.Loader, node: yaml.Node) -> Any:
        value = _construct(loader, node)
        if tag == "Ref":
            return {"Ref": value}
        if tag == "Condition":
            return {"Condition": value}
        if tag == "GetAtt" and isinstance(value, str):
            value = value.split(".", 1)
        return {f"Fn::{tag}": value}

    return construct


for _tag in (
    "Ref", "Condition", "GetAtt", "Sub", "Join", "Select", "Split", "If", "Equals", "Not",
    "And", "Or", "FindInMap", "Base64", "Cidr", "ImportValue", "GetAZs", "ToJsonString",
    "Transform", "Length",
):
    CfnLoader.add_constructor(f"!{_tag}", _short_tag(_tag))


def load_cfn_yaml(path: Path) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            doc = yaml.load(f, Loader=CfnLoader)  # a SafeLoader subclass
    except (OSError, yaml.YAMLError) as e:
        raise LocalEngineError(f"{path}: cannot read template ({e})") from e
    if not isinstance(doc, dict) or "Resources" not in doc:
        raise LocalEngineError(f"{path}: not a CloudFormation template (no Resources)")
    return doc


# --- the parts of the template the runner needs -----------------------------------------
@dataclass
class FunctionSpec:
    logical_id: str
    stage: str
    code_dir: Path
    handler: str
    environment: dict[str, Any]  # unresolved CFN values (resolved after deploy)
    timeout: Any
    memory: Any


@dataclass
class Template:
    path: Path
    doc: dict
    asl_path: Path
    asl: dict  # parsed; bare ${Placeholders} (numbers) read as the string "${Placeholder}"
    asl_text: str = ""  # the file as written, what CloudFormation substitutes
    functions: dict[str, FunctionSpec] = field(default_factory=dict)  # stage -> spec

    @property
    def root(self) -> Path:
        return self.path.parent

    @property
    def parameters(self) -> dict[str, dict]:
        return self.doc.get("Parameters") or {}

    def resource(self, logical_id: str) -> dict:
        res = self.doc["Resources"].get(logical_id)
        if res is None:
            raise LocalEngineError(f"{self.path}: no resource {logical_id}")
        return res


def _global_function_props(doc: dict) -> dict:
    return ((doc.get("Globals") or {}).get("Function")) or {}


def _merged_env(globals_: dict, props: dict) -> dict:
    env = dict(((globals_.get("Environment") or {}).get("Variables")) or {})
    env.update(((props.get("Environment") or {}).get("Variables")) or {})
    return env


_BARE_PLACEHOLDER = re.compile(r"([:\[,]\s*)\$\{([^}\"]+)\}")


def parse_asl(text: str) -> dict:
    """ASL JSON that may hold bare ``${Name}`` substitutions in number positions
    (``"MaxConcurrency": ${MapConcurrency}``): those parse as the string ``"${Name}"``."""
    return json.loads(_BARE_PLACEHOLDER.sub(lambda m: f'{m.group(1)}"${{{m.group(2)}}}"', text))


def read_template(path: Path) -> Template:
    """Parse ``template.yaml`` and the state machine definition it references."""
    path = Path(path).resolve()
    doc = load_cfn_yaml(path)
    sm = doc["Resources"].get(STATE_MACHINE_ID)
    if sm is None:
        raise LocalEngineError(f"{path}: no {STATE_MACHINE_ID} resource")
    props = sm.get("Properties") or {}
    uri = props.get("DefinitionUri")
    if not isinstance(uri, str):
        raise LocalEngineError(
            f"{path}: {STATE_MACHINE_ID} needs a local DefinitionUri (statemachine/*.asl.json)"
        )
    asl_path = (path.parent / uri).resolve()
    try:
        asl_text = asl_path.read_text(encoding="utf-8")
        asl = parse_asl(asl_text)
    except (OSError, ValueError) as e:
        raise LocalEngineError(f"{asl_path}: cannot read the state machine ({e})") from e
    tpl = Template(path=path, doc=doc, asl_path=asl_path, asl=asl, asl_text=asl_text)
    globals_ = _global_function_props(doc)
    for stage, logical_id in FUNCTION_IDS.items():
        res = doc["Resources"].get(logical_id)
        if res is None:
            raise LocalEngineError(f"{path}: no {logical_id} resource")
        fprops = res.get("Properties") or {}
        code_uri = fprops.get("CodeUri", globals_.get("CodeUri"))
        if not isinstance(code_uri, str):
            raise LocalEngineError(f"{path}: {logical_id} needs a local CodeUri folder")
        tpl.functions[stage] = FunctionSpec(
            logical_id=logical_id,
            stage=stage,
            code_dir=(path.parent / code_uri).resolve(),
            handler=fprops.get("Handler", globals_.get("Handler", "app.handler")),
            environment=_merged_env(globals_, fprops),
            timeout=fprops.get("Timeout", globals_.get("Timeout", 3)),
            memory=fprops.get("MemorySize", globals_.get("MemorySize", 128)),
        )
    return tpl


def find_project_root(start: Path | None = None) -> Path:
    """The folder holding ``template.yaml``: ``start``, the cwd or the package's checkout."""
    import os

    if start is not None:  # explicit: no searching elsewhere
        if (Path(start) / "template.yaml").is_file():
            return Path(start).resolve()
        raise LocalEngineError(f"{start}: no template.yaml there")
    candidates = []
    if os.environ.get("YOLO_SFN_PROJECT"):
        candidates.append(Path(os.environ["YOLO_SFN_PROJECT"]))
    candidates += [Path.cwd(), Path(__file__).resolve()]
    for cand in candidates:
        for folder in [cand, *cand.parents]:
            if (folder / "template.yaml").is_file() and (folder / "statemachine").is_dir():
                return folder.resolve()
    raise LocalEngineError(
        "cannot find the project's template.yaml (run from the checkout or set YOLO_SFN_PROJECT)"
    )
