"""AWS Lambda cost estimates, and the vCPU scaling they rely on.

Two estimates live here, and they answer different questions:

* ``yolo-sfn bench`` (``cost_table``, ``deployed_estimate``): the Lambda bill per 1,000
  images from this machine's per-image stage times (decode + preprocess, infer, postprocess),
  with the workflow's batching: one invoke per stage per batch of ``batch_size`` images, so
  ``INVOCATIONS_PER_BATCH / batch_size`` requests per image. Compute only: the stages' S3 and
  DynamoDB time, per-batch intermediates and cold starts are not in it.
* ``aws_cost``: the whole bill of one run (Lambda, Step Functions, S3, DynamoDB) from the
  operations the local engine counted, written to ``DIR/cost.json`` by ``yolo-sfn run``.

Prices (AWS Lambda, us-east-1, first tier): x86_64 $0.0000166667 per GB-s, arm64
$0.0000133334 per GB-s, $0.20 per 1M requests. Lambda allocates CPU in proportion to memory:
1,769 MB is the equivalent of one vCPU, 10,240 MB (the maximum) gives 6 vCPUs.

The time at a memory size is an *estimate* scaled from this machine's measurement:

* one Lambda vCPU is assumed as fast as one core of the measuring machine;
* below one vCPU a single thread gets ``vcpus`` of a core, so time / ``vcpus``;
* above one vCPU the multi-threaded part (inference) speeds up by ``1 + (vcpus - 1) * eff``,
  where ``eff`` is the parallel efficiency measured here (``t1 / (n * tn)`` for n threads);
  single-threaded stages (pre/post-processing) do not speed up past one vCPU.

No wall time in this module: everything is arithmetic on given milliseconds.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from yolo_sfn.contract import IMAGE_STAGES

PRICES_AS_OF = "2026-11-25"
PRICE_NOTE = (
    f"prices as published for us-east-1, first tier, as of {PRICES_AS_OF} "
    "(AWS Lambda pricing page, first tier; unchanged since 2022 as far as we know, but not "
    "re-fetched: this machine has no internet)"
)
PRICE_PER_GB_S = {"x86_64": 0.0000166667, "arm64": 0.0000133334}
PRICE_PER_REQUEST = 0.20 / 1_000_000
MB_PER_VCPU = 1769
MAX_MEMORY_MB = 10240
MIN_MEMORY_MB = 128
MAX_VCPUS = 6.0
DEFAULT_MEMORY_SIZES = (1769, 3008, 10240)
# Lambda invocations per batch (one EXPRESS child): Preprocess, Infer, Postprocess, Store,
# each invoked once with the whole batch. Per image: INVOCATIONS_PER_BATCH / batch size.
INVOCATIONS_PER_BATCH = len(IMAGE_STAGES)
SCALING_NOTE = (
    "ESTIMATE: Lambda CPU scales with memory (1769 MB = 1 vCPU, 10240 MB = 6 vCPU); time at a "
    "memory size = this machine's measured time scaled by the vCPU share (1 Lambda vCPU assumed "
    "= 1 core here; inference speed-up past 1 vCPU = 1 + (vCPUs - 1) x measured parallel "
    "efficiency; pre/post single-threaded). Not measured on Lambda."
)
ROWS_NOTE = (
    "each --memory-sizes row prices every measured stage (decode + preprocess, infer, "
    "postprocess) at that one memory size; the table above prices each stage at its own "
    "template MemorySize"
)
SCOPE_NOTE = (
    "Lambda only, from this machine's per-image stage times: each stage's S3 and DynamoDB time, "
    "Store's compute, per-batch work (the batch's intermediate files, cold starts, the model "
    "download) and per-invoke rounding to the started ms are not in it; requests assume full "
    "batches. The whole bill of a run (Lambda, Step Functions, S3, DynamoDB, from the "
    "operations it counted and each invoke's measured time) is yolo-sfn run's DIR/cost.json"
)


def vcpus_for_memory(memory_mb: int) -> float:
    """Lambda vCPU share at ``memory_mb`` (linear, 1769 MB = 1.0, capped at 6)."""
    if not MIN_MEMORY_MB <= memory_mb <= MAX_MEMORY_MB:
        raise ValueError(
            f"Lambda memory must be {MIN_MEMORY_MB}..{MAX_MEMORY_MB} MB, got {memory_mb}"
        )
    return min(MAX_VCPUS, memory_mb / MB_PER_VCPU)


def threads_for_memory(memory_mb: int) -> int:
    """Interpreter threads worth running at ``memory_mb``: ceil(vCPUs), at least 1."""
    v = vcpus_for_memory(memory_mb)
    return max(1, int(-(-v // 1)))


def parallel_efficiency(t1_ms: float, tn_ms: float, n: int) -> float:
    """``t1 / (n * tn)`` clamped to [0, 1]; 1.0 when n == 1 (nothing to learn)."""
    if n <= 1 or tn_ms <= 0:
        return 1.0
    return max(0.0, min(1.0, t1_ms / (n * tn_ms)))


def speedup(vcpus: float, efficiency: float, *, parallel: bool) -> float:
    """Speed relative to one full core of the measuring machine."""
    if vcpus <= 1.0 or not parallel:
        return min(vcpus, 1.0)
    return 1.0 + (vcpus - 1.0) * efficiency


@dataclass(frozen=True)
class StageTimes:
    """Per-image milliseconds measured on one core of this machine (``infer_1t``) and
    ``infer_efficiency`` from the n-thread run; pre/post are single-threaded.
    ``preprocess_ms`` is decode + resize (the Preprocess stage's CPU work)."""

    preprocess_ms: float
    infer_1t_ms: float
    postprocess_ms: float
    infer_efficiency: float = 1.0


# The stages the bench times: stage -> (StageTimes field, multi-threaded). Store is not timed
# (its work is S3 PUTs and a DynamoDB batch write, nothing this machine can stand in for).
MEASURED_STAGES = {
    "preprocess": ("preprocess_ms", False),
    "infer": ("infer_1t_ms", True),
    "postprocess": ("postprocess_ms", False),
}


@dataclass(frozen=True)
class CostRow:
    memory_mb: int
    vcpus: float
    threads: int
    est_ms_per_image: float
    gb_s_per_1000: float
    usd_per_1000: dict  # {"x86_64": .., "arm64": ..} incl. requests
    request_usd_per_1000: float

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Deployment:
    """What the stack runs: ``batch_size`` images per child (template ``BatchSize``) and each
    image stage's ``MemorySize`` in MB, ``{stage: MB}`` for every ``IMAGE_STAGES`` entry."""

    batch_size: int
    memory_mb: dict

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch size must be >= 1, got {self.batch_size}")
        if set(self.memory_mb) != set(IMAGE_STAGES):
            raise ValueError(f"memory sizes for {sorted(self.memory_mb)}, need {IMAGE_STAGES}")
        for m in self.memory_mb.values():
            vcpus_for_memory(m)  # range check

    @property
    def invocations_per_image(self) -> float:
        return invocations_per_image(self.batch_size)


def invocations_per_image(batch_size: int) -> float:
    """Lambda requests per image: one per stage per batch, ``4 / batch_size`` (full batches)."""
    if batch_size < 1:
        raise ValueError(f"batch size must be >= 1, got {batch_size}")
    return INVOCATIONS_PER_BATCH / batch_size


def stage_ms(times: StageTimes, stage: str, memory_mb: int) -> float | None:
    """Estimated per-image ms of one stage at ``memory_mb``; None for a stage not measured."""
    if stage not in MEASURED_STAGES:
        return None
    field_name, parallel = MEASURED_STAGES[stage]
    return getattr(times, field_name) / speedup(
        vcpus_for_memory(memory_mb), times.infer_efficiency, parallel=parallel
    )


def estimate_ms(times: StageTimes, memory_mb: int) -> float:
    """Estimated per-image compute ms with every measured stage at ``memory_mb``
    (pre + infer + post)."""
    return sum(stage_ms(times, st, memory_mb) for st in MEASURED_STAGES)


def gb_s_per_1000(ms_per_image: float, memory_mb: int) -> float:
    return 1000 * (ms_per_image / 1000.0) * (memory_mb / 1024.0)


def cost_per_1000(
    ms_per_image: float, memory_mb: int, invocations_per_image: float
) -> tuple[float, dict, float]:
    """(GB-s, {arch: USD incl. requests}, request USD) for 1,000 images."""
    gb_s = gb_s_per_1000(ms_per_image, memory_mb)
    req = 1000 * invocations_per_image * PRICE_PER_REQUEST
    return gb_s, usd_by_arch(gb_s, req), req


def usd_by_arch(gb_s: float, request_usd: float) -> dict:
    """``{arch: USD}`` of ``gb_s`` of compute at each architecture's price plus the requests."""
    return {arch: gb_s * price + request_usd for arch, price in PRICE_PER_GB_S.items()}


def cost_table(
    times: StageTimes, memory_sizes, invocations_per_image: float
) -> list[CostRow]:
    """One row per memory size, every measured stage priced at that one size."""
    rows = []
    for m in memory_sizes:
        ms = estimate_ms(times, m)
        gb_s, usd, req = cost_per_1000(ms, m, invocations_per_image)
        rows.append(
            CostRow(m, round(vcpus_for_memory(m), 3), threads_for_memory(m), ms, gb_s, usd, req)
        )
    return rows


def deployed_estimate(times: StageTimes, deployment: Deployment) -> dict:
    """Each image stage at its own MemorySize, requests at ``4 / batch_size`` per image.

    ``{"stages": [{"stage", "memory_mb", "vcpus", "threads", "est_ms_per_image",
    "gb_s_per_1000"}] (None for Store: not measured), "est_ms_per_image", "gb_s_per_1000",
    "request_usd_per_1000", "usd_per_1000": {arch: USD incl. requests}}`` for 1,000 images.
    """
    stages = []
    for st in IMAGE_STAGES:
        m = deployment.memory_mb[st]
        ms = stage_ms(times, st, m)
        stages.append({
            "stage": st, "memory_mb": m, "vcpus": round(vcpus_for_memory(m), 3),
            "threads": threads_for_memory(m), "est_ms_per_image": ms,
            "gb_s_per_1000": None if ms is None else gb_s_per_1000(ms, m),
        })
    measured = [s for s in stages if s["est_ms_per_image"] is not None]
    gb_s = sum(s["gb_s_per_1000"] for s in measured)
    req = 1000 * deployment.invocations_per_image * PRICE_PER_REQUEST
    return {
        "stages": stages,
        "est_ms_per_image": sum(s["est_ms_per_image"] for s in measured),
        "gb_s_per_1000": gb_s,
        "request_usd_per_1000": req,
        "usd_per_1000": usd_by_arch(gb_s, req),
    }


def bench_estimate(times: StageTimes, memory_sizes, deployment: Deployment) -> dict:
    """The ``cost`` object of ``yolo-sfn bench --json``: the deployed estimate, the
    one-memory-size rows and the notes that say what both leave out."""
    per_image = deployment.invocations_per_image
    return {
        "batch_size": deployment.batch_size,
        "invocations_per_batch": INVOCATIONS_PER_BATCH,
        "invocations_per_image": per_image,
        "deployed": deployed_estimate(times, deployment),
        "rows": [r.to_dict() for r in cost_table(times, memory_sizes, per_image)],
        "prices": dict(PRICE_PER_GB_S),
        "price_per_request": PRICE_PER_REQUEST,
        "price_note": PRICE_NOTE,
        "scaling_note": SCALING_NOTE,
        "rows_note": ROWS_NOTE,
        "scope_note": SCOPE_NOTE,
    }


def parse_memory_sizes(text: str) -> list[int]:
    """``"1769,3008,10240"`` -> [1769, 3008, 10240]; ValueError on junk or out of range."""
    sizes = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        m = int(part)
        vcpus_for_memory(m)  # range check
        if m in sizes:
            raise ValueError(f"{m} given twice")
        sizes.append(m)
    if not sizes:
        raise ValueError("no memory sizes given")
    return sizes


# --- the bill of one run, from counted operations ---------------------------------------------
# Published us-east-1 prices (first tiers, free tiers ignored), one table, one date.
AWS_PRICES = {
    "as_of": PRICES_AS_OF,
    "lambda_per_gb_s": dict(PRICE_PER_GB_S),
    "lambda_per_request": PRICE_PER_REQUEST,
    "sfn_per_standard_transition": 0.025 / 1000,
    "sfn_per_express_request": 1.00 / 1_000_000,
    "sfn_per_express_gb_s": 0.00001667,  # first 1,000 GB-hours ($0.06 per GB-hour)
    "s3_per_get": 0.0004 / 1000,  # GET, SELECT and all other requests (HEAD)
    "s3_per_put": 0.005 / 1000,  # PUT, COPY, POST, LIST
    "dynamodb_per_write_unit": 0.625 / 1_000_000,  # on-demand, since 2024-11-01
}
COUNT_KEYS = ("lambda_invocations", "lambda_gb_s", "sfn_standard_transitions",
              "sfn_express_requests", "sfn_express_gb_s", "s3_get", "s3_put", "s3_list",
              "s3_head", "dynamodb_write_units")
EXPRESS_MB_UNIT = 64
EXPRESS_S_UNIT = 0.1


def scaled_lambda_ms(duration_ms: float, memory_mb: int) -> int:
    """Billed ms of one invoke measured here at ``duration_ms``, at ``memory_mb``.

    Scaled as ``yolo-sfn bench`` scales a single-threaded stage: below one vCPU (1769 MB) the
    time grows by 1 / vCPU share; at or above it the measured time is kept (one Lambda vCPU =
    one core here; the handler picks its threads from its memory). Billed per started ms.
    """
    vcpus = vcpus_for_memory(int(memory_mb))
    return math.ceil(duration_ms / speedup(vcpus, 1.0, parallel=False))


def scaled_lambda_gb_s(duration_ms: float, memory_mb: int) -> float:
    """Billed GB-s of one invoke measured here at ``duration_ms``, at ``memory_mb``."""
    return scaled_lambda_ms(duration_ms, memory_mb) / 1000.0 * (int(memory_mb) / 1024.0)


def express_gb_s(duration_s: float, memory_mb: int = EXPRESS_MB_UNIT) -> float:
    """Billed GB-s of one Express execution: duration in started 100 ms, memory in started
    64 MB units."""
    units_s = math.ceil(round(duration_s / EXPRESS_S_UNIT, 9)) * EXPRESS_S_UNIT
    units_mb = math.ceil(memory_mb / EXPRESS_MB_UNIT) * EXPRESS_MB_UNIT
    return units_s * units_mb / 1024.0


def aws_cost(counts: dict, images: int, arch: str = "x86_64",
             prices: dict | None = None) -> dict:
    """The cost.json shape from counted operations and published prices.

    ``counts`` has every ``COUNT_KEYS`` entry (missing ones count 0); ``lambda_gb_s`` may also
    come per architecture as ``counts["lambda_gb_s_by_arch"]`` (then ``arch`` is ignored).
    """
    p = prices or AWS_PRICES
    c = {k: counts.get(k, 0) for k in COUNT_KEYS}
    by_arch = counts.get("lambda_gb_s_by_arch") or {arch: c["lambda_gb_s"]}
    lam = (sum(gb_s * p["lambda_per_gb_s"][a] for a, gb_s in by_arch.items())
           + c["lambda_invocations"] * p["lambda_per_request"])
    sfn = (c["sfn_standard_transitions"] * p["sfn_per_standard_transition"]
           + c["sfn_express_requests"] * p["sfn_per_express_request"]
           + c["sfn_express_gb_s"] * p["sfn_per_express_gb_s"])
    s3 = ((c["s3_get"] + c["s3_head"]) * p["s3_per_get"]
          + (c["s3_put"] + c["s3_list"]) * p["s3_per_put"])
    ddb = c["dynamodb_write_units"] * p["dynamodb_per_write_unit"]
    total = lam + sfn + s3 + ddb
    return {
        "images": images,
        "prices_as_of": p["as_of"],
        "counts": {**c, **{k: v for k, v in counts.items() if k not in c and k != "images"}},
        "usd": {"lambda": lam, "step_functions": sfn, "s3": s3, "dynamodb": ddb,
                "total": total},
        "usd_per_1000_images": total / images * 1000 if images else None,
        "orchestration_share": sfn / total if total else 0.0,
        "notes": [
            f"prices: published us-east-1 first-tier prices as of {p['as_of']} (not re-fetched; "
            "free tiers ignored); Lambda at the functions' architecture",
            "counts were counted on the local engine, not assumed; the local runner's own "
            "uploads, polling and downloads are excluded",
            "lambda_gb_s: each invoke's handler time measured locally as the CPU time of the "
            "thread that ran it (its time on cores of its own, without waiting for the other "
            "Map children sharing this machine; an injected timeout counts its wall time), "
            "SCALED to each function's MemorySize as yolo-sfn bench scales a stage (below "
            "1769 MB time / vCPU share), billed per started ms: an estimate, not measured on "
            "Lambda",
            "sfn_express_gb_s: each EXPRESS child's duration estimated as the sum of its Lambda "
            "invokes' scaled billed durations (its own states' overhead and retry waits not "
            "included; locally the children wait for each other), in started 100 ms at the "
            "64 MB minimum (AWS bills the memory the execution uses, in 64 MB units)",
            "dynamodb_write_units: 1 per started KB per item written, from item sizes",
        ],
    }
