# enfeed: `make run` serves a region on embedded storage; `make test` installs what the tests
# need and runs them. Settings below are defaults; override them on the command line, e.g.
# `make run REGION=DE LISTEN=127.0.0.1:9000`.

REGION ?= CH
LISTEN ?= 127.0.0.1:8080
DATA   ?= enfeed-data
CARGO  ?= cargo
PYTHON ?= python3
RUNS   ?= 20
FUZZ_SECONDS ?= 30
API_URL ?=
# Keys data-prep publishes in `make bench`, and options of the benches' load test (see
# `enfeed-lab bench --help`), e.g. BENCH_ARGS="--connection-per-upload --chaff 50". Left empty,
# `make bench` offers the target's 5,000 uploads a second and `make bench-compare` sends as fast
# as answers come back.
KEYS   ?= 1000000
BENCH_ARGS ?=
CONSOLE_DIST ?= $${CARGO_TARGET_DIR:-target}/console-dist

# The Python tools of the serverless deployment live in a virtualenv at the repository root:
# moto (the AWS API the tests run against), prometheus-client (its parser checks /metrics) and
# python-tuf (the reference TUF client the trust registry is tested with), Playwright and pytest
# (the console's browser tests, with Debian's chromium), cargo-lambda and Zig (cross-building the
# Lambda functions), the SAM CLI, cfn-lint and checkov (the template). Each is installed on
# first use.
VENV             := .venv
# The template's tools pin their own dependencies (boto3 among them): a virtualenv of their own.
INFRA_VENV       := .venv-infra
MOTO_VERSION     := 5.2.5
TUF_VERSION      := 7.0.1
CRYPTOGRAPHY_VERSION := 50.0.2
CARGO_LAMBDA_VERSION := 1.9.2
ZIG_VERSION      := 0.17.1
CFN_LINT_VERSION := 1.58.0
SAM_VERSION      := 1.170.0
CHECKOV_VERSION  := 3.2.459
PROMETHEUS_CLIENT_VERSION := 0.26.0
PLAYWRIGHT_VERSION := 1.65.2
PYTEST_VERSION   := 8.4.2
SCHEMATHESIS_VERSION := 4.32.5
CARGO_FUZZ_VERSION := 0.13.2
FUZZ_TARGETS     := export_reader upload certificate peers_file json_index text_index
LAMBDAS          := ingest codes dataprep consumer feeds
LAMBDA_TARGET    := aarch64-unknown-linux-gnu

.PHONY: run test test-console test-api fuzz bench bench-compare bench-dynamo scale demo lint doc build package \
	lint-template scan-template sam-build smoke bench-lambda console-dist

## Serve one region: uploads, admin, feeds, scheduled data-prep (Ctrl-C stops it).
run:
	$(CARGO) run --release -p enfeed-cli -- serve --region $(REGION) --listen $(LISTEN) --data $(DATA)

## Build and run every test, the serverless ones against a local moto server; then check the
## API against its OpenAPI document.
test: $(VENV)/.moto-$(MOTO_VERSION) $(VENV)/.prometheus-client-$(PROMETHEUS_CLIENT_VERSION) \
	$(VENV)/.tuf-$(TUF_VERSION)
	$(CARGO) test --workspace --all-targets --locked
	$(MAKE) test-console
	$(MAKE) test-api

## The console in a real browser: headless Chromium (Debian's package, installed with apt-get
## when missing) driven by Playwright against a real `enfeed serve`. A missing browser fails the
## run. Screenshots of every page go to <target dir>/console-screenshots.
test-console: $(VENV)/.playwright-$(PLAYWRIGHT_VERSION)
	command -v chromium >/dev/null || { apt-get update -q && apt-get install -y -q chromium; }
	@command -v chromium >/dev/null || { echo "chromium is missing: install Debian's chromium package" >&2; exit 1; }
	$(CARGO) build --locked -p enfeed-cli
	ENFEED_BIN="$${CARGO_TARGET_DIR:-target}/debug/enfeed" CHROMIUM="$$(command -v chromium)" \
		CONSOLE_SCREENSHOTS="$${CARGO_TARGET_DIR:-target}/console-screenshots" \
		PYTHONDONTWRITEBYTECODE=1 $(VENV)/bin/python -m pytest -p no:cacheprovider tests/console

## The console's code issuer pages as static files for the serverless mode (docs/deploy.md),
## calling the API at API_URL (the stack's ConsoleApiUrl output), into CONSOLE_DIST.
console-dist:
	@test -n "$(API_URL)" || { echo "set API_URL, the stack's ConsoleApiUrl output" >&2; exit 1; }
	$(CARGO) run --locked -q -p enfeed-cli -- console-dist --api-url "$(API_URL)" --out "$(CONSOLE_DIST)"

## A real `enfeed serve` on loopback, with a fresh data directory, checked against
## docs/openapi.yaml by schemathesis: every check on, no 5xx, no answer the document does not
## describe (tests/api/check_openapi.py).
test-api: $(VENV)/.schemathesis-$(SCHEMATHESIS_VERSION)
	$(CARGO) build --locked -p enfeed-cli
	$(VENV)/bin/python tests/api/check_openapi.py --schema docs/openapi.yaml \
		--enfeed "$${CARGO_TARGET_DIR:-$(CURDIR)/target}/debug/enfeed" --st $(VENV)/bin/st

