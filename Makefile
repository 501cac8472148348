# podman-hpc: container support for Slurm. `make help` lists the targets.

PREFIX     ?= /usr/local
BINDIR     ?= $(PREFIX)/bin
LIBDIR     ?= $(PREFIX)/lib
SYSCONFDIR ?= /etc
UNITDIR    ?= $(LIBDIR)/systemd/system
DATADIR    ?= $(PREFIX)/share/podman-hpc
MANDIR     ?= $(PREFIX)/share/man
# Where make install puts the plugstack snippet. Slurm reads it there when
# plugstack.conf includes plugstack.conf.d/* (Debian's does): make install
# enables the plugin; the packages put it in DATADIR instead, for the admin
# to link (see docs/admin-guide.md).
PLUGSTACKDIR ?= $(SYSCONFDIR)/slurm/plugstack.conf.d
DESTDIR    ?=
NODES      ?= 2
# build/cluster.env exports NODES as the running cluster's node names
# ("node1 node2"), which a shell that sourced it passes to make: here NODES
# is a count, so count them (make cluster then reuses that cluster).
ifneq ($(filter node%,$(NODES)),)
override NODES := $(words $(NODES))
endif
# The Slurm the test cluster runs (make cluster, make e2e): empty for the
# host's; 24.11 for Debian 13's, from a root filesystem that
# test/cluster/rootfs.sh makes (and caches) under /var/cache.
SLURM      ?=
# The plugin built against that Slurm's headers, beside bin/'s (the host's).
PLUGIN_2411 := build/slurm-24.11/spank_podman_hpc.so
# The end-to-end suite's cluster: the MPI tests run a ring across 4 nodes.
E2E_NODES  ?= 4
# The binaries' and the packages' version: VERSION's X.Y.Z, and past it
# X.Y.Z+N.gHASH (contrib/pkg/version.sh says how these sort).
# Worked out once per make, unless given.
ifeq ($(origin VERSION),undefined)
VERSION    := $(shell contrib/pkg/version.sh)
endif

GO         ?= go
# make lint's staticcheck, run through the Go module proxy (no install step).
STATICCHECK_VERSION ?= v0.7.0
# Build tags that keep containers/image and containers/storage free of C deps.
GO_TAGS    := containers_image_openpgp exclude_graphdriver_btrfs exclude_graphdriver_devicemapper
GO_FLAGS   := -tags "$(GO_TAGS)" -trimpath
GO_LDFLAGS := -X main.version=$(VERSION)

CC         ?= gcc
CFLAGS     ?= -O2 -g
# _FORTIFY_SOURCE unless CFLAGS sets it (a distribution's build flags:
# rpm's optflags set it, and a second definition would be an error).
SPANK_CFLAGS  := -std=gnu11 -fPIC -Wall -Wextra -Werror $(if $(findstring _FORTIFY_SOURCE,$(CFLAGS)),,-D_FORTIFY_SOURCE=2) \
		-fstack-protector-strong -DPHPC_VERSION='"$(VERSION)"'
