"""Deploy ``template.yaml`` into moto the way ``sam package`` + ``sam deploy`` would.

The verified five steps (docs: /work/shared/notes/local-engine.md):

1. zip each function's ``CodeUri`` folder into a moto bucket (layers get a placeholder zip:
   the local engine runs handlers with this Python environment) and inline ``DefinitionUri``;
2. ``samtranslator`` transforms the SAM template to plain CloudFormation;
3. the state machine's definition becomes ``DefinitionString`` = the ASL text with its
   ``DefinitionSubstitutions`` resolved by CloudFormation (moto reads only
   ``DefinitionString``; written as ``Fn::Join`` because moto's ``Fn::Sub`` mangles ``$$``);
4. moto's CloudFormation is pointed at the executing Step Functions backend;
5. ``create_stack`` - bucket, table, functions (environment resolved), roles, state machine.
"""

from __future__ import annotations

import copy
import io
import json
import os
import re
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from yolo_sfn.errors import LocalEngineError
from yolo_sfn.local.motohooks import executing_cloudformation_state_machines
from yolo_sfn.local.template import (
    BUCKET_ID,
    FUNCTION_IDS,
    STATE_MACHINE_ID,
    TABLE_ID,
    Template,
)

DEPLOY_BUCKET = "yolo-sfn-local-deploy"
_EMPTY_ZIP_NAME = "placeholder.txt"


@dataclass
class Stack:
    """What the runner needs from a deployed stack."""

    name: str
    region: str
    state_machine_arn: str
    bucket: str
    table: str
    functions: dict[str, str] = field(default_factory=dict)  # stage -> function name
    outputs: dict[str, str] = field(default_factory=dict)
    parameters: dict[str, str] = field(default_factory=dict)
    not_created: dict[str, str] = field(default_factory=dict)  # logical id -> type moto skips


def unsupported_resources(cfn_doc: dict) -> dict[str, str]:
    """Resources moto's CloudFormation silently skips (e.g. AWS::S3::BucketPolicy)."""
    from moto.cloudformation.parsing import NULL_MODELS, get_model_map

    known = get_model_map()
    return {
        lid: res["Type"]
        for lid, res in cfn_doc.get("Resources", {}).items()
        if res.get("Type") not in known and res.get("Type") not in NULL_MODELS
        and not str(res.get("Type", "")).startswith("Custom::")
    }


