"""Security checks on ``template.yaml`` as it deploys: the SAM template is transformed with
``samtranslator`` (policy templates, ``Tracing``, managed policies expanded to IAM roles), the
intrinsics are resolved with sentinel parameters, and every statement is checked:

* no ``Allow`` of action ``*`` (anywhere), no wildcard action on resource ``*``, no
  ``NotAction``/``NotResource`` allows, no broad managed policies;
* no role (functions *and* the state machine) can write or delete in an input bucket or the
  model's bucket (a compromised image must not be able to rewrite inputs or the model);
* every bucket is encrypted, blocks public access and denies non-TLS requests; the table is
  encrypted;
* no environment variable in the template carries a secret.

The checker is tested against deliberately bad templates so that it cannot pass vacuously.

Division of labour with ``tests/unit/test_template_sam.py`` (workflow-owned): that file checks
the raw SAM statements (wildcards, artifacts-only writes, ArtifactsBucket/ResultsTable
settings, the ASL shape). This file covers the gaps: what SAM *adds* on deploy (policy
templates such as ``LambdaInvokePolicy``, ``Tracing`` managed policies), the state machine's
role as well as the functions', IAM glob semantics on resolved ARNs (``arn:aws:s3:::*`` or an
ARN built with ``Fn::Sub`` from a parameter), the model bucket, every bucket rather than one,
and secrets in the environment.
"""

from __future__ import annotations

import copy
import fnmatch
import os
import re
from pathlib import Path

import pytest

samtranslator = pytest.importorskip("samtranslator")
from samtranslator.translator.transform import transform  # noqa: E402

from yolo_sfn.local.template import load_cfn_yaml  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"
INPUT_BUCKETS = ["sentinel-input-a", "sentinel-input-b"]
MODEL_URI = "s3://sentinel-models/models/yolov3-tiny.tflite"
PSEUDO = {"AWS::Partition": "aws", "AWS::Region": "us-east-1",
          "AWS::AccountId": "123456789012", "AWS::StackName": "stack", "AWS::URLSuffix":
          "amazonaws.com", "AWS::NoValue": None}
WRITE_ACTIONS = [
    "s3:PutObject", "s3:PutObjectAcl", "s3:PutObjectTagging", "s3:PutObjectRetention",
    "s3:PutObjectLegalHold", "s3:DeleteObject", "s3:DeleteObjectVersion",
    "s3:DeleteObjectTagging", "s3:RestoreObject", "s3:AbortMultipartUpload",
    "s3:ReplicateObject", "s3:ReplicateDelete", "s3:BypassGovernanceRetention",
    "s3:PutBucketPolicy", "s3:DeleteBucketPolicy", "s3:PutBucketAcl", "s3:DeleteBucket",
    "s3:PutLifecycleConfiguration", "s3:PutEncryptionConfiguration",
    "s3:PutBucketVersioning", "s3:PutBucketNotification",
]
ALLOWED_MANAGED = {
    "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole",
    "arn:aws:iam::aws:policy/AWSXrayWriteOnlyAccess",
    "arn:aws:iam::aws:policy/AWSXRayDaemonWriteAccess",
}
SECRET_NAME = re.compile(r"SECRET|PASSWORD|PASSWD|TOKEN|PRIVATE|ACCESS_KEY|API_KEY", re.I)


# --- SAM -> CloudFormation (no AWS calls) -----------------------------------------------
class _AnyManagedPolicy(dict):
    def __contains__(self, name: object) -> bool:
        return isinstance(name, str)

    def __getitem__(self, name: str) -> str:
        return f"arn:aws:iam::aws:policy/{name}"

    def get(self, name, default=None):
        return self[name]


class _Loader:
    def load(self) -> dict:
        return _AnyManagedPolicy()


def to_cloudformation(doc: dict) -> dict:
    """What ``sam deploy`` would create (local code paths replaced by S3 locations)."""
    doc = copy.deepcopy(doc)
    for lid, res in doc["Resources"].items():
        props = res.get("Properties") or {}
        kind = res.get("Type")
        if kind == "AWS::Serverless::Function":
            props["CodeUri"] = f"s3://pkg/{lid}.zip"
        elif kind == "AWS::Serverless::LayerVersion":
            props["ContentUri"] = f"s3://pkg/{lid}.zip"
        elif kind == "AWS::Serverless::StateMachine" and "DefinitionUri" in props:
            props["DefinitionUri"] = f"s3://pkg/{lid}.asl.json"
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    params = {"InputBucketNames": INPUT_BUCKETS, "ModelUri": MODEL_URI}
    return transform(doc, params, _Loader())


