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

out/demo.mp4: | setup
	mkdir -p out
	$(BIN)/python -m sportlens.tools.testclips $@ --frames 900

demo: setup out/demo.mp4
	$(BIN)/sportlens ask out/demo.mp4 "Which team commits the foul?" --options "A) red;B) blue"

test: setup
	$(BIN)/pytest -q