## Each fuzz target for FUZZ_SECONDS (fuzz/, docs/testing.md), on the nightly toolchain, with
## cargo-fuzz installed on first use. New inputs go to fuzz/work/, not to the committed seeds.
fuzz:
	command -v cargo-fuzz >/dev/null || $(CARGO) install --locked cargo-fuzz --version $(CARGO_FUZZ_VERSION)
	for target in $(FUZZ_TARGETS); do \
		mkdir -p fuzz/work/$$target && \
		$(CARGO) +nightly fuzz run --sanitizer none $$target fuzz/work/$$target fuzz/corpus/$$target -- \
			-max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=2048 -print_final_stats=1 || exit 1; \
	done

## The Lambda functions for arm64 (provided.al2023): target/lambda/<function>/bootstrap. The
## same command `sam build` runs, in the same place: each function's own folder, so that each
## reads the functions' settings in functions/.cargo/config.toml (and data-prep those of its
## folder), with the release profile of Cargo.toml, and both build the same binaries.
## IN_EACH_FUNCTION runs a command in each function's folder ($$f names the function).
IN_EACH_FUNCTION = for f in $(LAMBDAS); do (cd functions/$$f && $(1)) || exit 1; done
LAMBDA_BUILD = PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(CARGO) lambda build \
	--manifest-path ../../Cargo.toml --release --arm64 --locked $(1) -p enfeed-$$f
build: $(VENV)/.cargo-lambda-$(CARGO_LAMBDA_VERSION)
	rustup target add $(LAMBDA_TARGET)
	$(call IN_EACH_FUNCTION,$(call LAMBDA_BUILD))

## The same as deployable zips: target/lambda/<function>/bootstrap.zip.
package: $(VENV)/.cargo-lambda-$(CARGO_LAMBDA_VERSION)
	rustup target add $(LAMBDA_TARGET)
	$(call IN_EACH_FUNCTION,$(call LAMBDA_BUILD,--output-format zip))

## What the README's deployment runs: `sam validate --lint`, then `sam build` with the SAM CLI
## from .venv-infra, cargo-lambda and Zig from .venv (first on PATH: cargo-lambda finds Zig
## through that venv's python3).
sam-build: $(INFRA_VENV)/.sam-$(SAM_VERSION) $(VENV)/.cargo-lambda-$(CARGO_LAMBDA_VERSION)
	rustup target add $(LAMBDA_TARGET)
	PATH="$(CURDIR)/$(INFRA_VENV)/bin:$(CURDIR)/$(VENV)/bin:$$PATH" SAM_CLI_TELEMETRY=0 \
		AWS_DEFAULT_REGION=us-east-1 \
		sam validate --lint --region us-east-1
	PATH="$(CURDIR)/$(VENV)/bin:$(CURDIR)/$(INFRA_VENV)/bin:$$PATH" SAM_CLI_TELEMETRY=0 sam build

## The function binaries under a local Lambda Runtime API, on moto, fed real events; the
## chunks checked by an independent GAEN reader (infra/smoke/).
smoke: $(VENV)/.moto-$(MOTO_VERSION)
	$(CARGO) build --locked $(addprefix -p enfeed-,$(LAMBDAS))
	$(VENV)/bin/python infra/smoke/smoke.py "$${CARGO_TARGET_DIR:-target}/debug"

## Each function's process start-to-ready time and first answer, RUNS starts each, on moto:
## built for this machine with the settings of `make build` (functions/.cargo/config.toml, in
## the profile lambda-host), and the arm64 builds of `make build` under qemu-user if it is
## installed (see docs/performance.md).
bench-lambda: $(VENV)/.moto-$(MOTO_VERSION)
	$(call IN_EACH_FUNCTION,$(CARGO) build --profile lambda-host --locked -p enfeed-$$f)
	$(VENV)/bin/python infra/smoke/bench_lambda.py --runs $(RUNS) \
		"$${CARGO_TARGET_DIR:-target}/lambda-host"

## Check template.yaml with checkov, the field's scanner: every finding is fixed, or skipped in
## the resource's Metadata with a reason.
scan-template: $(INFRA_VENV)/.checkov-$(CHECKOV_VERSION)
	$(INFRA_VENV)/bin/checkov -f template.yaml --framework cloudformation --skip-download --compact \
		--quiet

## Check template.yaml with cfn-lint.
lint-template: $(INFRA_VENV)/.cfn-lint-$(CFN_LINT_VERSION)
	$(INFRA_VENV)/bin/cfn-lint template.yaml

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.moto-$(MOTO_VERSION): | $(VENV)/bin/python
	$(VENV)/bin/pip install --quiet --disable-pip-version-check 'moto[server]==$(MOTO_VERSION)'
	touch $@

$(VENV)/.tuf-$(TUF_VERSION): | $(VENV)/bin/python
	$(VENV)/bin/pip install --quiet --disable-pip-version-check \
		'tuf==$(TUF_VERSION)' 'cryptography==$(CRYPTOGRAPHY_VERSION)'
	touch $@

