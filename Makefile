# Two commands a newcomer needs: `make demo` and `make test`. Both install idempotently into .venv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test test-all clean tcmalloc llama-cpp

install: $(STAMP)

# tcmalloc makes CPU training ~1.5x faster (bench/train_throughput.py); tunesmith preloads it when present.
# Installed only where we may (root with apt-get); elsewhere: sudo apt-get install libgoogle-perftools4.
tcmalloc:
	@if ls /usr/lib/*/libtcmalloc.so.4 >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  (apt-get install -y -qq libgoogle-perftools4 || (apt-get update -qq && apt-get install -y -qq libgoogle-perftools4)) >/dev/null 2>&1 \
	  || echo "note: could not install libgoogle-perftools4; training runs without tcmalloc (slower)"; \
	else echo "note: sudo apt-get install libgoogle-perftools4 makes CPU training ~1.5x faster"; fi

$(STAMP): requirements.txt requirements-nodeps.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps -r requirements-nodeps.txt
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

demo: install tcmalloc
	$(BIN)/tunesmith demo --overwrite

# Every verb, on tiny real models and real files, in ~10 min on 2 cores; the slow real-model tests (SmolLM2 over
# real HTTP for synth, an over-trained SmolLM2 for retention, the default model through GGUF) run in test-all.
# Two workers, a module each at a time, one compute thread each (tests/conftest.py): much of the suite is
# single-threaded (imports, CLI start-up, tokenizing), so 15 min 19 s in one process became 9 min 57 s.
test: install
	$(BIN)/python -m pytest -m "not slow" -n 2 --dist loadfile

test-all: install
	$(BIN)/python -m pytest

# Opt-in: llama.cpp's Python binding, compiled from source (minutes on 2 cores). With it, tests/test_export.py
# also runs an exported GGUF through llama.cpp and compares it with transformers.
llama-cpp: install
	CMAKE_ARGS="-DGGML_NATIVE=ON" $(BIN)/python -m pip install --quiet llama-cpp-python==0.3.36

clean:
	rm -rf runs .pytest_cache
