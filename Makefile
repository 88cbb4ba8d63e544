# mdmd: the two commands a newcomer needs are `make run` and `make test`.
VENV   := .venv
TRIAL  := $(VENV)/bin/trial
TWISTD := $(VENV)/bin/twistd
JOBS   ?= 2

.PHONY: run test deps dev-deps bench lock config-docs clean

run: deps
	$(TWISTD) --nodaemon --pidfile= mdmd $(if $(CONFIG),--config $(CONFIG))

test: dev-deps
	$(TRIAL) --jobs=$(JOBS) tests

deps:
	tools/bootstrap

dev-deps:
	tools/bootstrap --dev

bench: dev-deps
	@for b in bench/bench_*.py; do echo "== $$b"; $(VENV)/bin/python $$b || exit 1; done

# Re-pin the dependency set (needs network; review the diff).
lock:
	$(VENV)/bin/python -m pip install -q pip-tools
	$(VENV)/bin/pip-compile -q --strip-extras --generate-hashes --allow-unsafe --extra zeo --extra postgresql -o requirements.lock setup.cfg
	$(VENV)/bin/pip-compile -q --strip-extras --generate-hashes --allow-unsafe -o requirements-dev.lock requirements-dev.in

# Regenerate etc/mdmd.conf and README's configuration reference from mdmd/config.py.
config-docs: deps
	tools/render-config

clean:
	rm -rf $(VENV) build dist *.egg-info _trial_temp* .hypothesis