# --- intrinsics ---------------------------------------------------------------------------
class Resolver:
    """Resolve Ref/GetAtt/Sub/Join/Split/Select with sentinel values; names are readable."""

    def __init__(self, cfn: dict, params: dict) -> None:
        self.res = cfn["Resources"]
        self.params = {}
        for name, spec in (cfn.get("Parameters") or {}).items():
            value = params.get(name, spec.get("Default"))
            if spec.get("Type") == "CommaDelimitedList" and isinstance(value, str):
                value = value.split(",")
            self.params[name] = value

    def name(self, lid: str) -> str:
        return f"{lid.lower()}-physical"

    def ref(self, name: str):
        if name in PSEUDO:
            return PSEUDO[name]
        if name in self.params:
            return self.params[name]
        if name in self.res:
            return self.name(name)
        raise KeyError(f"Ref to unknown {name}")

    def getatt(self, lid: str, attr: str) -> str:
        kind = self.res[lid]["Type"]
        if attr == "Arn" and kind == "AWS::S3::Bucket":
            return f"arn:aws:s3:::{self.name(lid)}"
        if attr == "Arn" and kind == "AWS::DynamoDB::Table":
            return f"arn:aws:dynamodb:us-east-1:123456789012:table/{self.name(lid)}"
        if attr == "Arn" and kind == "AWS::Lambda::Function":
            return f"arn:aws:lambda:us-east-1:123456789012:function:{self.name(lid)}"
        return f"{self.name(lid)}.{attr}"

    def sub(self, text: str, local: dict) -> str:
        def one(m: re.Match) -> str:
            expr = m.group(1)
            if expr.startswith("!"):
                return "${" + expr[1:] + "}"
            if expr in local:
                return str(local[expr])
            if "." in expr and expr.split(".")[0] in self.res:
                return self.getatt(*expr.split(".", 1))
            return str(self.ref(expr))

        return re.sub(r"\$\{([^}]+)\}", one, text)

    def __call__(self, v):
        if isinstance(v, list):
            return [self(x) for x in v]
        if not isinstance(v, dict):
            return v
        if len(v) == 1:
            (k, arg), = v.items()
            if k == "Ref":
                return self.ref(arg)
            if k == "Fn::GetAtt":
                lid, attr = arg if isinstance(arg, list) else arg.split(".", 1)
                return self.getatt(lid, attr)
            if k == "Fn::Sub":
                text, local = (arg, {}) if isinstance(arg, str) else arg
                return self.sub(text, {n: self(x) for n, x in local.items()})
            if k == "Fn::Join":
                sep, items = self(arg[0]), self(arg[1])
                return sep.join(str(i) for i in items)
            if k == "Fn::Split":
                return str(self(arg[1])).split(self(arg[0]))
            if k == "Fn::Select":
                return self(arg[1])[int(self(arg[0]))]
            if k == "Fn::If":
                raise AssertionError(f"Fn::If in a policy: check both branches by hand: {v}")
        return {k: self(x) for k, x in v.items()}


def as_list(v) -> list:
    return v if isinstance(v, list) else [v]


def statements(cfn: dict) -> list[tuple[str, dict]]:
    """(role logical id, resolved statement) for every inline statement of every role/policy."""
    resolve = Resolver(cfn, {"InputBucketNames": INPUT_BUCKETS, "ModelUri": MODEL_URI})
    out = []
    for lid, res in cfn["Resources"].items():
        props = res.get("Properties") or {}
        docs = []
        if res["Type"] == "AWS::IAM::Role":
            docs = [p["PolicyDocument"] for p in props.get("Policies") or []]
        elif res["Type"] in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            docs = [props["PolicyDocument"]]
        for doc in docs:
            for st in as_list(resolve(doc)["Statement"]):
                out.append((lid, st))
    return out


# --- the checks ---------------------------------------------------------------------------
def _flat(values) -> list[str]:
    out = []
    for v in as_list(values):
        out.extend(_flat(v) if isinstance(v, list) else [str(v)])
    return out


