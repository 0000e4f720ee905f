# yolo-sfn developer entry points. The README's two setup commands are `make demo` and `make test`;
# .ci/run runs `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
SAM_VENV := .venv-sam
CHECKOV_VENV := .venv-checkov
CHECKOV_VERSION ?= 3.3.30
OUT ?= out/demo

.PHONY: demo test lint cfn checkov sam-build built-smoke unit clean

$(BIN)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

$(SAM_VENV)/bin/sam:
	$(PY) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/pip install -q aws-sam-cli

# Pinned: a new checkov release adds checks, which should fail a deliberate upgrade, not CI.
$(CHECKOV_VENV)/bin/checkov:
	$(PY) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install -q 'checkov==$(CHECKOV_VERSION)'

# Install, fetch + convert the demo model (real COCO yolov3-tiny), run the whole Step Functions
# workflow locally on moto over the sample images.
demo: $(BIN)/.installed
	$(BIN)/yolo-sfn run testdata/images --out $(OUT)

lint: $(BIN)/.installed
	$(BIN)/ruff check .

cfn: $(BIN)/.installed $(SAM_VENV)/bin/sam
	$(BIN)/cfn-lint template.yaml
	$(SAM_VENV)/bin/sam validate --lint --region us-east-1

# Security scan of the template, offline (--skip-download: no Prisma Cloud metadata); fails on
# any failed check. Each accepted finding is skipped in its resource's Metadata, with the reason.
checkov: $(CHECKOV_VENV)/bin/checkov
	$(CHECKOV_VENV)/bin/checkov --file template.yaml --framework cloudformation --quiet \
		--compact --skip-download

# --no-cached: SAM's cache only watches a layer's own folder, not src/yolo_sfn or layers/pip.mk.
sam-build: $(BIN)/.installed $(SAM_VENV)/bin/sam
	$(SAM_VENV)/bin/sam build --region us-east-1 --no-cached
	$(BIN)/python layers/check_layers.py

# After sam-build: one batch (testdata/images + a broken file) through .aws-sam/build, each
# function in its own Python 3.12 process with only its layers (+ boto3, as Lambda provides),
# on the local engine's moto. PY312: the interpreter (default: python3.12 on PATH, or pyenv's).
PY312 ?=
built-smoke: $(BIN)/.installed
	$(BIN)/python layers/run_built.py $(if $(PY312),--python $(PY312))

unit: $(BIN)/.installed
	$(BIN)/python -m pytest -q

# Everything CI checks: lint, template checks and scan, sam build and a batch through what it
# built, the whole test suite.
test: lint cfn checkov sam-build built-smoke unit

clean:
	rm -rf $(VENV) $(SAM_VENV) $(CHECKOV_VENV) .aws-sam out .cache
