# Shared by the layer Makefiles (sam build, BuildMethod: makefile): pip flags that fetch wheels
# for the Lambda python3.12 runtime whatever the build host runs, and the trimming.
#
# Architecture: sam build does not tell make the function architecture (aws-lambda-builders
# only exports ARTIFACTS_DIR), so it is an environment variable, in the template's spelling:
#   LAMBDA_ARCH=arm64 sam build --parameter-overrides Architecture=arm64
# (PIP_PLATFORM_ARCH=aarch64, the older spelling, still works.) Lambda python3.12 runs on
# Amazon Linux 2023 (glibc 2.34), so manylinux_2_28 and older tags are all loadable; pip does not
# widen an explicit --platform to older glibc tags, hence one --platform per tag.
LAMBDA_ARCH ?= x86_64
ifeq ($(LAMBDA_ARCH),x86_64)
PIP_PLATFORM_ARCH ?= x86_64
else ifeq ($(LAMBDA_ARCH),arm64)
PIP_PLATFORM_ARCH ?= aarch64
else
$(error LAMBDA_ARCH=$(LAMBDA_ARCH): expected x86_64 or arm64 (the template's Architecture))
endif
ifeq ($(filter x86_64 aarch64,$(PIP_PLATFORM_ARCH)),)
$(error PIP_PLATFORM_ARCH=$(PIP_PLATFORM_ARCH): expected x86_64 or aarch64)
endif

LAYERS_DIR := $(dir $(abspath $(lastword $(MAKEFILE_LIST))))
PIP ?= python3 -m pip
# One numpy (and friends) for every layer: Preprocess, Infer and Postprocess exchange .npy/.npz.
PIP_LAMBDA := $(PIP) install --quiet --no-compile --disable-pip-version-check \
	--only-binary=:all: --implementation cp --python-version 3.12 \
	--platform manylinux2014_$(PIP_PLATFORM_ARCH) --platform manylinux_2_27_$(PIP_PLATFORM_ARCH) \
	--platform manylinux_2_28_$(PIP_PLATFORM_ARCH) -c "$(LAYERS_DIR)constraints.txt"

# $(call trim,DIR): what Lambda never loads - console scripts, tests, __pycache__.
define trim
	rm -rf "$(1)/bin"
	find "$(1)" -depth -type d \( -name __pycache__ -o -name tests \) -exec rm -rf {} +
endef
