# The two commands a fresh machine needs: `make demo` (ask the embedded default model about a clip)
# and `make test` (the whole suite). Each does its own set-up.
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup demo test

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/pip install -q -e '.[test]'
	touch $@

# SportSim visual clips of a seed the shipped model never trained on (it trained on seed 0)
out/visual/qa.jsonl: | setup
	$(BIN)/sportlens synth --preset visual --out out/visual --n 10 --seed 2026

demo: setup out/visual/qa.jsonl
	$(BIN)/python -m sportlens.demo out/visual

test: setup
	$(BIN)/pytest -q
