"""The embedded local engine: template.yaml + statemachine/detect.asl.json on moto 5.2.5.

```python
from yolo_sfn.local import Fault, LocalEngine

with LocalEngine(retry_scale=0.0, faults=[Fault("infer", "s3_transient", match="dog.jpg")]) as e:
    e.deploy("model.tflite")
    uris, missing = e.upload_inputs(["testdata/images"])
    run = e.execute({"images": uris})   # run.summary, run.attempts, run.retry_waits, run.notes
    run.counts, run.cost                 # billable operations, counted; the cost.json shape
```

Modules: ``motohooks`` (moto pin + patched internals), ``template`` (CFN YAML + ASL reader),
``deploy`` (five-step SAM -> moto CloudFormation), ``aslext`` (ItemBatcher, EXPRESS children,
ToleratedFailure* around moto's interpreter), ``invoke`` (in-process Lambda routing, faults,
attempt log), ``meter`` (AWS requests counted at moto's botocore hook), ``spool`` (S3 bodies
without an open file each), ``taskclock`` (Task timeouts without local queuing), ``features``
(what moto runs differently), ``engine``, ``runner`` (``yolo-sfn run``), ``workers`` +
``lambda_worker`` (the built functions in Python 3.12 worker processes: ``layers/run_built.py``,
``make built-smoke``). The toy stack the engine's tests run is a fixture under
``tests/fixtures/toy``.
"""

from yolo_sfn.errors import LocalEngineError
from yolo_sfn.local.engine import LocalEngine, LocalRun, Progress
from yolo_sfn.local.invoke import Attempt, Fault

__all__ = ["Attempt", "Fault", "LocalEngine", "LocalEngineError", "LocalRun", "Progress"]