$(VENV)/.cargo-lambda-$(CARGO_LAMBDA_VERSION): | $(VENV)/bin/python
	$(VENV)/bin/pip install --quiet --disable-pip-version-check \
		'cargo-lambda==$(CARGO_LAMBDA_VERSION)' 'ziglang==$(ZIG_VERSION)'
	touch $@

$(VENV)/.playwright-$(PLAYWRIGHT_VERSION): | $(VENV)/bin/python
	$(VENV)/bin/pip install --quiet --disable-pip-version-check \
		'playwright==$(PLAYWRIGHT_VERSION)' 'pytest==$(PYTEST_VERSION)'
	touch $@

$(VENV)/.schemathesis-$(SCHEMATHESIS_VERSION): | $(VENV)/bin/python
	$(VENV)/bin/pip install --quiet --disable-pip-version-check 'schemathesis==$(SCHEMATHESIS_VERSION)'
	touch $@

$(VENV)/.prometheus-client-$(PROMETHEUS_CLIENT_VERSION): | $(VENV)/bin/python
	$(VENV)/bin/pip install --quiet --disable-pip-version-check \
		'prometheus-client==$(PROMETHEUS_CLIENT_VERSION)'
	touch $@

$(INFRA_VENV)/bin/python:
	$(PYTHON) -m venv $(INFRA_VENV)

$(INFRA_VENV)/.sam-$(SAM_VERSION): | $(INFRA_VENV)/bin/python
	$(INFRA_VENV)/bin/pip install --quiet --disable-pip-version-check \
		'aws-sam-cli==$(SAM_VERSION)' 'cfn-lint==$(CFN_LINT_VERSION)'
	touch $@

$(INFRA_VENV)/.checkov-$(CHECKOV_VERSION): | $(INFRA_VENV)/bin/python
	$(INFRA_VENV)/bin/pip install --quiet --disable-pip-version-check \
		'checkov==$(CHECKOV_VERSION)' 'cfn-lint==$(CFN_LINT_VERSION)'
	touch $@

$(INFRA_VENV)/.cfn-lint-$(CFN_LINT_VERSION): | $(INFRA_VENV)/bin/python
	$(INFRA_VENV)/bin/pip install --quiet --disable-pip-version-check 'cfn-lint==$(CFN_LINT_VERSION)'
	touch $@

## A small live world: regions over mutual TLS, phones, travel, infections; who was notified.
demo:
	$(CARGO) run --release -p enfeed-sim --bin enfeed-lab -- simulate

## The whole pipeline measured (docs/performance.md): data-prep of KEYS keys and the consumer
## with two malloc arenas, as the data-prep function runs; then uploads to the local server with
## glibc's default arenas, as `enfeed serve` runs (capped, its threads queue on each other's
## arena locks and an upload's p99 grows several times).
bench:
	MALLOC_ARENA_MAX=2 $(CARGO) run --release -p enfeed-sim --bin enfeed-lab -- bench --keys $(KEYS) --uploads 0
	env -u MALLOC_ARENA_MAX $(CARGO) run --release -p enfeed-sim --bin enfeed-lab -- bench --keys 0 \
		$(or $(BENCH_ARGS),--rate 5000)

## Data-prep on DynamoDB under a backlog: keys stored through the DynamoDB adapter on a moto
## server, then drained by data-prep run after run, each run's time and peak memory measured
## (docs/performance.md). BENCH_ARGS: --keys N (default 1,000,000), --max-keys N (500,000).
## Slow, and outside CI: about half an hour, and moto holds some 6 GB for a million keys.
bench-dynamo: $(VENV)/.moto-$(MOTO_VERSION)
	$(CARGO) bench --locked -p enfeed-tests --bench dynamo_backlog -- $(BENCH_ARGS)

## Uploads side by side with PostgreSQL, in one run: a throwaway cluster of Debian's package
## (installed with apt-get when missing) on loopback, driven by pgbench with an upload's store
## work; then the local server's load test at the same concurrency, keep-alive and a new
## connection per upload; both throughputs, latencies and their ratios (docs/performance.md).
## BENCH_ARGS passes the load test's options.
bench-compare:
	ls /usr/lib/postgresql/*/bin/pgbench >/dev/null 2>&1 || { apt-get update -q && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql; }
	@ls /usr/lib/postgresql/*/bin/pgbench >/dev/null 2>&1 || \
		{ echo "pgbench is missing: install Debian's postgresql package" >&2; exit 1; }
	$(CARGO) run --release --locked -p enfeed-sim --bin enfeed-lab -- bench-compare $(BENCH_ARGS)

## The world-scale model of docs/scale.md: its tables, and the plot docs/scale.svg.
scale:
	$(CARGO) run --release -p enfeed-sim --bin enfeed-lab -- simulate-world --plot docs/scale.svg

## Formatting and clippy, warnings denied.
lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets --all-features --locked -- -D warnings

## The API documentation of every crate, warnings (such as broken links) denied.
doc:
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --no-deps --workspace --all-features --locked
