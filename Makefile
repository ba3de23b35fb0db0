# enfeed: `make run` serves a region on embedded storage; `make test` installs what the tests
# need and runs them. Settings below are defaults; override them on the command line, e.g.
# `make run REGION=DE LISTEN=127.0.0.1:9000`.

REGION ?= CH
LISTEN ?= 127.0.0.1:8080
DATA   ?= enfeed-data
CARGO  ?= cargo

.PHONY: run test bench demo lint

## Serve one region: uploads, admin, feeds, scheduled data-prep (Ctrl-C stops it).
run:
	$(CARGO) run --release -p enfeed-cli -- serve --region $(REGION) --listen $(LISTEN) --data $(DATA)

## Build and run every test.
test:
	$(CARGO) test --workspace --all-targets --locked

## A small live world: regions over mutual TLS, phones, travel, infections; who was notified.
demo:
	$(CARGO) run --release -p enfeed-cli -- simulate

## Data-prep throughput for one million keys (see docs/performance.md).
bench:
	$(CARGO) run --release -p enfeed-cli -- bench --keys 1000000

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