def iam_problems(cfn: dict) -> list[str]:
    problems = []
    for lid, st in statements(cfn):
        if st.get("Effect") != "Allow":
            continue
        sid = f"{lid}/{st.get('Sid', '?')}"
        if "NotAction" in st or "NotResource" in st:
            problems.append(f"{sid}: Allow with NotAction/NotResource")
            continue
        actions = [a.lower() for a in _flat(st.get("Action"))]
        resources = _flat(st.get("Resource"))
        if any(a in ("*", "*:*") for a in actions):
            problems.append(f"{sid}: Allow of action '*'")
        if "*" in resources and any("*" in a for a in actions):
            problems.append(f"{sid}: wildcard action {actions} on resource '*'")
    for lid, res in cfn["Resources"].items():
        if res["Type"] == "AWS::IAM::Role":
            for arn in (res["Properties"].get("ManagedPolicyArns") or []):
                if isinstance(arn, str) and arn not in ALLOWED_MANAGED:
                    problems.append(f"{lid}: managed policy {arn}")
    return problems


def _sample_arns(bucket: str) -> list[str]:
    return [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/images/dog.jpg"]


def write_problems(cfn: dict, buckets: list[str]) -> list[str]:
    """Statements letting any role write/delete in ``buckets`` (IAM globbing, case-free)."""
    problems = []
    writes = [w.lower() for w in WRITE_ACTIONS]
    for lid, st in statements(cfn):
        if st.get("Effect") != "Allow":
            continue
        actions = [a.lower() for a in _flat(st.get("Action"))]
        hit = sorted({w for w in writes for a in actions if fnmatch.fnmatchcase(w, a)})
        if not hit:
            continue
        for bucket in buckets:
            for arn in _sample_arns(bucket):
                if any(fnmatch.fnmatchcase(arn, r) for r in _flat(st.get("Resource"))):
                    problems.append(f"{lid}/{st.get('Sid', '?')}: {hit[0]} on {arn}")
                    break
    return problems


def _true(v) -> bool:
    return v is True or str(v).lower() == "true"


def storage_problems(cfn: dict) -> list[str]:
    res = cfn["Resources"]
    problems = []
    policies = [r["Properties"] for r in res.values() if r["Type"] == "AWS::S3::BucketPolicy"]
    for lid, r in res.items():
        props = r.get("Properties") or {}
        if r["Type"] == "AWS::S3::Bucket":
            rules = (props.get("BucketEncryption") or {}).get(
                "ServerSideEncryptionConfiguration") or []
            algos = [(x.get("ServerSideEncryptionByDefault") or {}).get("SSEAlgorithm")
                     for x in rules]
            if not any(a in ("AES256", "aws:kms", "aws:kms:dsse") for a in algos):
                problems.append(f"{lid}: no default encryption")
            pab = props.get("PublicAccessBlockConfiguration") or {}
            for flag in ("BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls",
                         "RestrictPublicBuckets"):
                if not _true(pab.get(flag)):
                    problems.append(f"{lid}: PublicAccessBlockConfiguration.{flag} not true")
            if not any(_denies_insecure_transport(p, lid) for p in policies):
                problems.append(f"{lid}: no bucket policy denying aws:SecureTransport=false")
        if r["Type"] == "AWS::DynamoDB::Table":
            sse = props.get("SSESpecification") or {}
            if not _true(sse.get("SSEEnabled")):
                problems.append(f"{lid}: SSESpecification.SSEEnabled not true")
    return problems


def _denies_insecure_transport(policy: dict, bucket_lid: str) -> bool:
    if policy.get("Bucket") != {"Ref": bucket_lid}:
        return False
    for st in as_list(policy["PolicyDocument"]["Statement"]):
        cond = (st.get("Condition") or {}).get("Bool") or {}
        if st.get("Effect") == "Deny" and str(cond.get("aws:SecureTransport")).lower() == "false":
            return True
    return False


def env_problems(doc: dict) -> list[str]:
    problems = []
    envs = {"Globals": ((doc.get("Globals") or {}).get("Function") or {})}
    envs.update({lid: r.get("Properties") or {} for lid, r in doc["Resources"].items()
                 if r.get("Type") == "AWS::Serverless::Function"})
    for where, props in envs.items():
        for name, value in (((props.get("Environment") or {}).get("Variables")) or {}).items():
            if SECRET_NAME.search(name):
                problems.append(f"{where}: environment variable {name} looks like a secret")
            if isinstance(value, str) and re.search(r"(AKIA|ASIA)[A-Z0-9]{16}", value):
                problems.append(f"{where}: {name} holds an AWS access key id")
    return problems


# --- the tests ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sam() -> dict:
    if not TEMPLATE.is_file():
        pytest.skip("template.yaml not written yet")
    return load_cfn_yaml(TEMPLATE)


@pytest.fixture(scope="module")
def cfn(sam) -> dict:
    return to_cloudformation(sam)


def test_no_wildcard_permissions(cfn) -> None:
    assert iam_problems(cfn) == []


def test_no_role_can_write_an_input_bucket(cfn) -> None:
    # not vacuous: some role must be able to *read* the input buckets through the same lens
    readers = [lid for lid, st in statements(cfn)
               if any(fnmatch.fnmatchcase(f"arn:aws:s3:::{INPUT_BUCKETS[1]}/x.jpg", r)
                      for r in _flat(st.get("Resource")))]
    assert readers, "no statement mentions the input buckets: the resolver is broken"
    assert write_problems(cfn, INPUT_BUCKETS) == []


def test_no_role_can_write_the_model(cfn) -> None:
    bucket = MODEL_URI[5:].split("/")[0]
    assert write_problems(cfn, [bucket]) == []


def test_storage_encrypted_private_and_tls_only(cfn) -> None:
    buckets = [r for r in cfn["Resources"].values() if r["Type"] == "AWS::S3::Bucket"]
    assert buckets, "template has no bucket"
    assert storage_problems(cfn) == []


def test_no_secrets_in_environment(sam) -> None:
    assert env_problems(sam) == []


# --- the checker itself catches bad templates ----------------------------------------------
def _with_statement(sam: dict, statement: dict) -> dict:
    bad = copy.deepcopy(sam)
    fn = bad["Resources"]["StoreFunction"]["Properties"]
    fn.setdefault("Policies", []).append({"Statement": [statement]})
    return bad


@pytest.mark.parametrize(
    ("statement", "check"),
    [({"Effect": "Allow", "Action": "*", "Resource": "*"}, "iam"),
     ({"Effect": "Allow", "Action": "s3:*", "Resource": "*"}, "iam"),
     ({"Effect": "Allow", "NotAction": "iam:*", "Resource": "*"}, "iam"),
     ({"Effect": "Allow", "Action": "s3:PutObject",
       "Resource": {"Fn::Sub": "arn:${AWS::Partition}:s3:::" + INPUT_BUCKETS[0] + "/*"}},
      "write"),
     ({"Effect": "Allow", "Action": "S3:Delete*",
       "Resource": {"Fn::Sub": ["arn:aws:s3:::${B}/*",
                                {"B": {"Fn::Select": [1, {"Ref": "InputBucketNames"}]}}]}},
      "write"),
     ({"Effect": "Allow", "Action": ["s3:GetObject", "s3:Put*"], "Resource": "arn:aws:s3:::*"},
      "write")],
    ids=["star-star", "s3-star-on-star", "not-action", "put-input", "delete-glob", "put-all"],
)
def test_checker_catches_bad_statements(sam, statement, check) -> None:
    cfn = to_cloudformation(_with_statement(sam, statement))
    found = iam_problems(cfn) if check == "iam" else write_problems(cfn, INPUT_BUCKETS)
    assert found, f"checker missed {statement}"


def test_checker_catches_bad_storage(sam) -> None:
    bad = copy.deepcopy(sam)
    bucket = next(r for r in bad["Resources"].values() if r["Type"] == "AWS::S3::Bucket")
    bucket["Properties"].pop("BucketEncryption", None)
    bucket["Properties"]["PublicAccessBlockConfiguration"] = {"BlockPublicAcls": False}
    for lid in [k for k, r in bad["Resources"].items() if r["Type"] == "AWS::S3::BucketPolicy"]:
        del bad["Resources"][lid]
    found = storage_problems(to_cloudformation(bad))
    assert any("encryption" in p for p in found)
    assert any("BlockPublicAcls" in p for p in found)
    assert any("SecureTransport" in p for p in found)


def test_checker_catches_secret_env(sam) -> None:
    bad = copy.deepcopy(sam)
    env = bad.setdefault("Globals", {}).setdefault("Function", {}).setdefault(
        "Environment", {}).setdefault("Variables", {})
    env["AWS_SECRET_ACCESS_KEY"] = "x"
    env["CREDS"] = "AKIAABCDEFGHIJKLMNOP"
    assert len(env_problems(bad)) == 2
