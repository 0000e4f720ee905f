# yolo-sfn developer entry points. The README's two setup commands are `make demo` and `make test`;
# .ci/run runs `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
SAM_VENV := .venv-sam
OUT ?= out/demo

.PHONY: demo test lint cfn sam-build unit clean

$(BIN)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

$(SAM_VENV)/bin/sam:
	$(PY) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/pip install -q aws-sam-cli

# Install, fetch + convert the demo model (real COCO yolov3-tiny), run the whole Step Functions
# workflow locally on moto over the sample images.
demo: $(BIN)/.installed
	$(BIN)/yolo-sfn run testdata/images --out $(OUT)

lint: $(BIN)/.installed
	$(BIN)/ruff check .

cfn: $(BIN)/.installed $(SAM_VENV)/bin/sam
	$(BIN)/cfn-lint template.yaml
	$(SAM_VENV)/bin/sam validate --lint --region us-east-1

# --no-cached: SAM's cache only watches a layer's own folder, not src/yolo_sfn or layers/pip.mk.
sam-build: $(BIN)/.installed $(SAM_VENV)/bin/sam
	$(SAM_VENV)/bin/sam build --region us-east-1 --no-cached
	$(BIN)/python layers/check_layers.py

unit: $(BIN)/.installed
	$(BIN)/python -m pytest -q

# Everything CI checks: lint, template checks, sam build, the whole test suite.
test: lint cfn sam-build unit

clean:
	rm -rf $(VENV) $(SAM_VENV) .aws-sam out .cache