SPANK_LDFLAGS := -shared -Wl,-z,relro,-z,now -Wl,--version-script=spank/exports.map
SPANK_SRCS := $(wildcard spank/*.c)
SPANK_HDRS := $(wildcard spank/*.h)
GO_SRCS    := $(shell find cmd internal pkg -name '*.go' -not -name '*_test.go') go.mod go.sum

export GOFLAGS

.DEFAULT_GOAL := build
.PHONY: FORCE help deps build build-24.11 man test fuzz e2e e2e-24.11 check demo bench cluster cluster-down install install-test dist deb rpm pkg-test clean lint

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z0-9-]+:.*## / {printf "  %-13s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

deps: ## install every Debian package and tool the build, tests, demo and benchmarks need
	test/deps.sh

build: bin/podman-hpcd bin/podman-hpc-init bin/podman-hpc-asuser bin/spank_podman_hpc.so $(if $(filter 24.11,$(SLURM)),$(PLUGIN_2411)) ## build the daemon, the containers' init and the SPANK plugin into bin/ (SLURM=24.11: and build/slurm-24.11/'s plugin)

build-24.11: $(PLUGIN_2411) ## the plugin built against Slurm 24.11's headers (Debian 13's, from test/cluster/rootfs.sh)

# Static, both: either may be every container's init (podman-hpcd stands in
# when podman-hpc-init is missing), which must run whatever the image has (or
# lacks) for libc. The daemon is built with CGO_ENABLED=0.

# Both carry VERSION, and the daemon tells users of a plugin of another
# version: the stamp makes a new VERSION rebuild both.
FORCE:

bin/.version: FORCE
	@mkdir -p bin
	@echo '$(VERSION)' | cmp -s - $@ || echo '$(VERSION)' >$@

bin/podman-hpcd: $(GO_SRCS) Makefile bin/.version
	@mkdir -p bin
	CGO_ENABLED=0 $(GO) build $(GO_FLAGS) -ldflags "$(GO_LDFLAGS)" -o $@ ./cmd/podman-hpcd

# The daemon's helper for work done as a user (pkg/asuser): C, as it starts
# at every container (podman-hpcd stands in when it is missing, at several
# ms a start instead of a few tenths).
bin/podman-hpc-asuser: cmd/podman-hpc-asuser/asuser.c Makefile
	@mkdir -p bin
	$(CC) $(CFLAGS) -Wall -Wextra -Werror -D_FORTIFY_SOURCE=2 -fstack-protector-strong -static -o $@ $<

bin/podman-hpc-init: cmd/podman-hpc-init/init.c Makefile
	@mkdir -p bin
	$(CC) $(CFLAGS) -Wall -Wextra -Werror -static -o $@ $<

# Linked to a temporary name and renamed: srun and slurmstepd load the plugin
# at every step, and rewriting it in place crashes the ones running.
bin/spank_podman_hpc.so: $(SPANK_SRCS) $(SPANK_HDRS) spank/exports.map Makefile bin/.version
	@mkdir -p bin
	$(CC) $(CFLAGS) $(SPANK_CFLAGS) $(SPANK_LDFLAGS) -o $@.tmp $(SPANK_SRCS)
	mv -f $@.tmp $@

# The man pages, each from its markdown source in docs/man, by go-md2man:
# a Go tool dependency (go.mod's tool line), so the release tarball's
# vendor/ holds it and a package build downloads nothing.
MAN_SRCS  := $(wildcard docs/man/*.md)
MAN_PAGES := $(patsubst docs/man/%.md,build/man/%,$(MAN_SRCS))

man: $(MAN_PAGES) ## the man pages podman-hpcd(8), podman-hpcd.conf(5) and podman-hpc(1) from docs/man, into build/man

build/man/%: docs/man/%.md go.mod
	@mkdir -p build/man
	$(GO) tool go-md2man -in $< -out $@.tmp
	mv -f $@.tmp $@

# Slurm 24.11's headers, from the root filesystem the 24.11 test cluster runs.
build/slurm-24.11/include/slurm/spank.h: test/cluster/rootfs.sh
	test/cluster/rootfs.sh >/dev/null
	rm -rf build/slurm-24.11/include
	mkdir -p build/slurm-24.11/include
	cp -r "$${ROOTFS:-/var/cache/podman-hpc/debian13-slurm}/usr/include/slurm" build/slurm-24.11/include/

$(PLUGIN_2411): $(SPANK_SRCS) $(SPANK_HDRS) spank/exports.map Makefile bin/.version build/slurm-24.11/include/slurm/spank.h
	$(CC) $(CFLAGS) $(SPANK_CFLAGS) -Ibuild/slurm-24.11/include $(SPANK_LDFLAGS) -o $@.tmp $(SPANK_SRCS)
	mv -f $@.tmp $@

test: build ## unit tests (Go and the plugin's C through cgo), then each fuzz target briefly; root-only tests skip
	$(GO) vet $(GO_FLAGS) ./...
	CGO_ENABLED=0 $(GO) test $(GO_FLAGS) -count=1 ./cmd/... ./internal/... ./pkg/... ./docs/...
	$(GO) test $(GO_FLAGS) -count=1 ./spank/...
	$(call run-fuzz,$(FUZZTIME_TEST))

# Fuzzing: every `func FuzzXxx` in a _test.go under cmd, internal, pkg and spank, found
# anew at each run (a new target needs no edit here), FUZZTIME each (make
# fuzz) or FUZZTIME_TEST each (make test). The plugin's (spank/) need cgo.
# A failing input is saved under the package's testdata/fuzz/, to commit
# as a regression test. make test counts executions (NNNx), not seconds: a
# short time limit made Go's fuzzer fail now and then with "context
# deadline exceeded" on a loaded machine, a failure of the timer, not of
# the code.
FUZZTIME      ?= 60s
FUZZTIME_TEST ?= 10000x
define run-fuzz
	@set -e; for f in $$(grep -rl --include='*_test.go' '^func Fuzz' cmd internal pkg spank | sort); do \
		d=./$$(dirname $$f); cgo=0; case $$d in ./spank/*) cgo=1;; esac; \
		for n in $$(sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)(.*/\1/p' $$f); do \
			echo "fuzz $$d $$n for $(1)"; \
			CGO_ENABLED=$$cgo $(GO) test $(GO_FLAGS) -run '^$$' -fuzz "^$$n$$" -fuzztime=$(1) -fuzzminimizetime=2s $$d; \
		done; \
	done
endef

fuzz: build ## run every fuzz target for FUZZTIME (60s) each
	$(call run-fuzz,$(FUZZTIME))

# The tests of where containers' processes and helpers go in Slurm's
# cgroups: make e2e runs them again on a proctrack/cgroup cluster.
E2E_CGROUP_TESTS := Cgroup|StoppedInit|TestPodmanHangingHelper|TestReuse|TestJobEndedWhileDaemonDown|TestNamedContainer$$|TestContainerSave$$

e2e: build ## bring up the test cluster of E2E_NODES (4) nodes (or reuse it; SLURM=24.11: of Slurm 24.11), run the end-to-end suite through srun/sbatch, tear down
	SLURM=$(SLURM) NODES=$(E2E_NODES) test/cluster/up.sh
	@# Untracked files before the suite are the developer's; new ones are the suite's.
	untracked() { git status --porcelain --untracked-files=all 2>/dev/null | grep '^??' || true; }; \
	before=$$(untracked); \
	rc=0; SLURM=$(SLURM) NODES=$(E2E_NODES) test/cluster/selftest.sh up && \
	$(GO) test $(GO_FLAGS) -tags "$(GO_TAGS) e2e" -count=1 -v -timeout 30m ./test/e2e/ || rc=$$?; \
	if [ $$rc = 0 ]; then \
		echo "e2e: the cgroup tests, on a cluster with proctrack/cgroup"; \
		test/cluster/down.sh && PROCTRACK=cgroup SLURM=$(SLURM) NODES=2 test/cluster/up.sh && \
		$(GO) test $(GO_FLAGS) -tags "$(GO_TAGS) e2e" -count=1 -v -timeout 10m -run '$(E2E_CGROUP_TESTS)' ./test/e2e/ || rc=$$?; \
	fi; \
	if [ -z "$(KEEP_CLUSTER)" ]; then test/cluster/down.sh && test/cluster/selftest.sh down || rc=1; fi; \
	left=$$(untracked | grep -vxF -e "$$before" || true); \
	if [ -n "$$left" ]; then echo "e2e: the suite left files in the tree (tests write under t.TempDir()):"; echo "$$left"; rc=1; fi; \
	exit $$rc

e2e-24.11: ## make e2e SLURM=24.11
	$(MAKE) --no-print-directory e2e SLURM=24.11

check: deps build build-24.11 lint test e2e e2e-24.11 pkg-test install-test ## everything CI runs: deps, build, lint, unit tests, end-to-end tests (the host's Slurm and 24.11), packages, install and units

demo: deps build ## bring up the cluster and run a job with srun --container-image
	NODES=$(NODES) test/cluster/up.sh
	test/demo.sh

bench: deps build ## benchmarks; figures go to build/bench.json
	NODES=$(NODES) test/cluster/up.sh
	test/bench.sh

cluster: build ## bring up the test cluster (NODES=2 by default; SLURM=24.11: Debian 13's Slurm); then: source build/cluster.env
	SLURM=$(SLURM) NODES=$(NODES) test/cluster/up.sh

cluster-down: ## stop the test cluster and remove all it made
	test/cluster/down.sh

lint: ## gofmt, go vet, staticcheck and shellcheck
	@test -z "$$(gofmt -l cmd internal pkg spank test)" || { gofmt -l cmd internal pkg spank test; exit 1; }
	$(GO) vet $(GO_FLAGS) ./...
	shellcheck -x test/*.sh test/bench/*.sh test/bench/*/*.sh test/cluster/*.sh test/images/*.sh .ci/run contrib/slurm/*.sh contrib/slurm/nhc/*.nhc \
		contrib/pkg/*.sh debian/postrm
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) -tags "$(GO_TAGS) e2e" ./...

install: build man ## install daemon, plugin, systemd units, plugstack.conf.d snippet, config example, health checks, man pages and docs (PREFIX, DESTDIR)
	install -D -m 0755 bin/podman-hpcd $(DESTDIR)$(BINDIR)/podman-hpcd
	install -D -m 0755 bin/podman-hpc-init $(DESTDIR)$(BINDIR)/podman-hpc-init
	install -D -m 0755 bin/podman-hpc-asuser $(DESTDIR)$(BINDIR)/podman-hpc-asuser
	install -D -m 0755 bin/spank_podman_hpc.so $(DESTDIR)$(LIBDIR)/slurm/spank_podman_hpc.so
	install -d $(DESTDIR)$(UNITDIR) $(DESTDIR)$(PLUGSTACKDIR) $(DESTDIR)$(DATADIR)
	sed 's|@BINDIR@|$(BINDIR)|g' contrib/slurm/podman-hpcd.service >$(DESTDIR)$(UNITDIR)/podman-hpcd.service
	install -m 0644 contrib/slurm/podman-hpcd.socket $(DESTDIR)$(UNITDIR)/podman-hpcd.socket
	sed -e 's|@LIBDIR@|$(LIBDIR)|g' -e 's|@BINDIR@|$(BINDIR)|g' contrib/slurm/plugstack.conf.d/podman-hpc.conf \
		>$(DESTDIR)$(PLUGSTACKDIR)/podman-hpc.conf
	install -D -m 0755 contrib/slurm/epilog.sh $(DESTDIR)$(PREFIX)/libexec/podman-hpc/epilog.sh
	install -m 0755 contrib/slurm/podman-hpc-healthcheck.sh $(DESTDIR)$(PREFIX)/libexec/podman-hpc/podman-hpc-healthcheck.sh
	install -D -m 0644 contrib/slurm/nhc/podman_hpc.nhc $(DESTDIR)$(DATADIR)/nhc/podman_hpc.nhc
	install -m 0644 contrib/slurm/podman-hpcd.conf $(DESTDIR)$(DATADIR)/podman-hpcd.conf.example
	install -m 0644 README.md SECURITY.md CHANGELOG.md LICENSE $(DESTDIR)$(DATADIR)/
	install -d $(DESTDIR)$(DATADIR)/docs
	install -m 0644 $(wildcard docs/*.md docs/*.png) $(DESTDIR)$(DATADIR)/docs/
	for p in $(MAN_PAGES); do \
		s=$${p##*.}; install -D -m 0644 $$p $(DESTDIR)$(MANDIR)/man$$s/$${p##*/} || exit 1; \
	done
	cp -r contrib/slurm/examples $(DESTDIR)$(DATADIR)/
	@# An admin's edited config is never overwritten.
	[ -e $(DESTDIR)$(SYSCONFDIR)/podman-hpc/podman-hpcd.conf ] || \
		install -D -m 0644 contrib/slurm/podman-hpcd.conf $(DESTDIR)$(SYSCONFDIR)/podman-hpc/podman-hpcd.conf

