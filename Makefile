# Set-up and everyday commands. `make run` and `make test` create .venv when it is missing.
VENV   ?= .venv
PYTHON ?= python3
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test test-all bench install clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

## Train the default experiment (Twemoji modality gap, EN) fully offline.
run: $(STAMP)
	WANDB_MODE=$${WANDB_MODE:-offline} $(BIN)/memegap-train experiment=twemoji_gap

## The fast loop: all tests but the slow ones (CPU only, <= 5 minutes on 2 cores). See tests/README.md.
test: $(STAMP)
	WANDB_MODE=offline $(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

## Every test, slow ones included: what CI runs (.ci/run).
test-all: $(STAMP)
	WANDB_MODE=offline $(BIN)/python -m pytest $(PYTEST_ARGS)

## Benchmarks print JSON figures to stdout.
bench: $(STAMP)
	$(BIN)/python benchmarks/geometry.py
	$(BIN)/python benchmarks/loop_overhead.py
	$(BIN)/python benchmarks/training_device.py
	$(BIN)/python benchmarks/training_device.py --model resnet18_cifar --batch-size 128 --image-size 32
	$(BIN)/python benchmarks/download.py
	$(BIN)/python benchmarks/packed_images.py
	$(BIN)/python benchmarks/knn.py
	$(BIN)/python benchmarks/pair_prediction.py

clean:
	rm -rf logs .pytest_cache
