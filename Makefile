# mojorust.dr — the two commands are `make drill` and `make test`; every target installs what it needs.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
PROMTOOL := $(CURDIR)/lab/.cache/bin/promtool
export PATH := $(BIN):$(PATH)
export CONTAINERS_CONF := $(CURDIR)/lab/containers.conf
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
# This clone is the mojorust.dr collection (via the collections/ symlink), never a copy installed elsewhere.
export ANSIBLE_COLLECTIONS_PATH := $(CURDIR)/collections
export ANSIBLE_FORCE_COLOR ?= 0
export PYTHONDONTWRITEBYTECODE := 1
# Molecule scenarios in the order they run; each is one recovery path proven on containers.
SCENARIOS ?= $(notdir $(patsubst %/molecule.yml,%,$(wildcard molecule/*/molecule.yml)))
export DRLAB_BASE_IMAGE = localhost/drlab-base:current
export DRLAB_EDGE_IMAGE = localhost/drlab-edge:current
export DRLAB_PROVISIONED_IMAGE = localhost/drlab-provisioned:current
export DRLAB_OFFSITE_IMAGE = localhost/drlab-offsite:current
export DRLAB_DNS_IMAGE = localhost/drlab-dns:current

.PHONY: help setup host-packages preflight images lab lab-down lab-test lint unit molecule test drill bench lock clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

host-packages:
	@lab/bin/install-host-packages

preflight: host-packages ## prove this machine can run the lab: podman+runc, DNS on a podman network, ulimits, disk
	@lab/bin/preflight

$(VENV)/.installed: constraints.txt requirements.in pyproject.toml
	@test -x $(BIN)/python || python3 -m venv $(VENV)
	@echo "installing Python dependencies into $(VENV) (pinned by constraints.txt)"
	@$(BIN)/pip install --quiet --upgrade pip
	@$(BIN)/pip install --quiet -c constraints.txt -r requirements.in
	@$(BIN)/pip install --quiet --no-deps -e .
	@touch $@

setup: host-packages $(VENV)/.installed ## install Debian packages and the pinned venv (.venv)

images: preflight setup ## build the lab images (only those whose files changed), after the containers' preflight
	@lab/bin/build-images

lab: images ## bring the lab up (idempotent)
	@$(BIN)/ansible-playbook lab/lab.yml

lab-down: setup ## remove the lab containers and network (idempotent)
	@$(BIN)/ansible-playbook lab/lab.yml -e drlab_state=absent

$(PROMTOOL):
	@lab/bin/fetch-promtool $@

lint: setup $(PROMTOOL) ## ruff, yamllint, ansible-lint, promtool (alert rules), changelog fragments, ansible-test sanity
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/yamllint --strict .
	$(BIN)/ansible-lint --offline
	$(PROMTOOL) check rules monitoring/*.rules.yml
	$(PROMTOOL) test rules tests/prometheus/*.test.yml
	$(BIN)/antsibull-changelog lint
	lab/bin/ansible-test-sanity --color no

unit: setup ## pytest unit tests
	$(BIN)/pytest

molecule: images ## every Molecule scenario
	@for s in $(SCENARIOS); do \
	  echo "=== molecule test -s $$s"; \
	  start=$$(date +%s); \
	  $(BIN)/molecule test -s $$s || exit 1; \
	  echo "=== $$s passed in $$(( $$(date +%s) - start )) s"; \
	done

lab-test: lab ## the host set-up (packages a bare Debian 12 gets, preflight refusals) and the lab's own services
	tests/lab/test_host_setup.sh
	tests/lab/test_lab_services.sh

test: lint unit molecule lab-test ## lint, unit tests, every Molecule scenario and the lab services' test

drill: lab ## run every disaster drill against the lab; reports/drill-<UTC>.{json,md,html,junit.xml}, summary to Telegram
	$(BIN)/mojorust-dr drill --all --telegram lab

bench: images ## recovery speed vs the usual tools (issue 8) on own drbench-* containers; SCALE=95 (1.5 GB) RUNS=3 KEEP=1
	$(BIN)/python bench/bench.py $(if $(SCALE),--scale $(SCALE)) $(if $(RUNS),--runs $(RUNS)) $(if $(KEEP),--keep)

lock: ## re-pin constraints.txt from requirements.in in a throwaway venv
	rm -rf /tmp/mojorust-lock && python3 -m venv /tmp/mojorust-lock
	/tmp/mojorust-lock/bin/pip install --quiet -r requirements.in
	{ echo "# Generated from requirements.in with 'pip freeze' in a clean venv (python 3.11). Regenerate: make lock"; \
	  /tmp/mojorust-lock/bin/pip freeze; } > constraints.txt

clean: lab-down ## remove the lab and local caches (keeps images and the venv)
	rm -rf .ansible lab/.cache
