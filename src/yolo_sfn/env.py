"""Names of the environment variables the Lambda stages read.

Values live in ``template.yaml`` (``Globals`` / per-function ``Environment``); the local
runner copies them from the template. Config order everywhere: explicit argument, then the
environment variable named here, then the default.
"""

BUCKET = "RESULTS_BUCKET"  # our artifacts/results bucket
TABLE = "RESULTS_TABLE"  # DynamoDB results table
MODEL_URI = "MODEL_URI"  # s3://bucket/key.tflite (sidecar metadata at key + ".json")
SCORE_THRESHOLD = "SCORE_THRESHOLD"
IOU_THRESHOLD = "IOU_THRESHOLD"
RESIZE_MODE = "RESIZE_MODE"  # model | stretch | letterbox (model: from the sidecar's letter_box)
NMS_KIND = "NMS_KIND"  # greedy | diou | "" (= from the model's cfg)
INPUT_BUCKETS = "INPUT_BUCKETS"  # comma-separated bucket or bucket/prefix allow-list
MAX_IMAGE_BYTES = "MAX_IMAGE_BYTES"
MAX_IMAGE_PIXELS = "MAX_IMAGE_PIXELS"
INFER_THREADS = "INFER_THREADS"
MAX_THREADS = 256  # INFER_THREADS / --threads upper bound (XNNPACK's pool segfaults at 65,536)
MODEL_CACHE_DIR = "MODEL_CACHE_DIR"  # /tmp on Lambda
INTERMEDIATE_PREFIX = "INTERMEDIATE_PREFIX"  # tmp/ (lifecycle rule expires it)
RESULTS_PREFIX = "RESULTS_PREFIX"  # results/