install-test: build ## make install DESTDIR= PREFIX=/usr and the units as shipped: ExecStart, socket activation, READY=1, status, metrics, a bad config refused
	test/install.sh

# Packages are built from source, from the release tarball that make dist
# makes (the tree and its Go modules, vendored: the builds download
# nothing), with the distributions' own tools: the plugin against the build
# host's Slurm headers, and each package requires that Slurm release.
PKG_OUT := build/pkg
DIST    := $(PKG_OUT)/podman-hpc-$(VERSION).tar.gz

dist: ## the release tarball, build/pkg/podman-hpc-VERSION.tar.gz: the tree, its Go modules (vendor/), the spec and debian/ stamped with VERSION
	contrib/pkg/dist.sh $(PKG_OUT) >/dev/null

deb: dist ## the Debian packages from source (dpkg-buildpackage against the installed libslurm-dev), in build/pkg
	contrib/pkg/deb.sh $(DIST) $(PKG_OUT)

rpm: dist ## the source RPM from the tarball, and the RPM rebuilt from it (rpmbuild against slurm-devel's headers), in build/pkg
	contrib/pkg/rpm.sh $(DIST) $(PKG_OUT)

pkg-test: deps build ## both packages built from source: their versions, Slurm dependency and files; dpkg -i, the plugin left for the admin to enable, socket activation and readiness, the test cluster from the installed files, purge
	test/pkg.sh

clean: ## remove build outputs (keeps the cached test images in build/images)
	rm -rf bin build/man build/slurm-24.11 build/cluster-logs build/bench.json build/bench-mpi.json build/ring build/pingpong build/pkg
