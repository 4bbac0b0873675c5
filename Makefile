# slotd — make targets. Everything a developer needs is here; see README.md.
GO      ?= go
CORE    := ./allocator/... ./wal/... ./raftlog/... ./cluster/... ./replica/...
PKGS    := ./...
DATA    ?= ./data
TESTTIMEOUT ?= 15m

.PHONY: run build test test-core test-rest bench lint stress clean generate image

# The build's names, printed by slotd -version and exported as
# slotd_build_info. Without git (a source archive) they say so.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo devel)
COMMIT  ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
LDFLAGS := -X main.version=$(VERSION) -X main.commit=$(COMMIT)

build:
	$(GO) build -ldflags '$(LDFLAGS)' -o bin/slotd ./cmd/slotd
	$(GO) build -o bin/slotload ./cmd/slotload

# The container image (Dockerfile): a static binary built here, copied
# into an image FROM scratch, so no base image is pulled. It is tagged
# IMAGE and IMAGE_LATEST (deploy/compose.yaml runs slotd:latest; empty:
# no second tag). IMAGE_CONTEXT is the directory handed to docker build:
# the binary and an empty data/.
IMAGE ?= slotd:$(VERSION)
IMAGE_LATEST ?= slotd:latest
IMAGE_CONTEXT ?= bin/image
image:
	rm -rf $(IMAGE_CONTEXT)/slotd $(IMAGE_CONTEXT)/data
	mkdir -p $(IMAGE_CONTEXT)/data
	CGO_ENABLED=0 GOOS=linux $(GO) build -trimpath -ldflags '-s -w $(LDFLAGS)' -o $(IMAGE_CONTEXT)/slotd ./cmd/slotd
	docker build -f Dockerfile --build-arg VERSION=$(VERSION) --build-arg COMMIT=$(COMMIT) \
		-t $(IMAGE) $(if $(IMAGE_LATEST),-t $(IMAGE_LATEST)) $(IMAGE_CONTEXT)

run: build
	./bin/slotd -demo -data $(DATA)

# The whole suite. Core packages run under the race detector and with the
# invariants build tag (extra assertions); the rest runs normally.
test: lint test-core test-rest

test-core:
	$(GO) test -race -tags invariants -timeout $(TESTTIMEOUT) $(CORE)

test-rest:
	$(GO) test -tags invariants -timeout $(TESTTIMEOUT) $(shell $(GO) list ./... | grep -v -E '^slotd/(allocator|wal|raftlog|cluster|replica)(/|$$)')

# The journal's and the HTTP edge's benchmarks run with one scheduler P
# more than the cores, as slotd runs (cmd/slotd spareProc); the in-memory
# allocator's with one per core.
# nproc counts the cores this process may run on (its CPU set); the Go
# runtime's default also honours a container's CPU quota, which nproc
# does not see: set PROCS by hand there.
PROCS ?= $(shell echo $$(( $$(nproc) + 1 )))
bench:
	$(GO) test -run=NONE -bench=. -benchmem -benchtime=1s ./allocator/... ./bench/...
	$(GO) test -run=NONE -bench=. -benchmem -benchtime=1s -cpu $(PROCS) ./wal/... ./raftlog/... ./httpapi/

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) vet -tags invariants ./...

clean:
	rm -rf bin

# The Go client (client/client.gen.go) from docs/openapi.yaml, with the
# oapi-codegen version go.mod names as a tool. Run it after editing the
# spec: client's TestGenerated fails while the two differ.
generate:
	$(GO) generate ./client/

# Many more kill-and-restart rounds than make test runs.
stress:
	$(GO) test -tags invariants -run 'TestCrashRecovery' -count=1 -timeout 60m ./wal/ -args -crash.rounds=500

# Replays the rush against a slotd started with demo data on loopback ports
# and a temporary data directory; reports land in loadtest/out/. Other
# scenarios: make loadtest LOADTEST_FLAGS='-scenario botrush'.
.PHONY: loadtest
LOADTEST_FLAGS ?= -scenario rush
loadtest: build
	sh loadtest/scripts/loadtest.sh $(LOADTEST_FLAGS)

