"""Benchmark helpers behind ``yolo-sfn bench`` and the scripts in ``bench/``.

Light on import (stdlib only at module level): the cold-start probe runs as
``python -m yolo_sfn.bench.probe`` and must not pay for anything it does not measure.

Modules:
    cost      Lambda GB-s / request pricing and the vCPU-scaling estimate (pure arithmetic)
    machine   machine facts: sgemm GFLOP/s, OpenBLAS kernel, CPU model, load, stats helpers
    probe     the fresh-process measurement (import + load + first inference, peak RSS)
    pipeline  steady-state per-stage timing on real images, and the probe launcher
    built_models  the models benched (random-weights darknet -> TFLite, cached under .cache/bench)
    report    text tables, target checks
"""
