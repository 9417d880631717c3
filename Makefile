# Two commands matter: `make serve` and `make test`. Both build .venv themselves.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
ROOT := $(shell id -u)

.PHONY: serve test test-deploy deploy-sysdeps lint layering unit bench demo sysdeps proto clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

# System packages for the privileged tests (WireGuard in namespaces, a throwaway PostgreSQL)
# and for the browser tests (Debian's chromium, driven by Playwright through executable_path).
# Only installed when running as root; otherwise those tests skip themselves (outside CI).
sysdeps:
ifeq ($(ROOT),0)
	@missing=""; \
	command -v wg >/dev/null || missing="$$missing wireguard-tools"; \
	command -v wireguard-go >/dev/null || missing="$$missing wireguard-go"; \
	command -v nft >/dev/null || missing="$$missing nftables"; \
	command -v ip >/dev/null || missing="$$missing iproute2"; \
	command -v ping >/dev/null || missing="$$missing iputils-ping"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	command -v systemd-analyze >/dev/null || missing="$$missing systemd"; \
	{ command -v initdb >/dev/null || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; } || missing="$$missing postgresql"; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi
else
	@echo "not root: skipping system packages (privileged tests will skip)"
endif

serve: $(STAMP)
	mkdir -p data
	$(BIN)/discovery-service

lint: $(STAMP)
	$(BIN)/ruff check discovery membership storage kubespan tests bench
	$(BIN)/ruff format --check discovery membership storage kubespan tests bench
	$(BIN)/mypy
	$(BIN)/python -m discovery.proto.check

layering: $(STAMP)
	$(BIN)/lint-imports

unit: $(STAMP)
	$(BIN)/python -m pytest -q -x tests/membership tests/storage

# Coverage gates (house style X4): the pure core and the storage layer are held high; the
# adapters are mostly exercised through real processes, which in-process coverage cannot see.
test: sysdeps $(STAMP) lint layering
	$(BIN)/python -m coverage run -m pytest -q -ra
	$(BIN)/python -m coverage report --include='membership/*' --fail-under=100
	$(BIN)/python -m coverage report --include='storage/*' --fail-under=90

# Deployment for real (tests/deploy/live): the images built and run with podman, compose single
# and HA, the agent image meshing in network namespaces, the Helm chart rendered offline.
# Needs root; outside CI a non-root run skips, in CI it fails. Base images are built locally
# (debootstrap) when missing and stay in podman's storage for the next run on this machine.
DEPLOY_TOOLS := podman-compose==1.6.0 helm-python-sdk==0.2.2

deploy-sysdeps:
ifeq ($(ROOT),0)
	@missing=""; \
	for tool in podman runc debootstrap netavark aardvark-dns; do \
		{ command -v $$tool >/dev/null || [ -x /usr/lib/podman/$$tool ]; } || missing="$$missing $$tool"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi
endif

ifeq ($(ROOT),0)
test-deploy: sysdeps deploy-sysdeps $(STAMP)
	$(BIN)/pip install -q $(DEPLOY_TOOLS)
	DEPLOY_LIVE=1 $(BIN)/python -m pytest -q -ra tests/deploy/live
else
test-deploy:
	@if [ "$$CI" = true ]; then \
		echo "make test-deploy: FAILED, needs root (podman, debootstrap, network namespaces)" >&2; \
		exit 1; \
	fi
	@echo "make test-deploy: SKIPPED, needs root (podman, debootstrap, network namespaces)"
endif

# wrk and h2load are the load generators (a Python client would measure itself).
bench: $(STAMP)
ifeq ($(ROOT),0)
	@command -v wrk >/dev/null && command -v h2load >/dev/null || { apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk nghttp2-client >/dev/null; }
endif
	$(BIN)/python -m bench

demo: sysdeps $(STAMP)
	$(BIN)/python -m bench.demo

proto: $(STAMP)
	$(BIN)/python -m discovery.proto.generate

clean:
	rm -rf $(VENV) data .mypy_cache .ruff_cache