.PHONY: bench-peers bench-peers-test

# The peer comparison (DESIGN §6): slotd, PostgreSQL and Redis behind one
# fasthttp edge, the same rush; prints the HTTP and engine tables. The
# HTTP table runs three rounds, the backends taking turns, and shows each
# backend's median round and slotd's ratio to each peer in every round
# (PEERSFLAGS='-rounds 1' for one). The script starts both servers on
# loopback and stops them after: the containers of deploy/compose.yaml's
# profile peers where a container engine runs and both images are
# already present (nothing is pulled), else the Debian packages, which
# it installs if missing (PEERS_ENGINE=containers|packages chooses).
# The HTTP table has a row of three bin/slotd processes as a cluster on
# loopback (the workers spread over the nodes) taking its turn in every
# round, with its ratio to PostgreSQL round by round (design §6's 5×, in
# the same run); PEERS_CLUSTER= leaves it out.
PEERS_CLUSTER ?= bin/slotd
bench-peers: build
	GO=$(GO) bench/peers/scripts/peers.sh -rounds 3 $(if $(PEERS_CLUSTER),-cluster $(PEERS_CLUSTER)) $(PEERSFLAGS)

# The peers' tests against live servers (without them they skip), and
# the cluster row of the HTTP table beside PostgreSQL on a small office.
bench-peers-test:
	GO=$(GO) PEERS_CMD='$(GO) test -count=1 -v -run "Postgres|Redis" ./bench/peers/ ./bench/clusterbench/' bench/peers/scripts/peers.sh

# The cluster bench: the peer comparison's rush against one slotd and
# against three slotd processes as a cluster on loopback, in the same run
# (the cluster's workers spread over the three nodes, and all at the
# group leader), three rounds taking turns; then 20 SIGKILLs of the group
# leader, each timed to the first acknowledged write. Prints the tables
# and the cluster's targets (docs/design.md §6). PostgreSQL's figure for
# the ratio comes from make bench-peers: CLUSTERFLAGS='-postgres-rate N'
# (make bench-peers itself measures the ratio in one run, with its
# cluster row).
.PHONY: bench-cluster
CLUSTERFLAGS ?=
bench-cluster: build
	$(GO) build -o bin/bench-cluster ./bench/cmd/cluster
	./bin/bench-cluster -slotd bin/slotd -rounds 3 $(CLUSTERFLAGS)

# Bytes on disk per node of a 3-node cluster (in process, one group,
# compaction at its defaults) after BOOKINGS bookings, against one store
# alone as single-node slotd keeps it. DISKFLAGS='-measure-disk-no-compaction'
# measures the cluster without log compaction. About 1 min at 200,000,
# 4 min and 0.9 GB of memory at 1,000,000: time and memory grow with
# BOOKINGS, as one process holds an engine (every booking in memory):
# the store alone's, then the cluster leader's.
.PHONY: bench-disk
BOOKINGS ?= 200000
bench-disk:
	$(GO) test -count=1 -timeout 600m -run 'TestMeasureDiskPerNode' -v ./replica/ -args -measure-disk-changes=$(BOOKINGS) $(DISKFLAGS)

# Three slotd nodes on loopback with the demo offices (deploy/local-cluster.sh).
.PHONY: cluster
cluster: build
	sh deploy/local-cluster.sh

# Hundreds of faults — SIGKILL and restart, SIGSTOP, partitions, and the
# replacement of a node by one of a new id (cluster remove, -join,
# cluster add) — against three slotd processes under a booking rush,
# checking that no acknowledged booking is lost or doubled and the
# replicas agree.
.PHONY: stress-cluster
STRESS_ROUNDS ?= 200
stress-cluster:
	$(GO) test -count=1 -run 'TestFaultsUnderRush' -timeout 120m -v ./clustertest/ -args -faults.rounds=$(STRESS_ROUNDS)
