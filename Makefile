# orderflow: `make demo` runs the system, `make test` runs the tests (both from a fresh clone).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
OF     := $(BIN)/orderflow
PYTEST := $(BIN)/pytest

.PHONY: install browser promtool stack test-stack services demo test test-fast chaos soak lint schemas docs bench down reset clean

$(VENV)/.installed: pyproject.toml
	@echo "==> creating $(VENV) and installing orderflow with its pinned dependencies"
	@test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	@$(BIN)/pip install --progress-bar on -q -U pip
	@$(BIN)/pip install --progress-bar on -e '.[dev]'
	@touch $@

install: $(VENV)/.installed

# Debian's Chromium (and chromium-driver) for the dashboard's and the console's headless-browser tests (apt-get, as root or through sudo)
browser:
	@command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1 || { \
	  echo "==> installing Chromium and its driver (Debian packages, ~300 MB) for the dashboard and console browser tests"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y chromium chromium-driver; }

# Debian's Prometheus for `promtool check metrics` on every /metrics the services and the dashboard serve
promtool:
	@command -v promtool >/dev/null 2>&1 || { \
	  echo "==> installing Prometheus (Debian package) for promtool, which checks every /metrics in the tests"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y --no-install-recommends prometheus; }

stack: install
	@echo "==> starting Kafka (KRaft) and FerretDB (first run downloads jars and builds FerretDB: ~3 min)"
	@$(OF) stack up $(if $(TRACING),--tracing)

# the test suites' own servers (profile `test`: .orderflow-test/, ports 19092, 27027, 5434), never the demo's
test-stack: install
	@echo "==> starting the tests' own Kafka and FerretDB (the demo's servers and topics stay untouched)"
	@ORDERFLOW_PROFILE=test $(OF) stack up

services: stack
	@echo "==> starting the four services (logs in .orderflow/logs/)"
	@$(OF) services up

demo: services
	@echo "==> running the demo"
	@$(OF) demo --orders 200
	@$(BIN)/python -m orderflow.dev.jaeger
	@echo "==> starting the console with a demo user per role"
	@$(OF) console up --demo-users
	@echo "Services and servers keep running: 'make down' stops them; '$(OF) lag' shows consumer lag."

lint: install
	@echo "==> ruff + mypy"
	@$(BIN)/ruff check .
	@$(BIN)/ruff format --check .
	@$(BIN)/mypy

test: lint test-stack browser promtool
	@echo "==> tests: unit, handlers (in-memory broker), end-to-end (real Kafka + FerretDB)"
	@ORDERFLOW_PROFILE=test $(PYTEST) -m "not chaos" -p no:cacheprovider

# domain and handler tests without servers (in-memory broker and store), on two worker processes (pytest-xdist);
# ORDERFLOW_TEST_FAST=1 lets property tests run fewer examples than in `make test`
test-fast: install
	@ORDERFLOW_TEST_FAST=1 $(PYTEST) tests/unit tests/handlers -m "not e2e and not chaos" -q -p no:cacheprovider -n 2

chaos: test-stack
	@echo "==> fault-injection suite"
	@ORDERFLOW_PROFILE=test $(PYTEST) -m chaos tests/chaos -p no:cacheprovider -s

# Not in CI: MINUTES (default 30) at half the sustained rate, the simulator shipping; RSS, lag and store size
# every minute, and a slope test at the end (exit 1 when one grows without bound). `make soak MINUTES=3` to try.
soak: stack
	@echo "==> soak: $(or $(MINUTES),30) min at half the sustained rate"
	@$(BIN)/python -m orderflow.dev.soak --minutes $(or $(MINUTES),30)

bench: stack
	@echo "==> benchmark: raw Kafka/store limits, then orders/s end to end (under 15 min; JSON in bench/results/)"
	@$(OF) bench

schemas: install
	@$(BIN)/python -m contracts.schema

docs: install
	@$(BIN)/python -m orderflow.asyncapi
	@$(BIN)/python -m orderflow.gateway.openapi

down:
	@-$(OF) console down
	@-$(OF) services down
	@-$(OF) stack down
	@-ORDERFLOW_PROFILE=test $(OF) stack down

reset: down
	@$(OF) stack reset
	@ORDERFLOW_PROFILE=test $(OF) stack reset

clean: down
	rm -rf $(VENV) .orderflow .orderflow-test *.egg-info