def zip_folder(folder: Path) -> bytes:
    """Deterministic zip of a folder (no __pycache__)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        if not folder.is_dir():
            zf.writestr(_EMPTY_ZIP_NAME, "")
        else:
            for path in sorted(folder.rglob("*")):
                if path.is_file() and "__pycache__" not in path.parts:
                    zf.write(path, path.relative_to(folder).as_posix())
    return buf.getvalue()


def _placeholder_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr(_EMPTY_ZIP_NAME, "layer content is not used by the local engine")
    return buf.getvalue()


class _AnyManagedPolicy(dict):
    """Managed policy map for samtranslator without calling IAM: any name -> its AWS ARN."""

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str)

    def __getitem__(self, name: str) -> str:
        return f"arn:aws:iam::aws:policy/{name}"

    def get(self, name: str, default: Any = None) -> str:
        return self[name]


class _PolicyLoader:
    def load(self) -> dict[str, str]:
        return _AnyManagedPolicy()


def package(tpl: Template, s3: Any, bucket: str = DEPLOY_BUCKET) -> dict:
    """Step 1: upload code zips, inline the ASL; returns a new SAM template dict."""
    doc = copy.deepcopy(tpl.doc)
    _ensure_bucket(s3, bucket)
    for logical_id, res in doc["Resources"].items():
        props = res.get("Properties") or {}
        rtype = res.get("Type")
        if rtype == "AWS::Serverless::Function" and isinstance(props.get("CodeUri"), str):
            body = zip_folder(tpl.root / props["CodeUri"])
            key = f"code/{logical_id}.zip"
            s3.put_object(Bucket=bucket, Key=key, Body=body)
            props["CodeUri"] = f"s3://{bucket}/{key}"
        elif rtype == "AWS::Serverless::LayerVersion" and isinstance(props.get("ContentUri"), str):
            key = f"layers/{logical_id}.zip"
            s3.put_object(Bucket=bucket, Key=key, Body=_placeholder_zip())
            props["ContentUri"] = f"s3://{bucket}/{key}"
            props.pop("Metadata", None)
        elif rtype == "AWS::Serverless::StateMachine" and logical_id == STATE_MACHINE_ID:
            # as `sam package` does; translate() swaps the S3 location for the text itself
            key = f"statemachine/{logical_id}.asl.json"
            s3.put_object(Bucket=bucket, Key=key, Body=tpl.asl_text.encode())
            props["DefinitionUri"] = f"s3://{bucket}/{key}"
    globals_fn = (doc.get("Globals") or {}).get("Function") or {}
    if isinstance(globals_fn.get("CodeUri"), str):
        raise LocalEngineError("Globals.Function.CodeUri is not supported by the local deploy")
    return doc


def translate(
    sam_doc: dict, parameters: dict[str, str], region: str, asl_text: str | None = None
) -> dict:
    """Step 2 + 3: SAM -> CloudFormation, the definition as ``DefinitionString``."""
    try:
        from samtranslator.model.exceptions import InvalidDocumentException
        from samtranslator.translator.transform import transform
    except ImportError as e:
        raise LocalEngineError("the local deploy needs aws-sam-translator") from e
    saved = os.environ.get("AWS_DEFAULT_REGION")
    os.environ["AWS_DEFAULT_REGION"] = region
    try:
        cfn = transform(sam_doc, dict(parameters), _PolicyLoader())
    except InvalidDocumentException as e:
        causes = "; ".join(str(c) for c in e.causes)
        raise LocalEngineError(f"template.yaml: SAM transform failed: {causes}") from e
    finally:
        if saved is None:
            os.environ.pop("AWS_DEFAULT_REGION", None)
        else:
            os.environ["AWS_DEFAULT_REGION"] = saved
    for res in cfn["Resources"].values():
        if res.get("Type") == "AWS::StepFunctions::StateMachine":
            _definition_as_sub(res["Properties"], asl_text)
    return cfn


_PSEUDO_ONLY = re.compile(r"\$\{(AWS::[A-Za-z]+)\}")


def resolve_pseudo_subs(node: Any, pseudo: dict[str, str]) -> Any:
    """``{"Fn::Sub": "..${AWS::Partition}.."}`` using only pseudo parameters -> the string.

    moto 5.2.5's ``Fn::Join`` needs a literal delimiter; templates write IAM ARNs with
    ``!Join [!Sub ",arn:${AWS::Partition}:s3:::", ...]``. Resolving pseudo-parameter-only
    ``Fn::Sub`` first (as CloudFormation would) makes those delimiters literal.
    """
    if isinstance(node, list):
        return [resolve_pseudo_subs(v, pseudo) for v in node]
    if not isinstance(node, dict):
        return node
    sub = node.get("Fn::Sub") if len(node) == 1 else None
    if isinstance(sub, str):
        names = set(_PLACEHOLDER.findall(sub))
        if names and all(n in pseudo for n in names):
            return _PSEUDO_ONLY.sub(lambda m: pseudo[m.group(1)], sub)
    return {k: resolve_pseudo_subs(v, pseudo) for k, v in node.items()}


def _definition_as_sub(props: dict, asl_text: str | None) -> None:
    if "DefinitionS3Location" in props:
        if asl_text is None:
            raise LocalEngineError("state machine definition is in S3 but no ASL text was given")
        props.pop("DefinitionS3Location")
        text = asl_text
    elif "Definition" in props:
        text = json.dumps(props.pop("Definition"), indent=1)
    else:
        definition = props.get("DefinitionString")
        if isinstance(definition, dict) and "Fn::Join" in definition:
            sep, parts = definition["Fn::Join"]
            if not all(isinstance(p, str) for p in parts):
                raise LocalEngineError("state machine definition has non-literal parts")
            text = sep.join(parts)
        elif isinstance(definition, str):
            text = definition
        else:
            raise LocalEngineError(f"unexpected state machine definition form: {definition!r:.80}")
    subs = props.pop("DefinitionSubstitutions", None) or {}
    props["DefinitionString"] = sub_as_join(text, subs)


_PLACEHOLDER = re.compile(r"\$\{([^}]*)\}")


def sub_as_join(text: str, subs: dict) -> dict:
    """``Fn::Sub [text, subs]`` written as ``Fn::Join``.

    moto 5.2.5's Fn::Sub runs ``string.Template.safe_substitute`` once per mapping key, which
    turns every ``$$`` (ASL context paths such as ``$$.Map.Item.Value``) into ``$``. Fn::Join
    leaves the text alone and resolves each placeholder as CloudFormation would.
    """
    parts: list[Any] = []
    pos = 0
    for m in _PLACEHOLDER.finditer(text):
        parts.append(text[pos:m.start()])
        name = m.group(1)
        if name.startswith("!"):
            parts.append("${" + name[1:] + "}")
        elif name in subs:
            parts.append(subs[name])
        elif "." in name and not name.startswith("AWS::"):
            parts.append({"Fn::GetAtt": name.split(".", 1)})
        else:
            parts.append({"Ref": name})
        pos = m.end()
    parts.append(text[pos:])
    return {"Fn::Join": ["", [p for p in parts if p != ""]]}


def _ensure_bucket(s3: Any, bucket: str) -> None:
    try:
        s3.head_bucket(Bucket=bucket)
    except Exception:
        region = s3.meta.region_name
        kwargs = {}
        if region != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
        s3.create_bucket(Bucket=bucket, **kwargs)


def create_stack(
    cfn_client: Any, name: str, cfn_doc: dict, parameters: dict[str, str], region: str
) -> Stack:
    """Step 4 + 5: create the stack in moto and collect its physical ids."""
    known = set((cfn_doc.get("Parameters") or {}).keys())
    unknown = set(parameters) - known
    if unknown:
        raise LocalEngineError(f"template.yaml has no parameters {sorted(unknown)}")
    params = [{"ParameterKey": k, "ParameterValue": str(v)} for k, v in parameters.items()]
    account = boto3_client_like(cfn_client, "sts").get_caller_identity()["Account"]
    cfn_doc = resolve_pseudo_subs(cfn_doc, {
        "AWS::Partition": "aws", "AWS::Region": region, "AWS::AccountId": account,
        "AWS::StackName": name, "AWS::URLSuffix": "amazonaws.com",
    })
    skipped = unsupported_resources(cfn_doc)
    with executing_cloudformation_state_machines(), _quiet_moto_cfn():
        cfn_client.create_stack(
            StackName=name,
            TemplateBody=json.dumps(cfn_doc),
            Parameters=params,
            Capabilities=["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM", "CAPABILITY_AUTO_EXPAND"],
        )
        desc = _wait_stack(cfn_client, name)
        stack = describe_stack(cfn_client, name, region, desc)
    stack.not_created = skipped
    return stack


@contextmanager
def _quiet_moto_cfn() -> Iterator[None]:
    """moto warns (log + UserWarning) for each skipped resource; the engine reports them."""
    import logging
    import warnings

    logger = logging.getLogger("moto")  # moto.cloudformation.parsing logs through "moto"
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*not supported by moto's CloudFormation")
            yield
    finally:
        logger.setLevel(level)


def boto3_client_like(client: Any, service: str) -> Any:
    import boto3

    return boto3.client(service, region_name=client.meta.region_name)


def _wait_stack(cfn_client: Any, name: str, timeout_s: float = 60) -> dict:
    deadline = time.monotonic() + timeout_s
    while True:
        desc = cfn_client.describe_stacks(StackName=name)["Stacks"][0]
        status = desc["StackStatus"]
        if status.endswith("_COMPLETE") and "ROLLBACK" not in status:
            return desc
        if "FAILED" in status or "ROLLBACK" in status or time.monotonic() > deadline:
            events = cfn_client.describe_stack_events(StackName=name)["StackEvents"]
            reasons = [
                f"{e['LogicalResourceId']}: {e.get('ResourceStatusReason')}"
                for e in events
                if "FAILED" in e.get("ResourceStatus", "")
            ]
            raise LocalEngineError(f"local stack {name} ended {status}: {reasons}")
        time.sleep(0.05)


def describe_stack(cfn_client: Any, name: str, region: str, desc: dict | None = None) -> Stack:
    desc = desc or cfn_client.describe_stacks(StackName=name)["Stacks"][0]
    paginator = cfn_client.get_paginator("list_stack_resources")
    physical = {
        r["LogicalResourceId"]: r["PhysicalResourceId"]
        for page in paginator.paginate(StackName=name)
        for r in page["StackResourceSummaries"]
    }
    missing = [lid for lid in (STATE_MACHINE_ID, BUCKET_ID, TABLE_ID) if lid not in physical]
    if missing:
        raise LocalEngineError(f"stack {name} lacks resources {missing}")
    return Stack(
        name=name,
        region=region,
        state_machine_arn=physical[STATE_MACHINE_ID],
        bucket=physical[BUCKET_ID],
        table=physical[TABLE_ID],
        functions={
            stage: physical[lid] for stage, lid in FUNCTION_IDS.items() if lid in physical
        },
        outputs={o["OutputKey"]: o["OutputValue"] for o in desc.get("Outputs", [])},
        parameters={p["ParameterKey"]: p["ParameterValue"] for p in desc.get("Parameters", [])},
    )
