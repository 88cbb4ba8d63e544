# mdmd: the two commands a newcomer needs are `make run` and `make test`.
VENV   := .venv
TRIAL  := $(VENV)/bin/trial
TWISTD := $(VENV)/bin/twistd
JOBS   ?= 2

.PHONY: run test crash deps dev-deps bench lint lock config-docs deb deb-check deb-check-systemd clean

run: deps
	$(TWISTD) --nodaemon --pidfile= mdmd $(if $(CONFIG),--config $(CONFIG))

# The suite in parallel, then the Debian package test on its own, in the
# foreground, so that its progress (about two minutes) shows as it happens.
# It skips itself where it cannot run (see tests/packaging/test_deb.py).
test: dev-deps
	MDMD_SKIP_DEB_CHECK=1 $(TRIAL) --jobs=$(JOBS) tests
	$(TRIAL) --temp-directory=_trial_temp_deb tests.packaging.test_deb

# The crash-consistency tests at the issue's scale (make test runs them small):
# 200 devices and 6 SIGKILLs, an SMSC outage of 3 minutes. See docs/performance.md.
CRASH_DEVICES ?= 200
CRASH_KILLS   ?= 6
CRASH_OUTAGE  ?= 180
crash: dev-deps
	MDMD_SKIP_DEB_CHECK=1 MDMD_CRASH_DEVICES=$(CRASH_DEVICES) MDMD_CRASH_KILLS=$(CRASH_KILLS) \
		MDMD_CRASH_OUTAGE=$(CRASH_OUTAGE) $(TRIAL) --temp-directory=_trial_temp_crash tests.e2e.test_crash tests.e2e.test_crash_push
	@grep -h "crash test:\|outage test:" _trial_temp_crash/test.log

deps:
	tools/bootstrap

dev-deps:
	tools/bootstrap --dev

bench: dev-deps
	@for b in bench/bench_*.py; do echo "== $$b"; $(VENV)/bin/python $$b || exit 1; done

# ruff, then mypy on what setup.cfg's [mypy] files names (tests/test_lint.py runs both).
lint: dev-deps
	$(VENV)/bin/ruff check mdmd tests bench twisted
	$(VENV)/bin/mypy

# Re-pin the dependency set (needs network; review the diff).
lock:
	$(VENV)/bin/python -m pip install -q pip-tools
	$(VENV)/bin/pip-compile -q --strip-extras --generate-hashes --allow-unsafe --extra zeo --extra postgresql -o requirements.lock setup.cfg
	$(VENV)/bin/pip-compile -q --strip-extras --generate-hashes --allow-unsafe -o requirements-dev.lock requirements-dev.in

# Regenerate etc/mdmd.conf and README's configuration reference from mdmd/config.py.
config-docs: deps
	tools/render-config

# The Debian package (Debian 12, as root or with the build dependencies
# installed): build/deb/mdmd_VERSION_ARCH.deb, checked with lintian.
deb:
	tools/build-deb build/deb

# Build it, install it on this machine, run and check the service as its unit
# does, then remove and purge it (root; refuses to touch an installed mdmd).
deb-check: deb
	tools/deb-check build/deb/mdmd_$$(dpkg-parsechangelog -S Version)_$$(dpkg-architecture -qDEB_HOST_ARCH).deb

# The same check inside a throwaway Debian 12 booted with systemd-nspawn, so
# the service runs under a real systemd with its whole unit (root, on a VM or
# bare host; this machine is left as it was).
deb-check-systemd: deb
	tools/deb-check-nspawn build/deb/mdmd_$$(dpkg-parsechangelog -S Version)_$$(dpkg-architecture -qDEB_HOST_ARCH).deb

clean:
	rm -rf $(VENV) build dist *.egg-info _trial_temp* .hypothesis
