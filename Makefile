# Two commands a newcomer needs: `make demo` and `make test`. Both install idempotently into .venv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test clean tcmalloc

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

test: install
	$(BIN)/python -m pytest

clean:
	rm -rf runs .pytest_cache
