# The two commands a newcomer needs: `make run` (the whole stack locally) and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup run test test-tools kafka browser redis promtool openssl nginx lint schema chaos nightly bench \
	bench-quick wrk clean

# What `make run` needs: the virtualenv. The embedded Apache Kafka's jars are resolved by Maven
# on first use (calcstream dev says so and how far it got); Java 17+ and Maven must be there.
setup: $(STAMP)

# What only the tests need on top: Kafka's jars resolved up front (so a missing Java or Maven
# is one clear line, not a failed fixture), Redis and Chromium.
test-tools: kafka redis browser promtool openssl nginx

kafka: setup
	$(BIN)/calcstream broker --fetch

# The cache tests start their own redis-server on a free port (Debian's package, which keeps
# up with security fixes; the PyPI wheels that bundle a server are years old).
redis:
	@command -v redis-server >/dev/null || test -x /usr/bin/redis-server || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server; \
	  else echo "the cache tests need redis-server: sudo apt-get install -y redis-server"; fi; }

# The dashboard test drives a real headless Chromium (Debian's package; nothing is downloaded
# by a test tool). Installed when missing and we may; otherwise say how.
browser:
	@test -x /usr/bin/chromium || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	  else echo "the dashboard test needs Chromium: sudo apt-get install -y chromium"; fi; }

# promtool checks deploy/prometheus (Debian's prometheus package; its service is not started).
promtool:
	@command -v promtool >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	      --no-install-recommends prometheus; \
	  else echo "the operations tests need promtool: sudo apt-get install -y prometheus"; fi; }

# openssl makes the CA and certificates of the Kafka security tests and `calcstream dev --secure`.
openssl:
	@command -v openssl >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssl; \
	  else echo "the Kafka security tests need openssl: sudo apt-get install -y openssl"; fi; }

# The reply-routing tests put API replicas behind a real nginx (Debian's package) of their own,
# on free ports with a generated config; the system service is not used.
nginx:
	@command -v nginx >/dev/null || test -x /usr/sbin/nginx || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx; \
	  else echo "the reply-routing tests need nginx: sudo apt-get install -y nginx"; fi; }

# The HTTP load generator of the bench (Debian's wrk), installed like Chromium above.
wrk:
	@command -v wrk >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk; \
	  else echo "the bench needs wrk: sudo apt-get install -y wrk"; fi; }

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "calcstream needs Python 3.11 or newer (found $$($(PYTHON) --version))"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

run: setup
	$(BIN)/calcstream dev

test: setup test-tools
	$(BIN)/python -m pytest

lint: setup
	$(BIN)/ruff check .
	$(BIN)/mypy schemas consumer producer_api calcstream

schema: setup
	$(BIN)/calcstream schema --out schemas/jsonschema
	$(BIN)/calcstream asyncapi --out schemas/asyncapi.json

# Long fault scenarios next to a no-fault baseline; writes RELIABILITY.md (several minutes).
chaos: setup kafka
	$(BIN)/python -m tests.faults.chaos --out RELIABILITY.md

# What CI has no time for: the OpenAPI contract fuzzed with 5,000 examples per operation, new
# ones each run (schemathesis; CI draws the same 100), then the long fault scenarios of
# `make chaos` (5 min on 2 cores; the fuzzing grows with the count, 300 examples took 18 s).
NIGHTLY_EXAMPLES ?= 5000
nightly: setup
	CALCSTREAM_SCHEMATHESIS_EXAMPLES=$(NIGHTLY_EXAMPLES) HYPOTHESIS_PROFILE=explore \
		$(BIN)/python -m pytest tests/producer_api/test_openapi.py --timeout=0
	$(MAKE) chaos

# The benchmark suite against its peers (Celery on a Redis of its own); writes
# bench/results/REPORT.md and plots (about 22 minutes on 2 cores; `make bench-quick` is a
# one-minute smoke run into bench/results/quick/, which git ignores).
bench: setup kafka redis wrk
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev,bench]'
	$(BIN)/python -m bench

bench-quick: setup kafka redis wrk
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev,bench]'
	$(BIN)/python -m bench --quick --out bench/results/quick

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
