package main

// Cluster mode (docs/design.md §9): slotd -node-id N -peers … runs one
// node of a cluster. Offices are sharded over Raft groups (package
// cluster), each group's replica is a store of its own under the data
// directory, and the node runs the engine of every group it leads
// (package replica), each behind an httpapi.Server of its own. One front
// listener takes every request and hands it to the Server of the group it
// belongs to, here or, over HTTP, on the node that leads the group.

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"hash/fnv"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"
	"go.uber.org/zap"

	"slotd/allocator"
	"slotd/api"
	"slotd/cluster"
	"slotd/httpapi"
	"slotd/raftlog"
	"slotd/replica"
	"slotd/wal"
)

// clusterOptions are the flags of cluster mode.
type clusterOptions struct {
	nodeID uint64
	peers  string // id=raft address, comma-separated, every node
	edges  string // id=API address, comma-separated, every node
	groups int
	join   bool // -join: wait to be added (cluster_members.go)
	// noHandOff stops without handing the leaderships on (not a flag:
	// SLOTD_TEST_NO_HAND_OFF=1), so that a test can measure what the
	// hand-off spares a rolling restart.
	noHandOff bool
	// noRefusals closes the Raft connections of nodes that are not
	// members unanswered (not a flag: SLOTD_TEST_NO_REFUSALS=1), the
	// broken variant of cluster M7 and M8 that a test shows failing.
	noRefusals bool
	// movePartBytes, if not 0, is the replica's Config.MovePartBytes
	// (not a flag: SLOTD_TEST_MOVE_PART_BYTES), so that a test moves an
	// office in many parts without filling it with megabytes.
	movePartBytes int
}

// headerForwarded marks a request one node passed to another; the
// receiver serves it or refuses it, never passes it on again.
const headerForwarded = "X-Slotd-Forwarded"

// fromPeer reports whether ctx's request was forwarded by a node of the
// cluster: its headerForwarded holds the cluster's forward token. From
// anyone else the routing headers are dropped, so that a client cannot
// pick the group that serves it (and, say, create an office in a group
// that is not its own).
func (f *front) fromPeer(ctx *fasthttp.RequestCtx) bool {
	h := ctx.Request.Header.Peek(headerForwarded)
	if len(h) > 0 && subtle.ConstantTimeCompare(h, []byte(f.forwardToken)) == 1 {
		return true
	}
	ctx.Request.Header.Del(headerForwarded)
	ctx.Request.Header.Del(headerGroup)
	ctx.Request.Header.Del(headerClient)
	ctx.Request.Header.Del(headerWatchID)
	return false
}

// headerClient names, on a forwarded request, the address of the client
// that sent it to the first node, so that the group's Server counts the
// client's failed authentications against the client, not against the
// node that forwarded them. It is honoured only on a request that holds
// the forward token (fromPeer), which no client knows: from anyone else
// fromPeer drops it, and the connection's own address counts.
const headerClient = "X-Slotd-Client"

// setClient names ctx's client on req, a request forwarded on its behalf.
func setClient(req *fasthttp.Request, ctx *fasthttp.RequestCtx) {
	if ip, ok := netip.AddrFromSlice(ctx.RemoteIP()); ok {
		req.Header.Set(headerClient, ip.Unmap().String())
	}
}

// asClient makes ctx, a request forwarded by a peer, read as sent by the
// client its headerClient names, and returns the undo: ctx's connection
// is a peer's, kept alive for the requests of other clients. A value that
// is no address leaves the connection's (the peer's) in place.
func asClient(ctx *fasthttp.RequestCtx) (undo func()) {
	ip, err := netip.ParseAddr(string(ctx.Request.Header.Peek(headerClient)))
	if err != nil {
		return func() {}
	}
	ctx.SetRemoteAddr(&net.TCPAddr{IP: ip.AsSlice()})
	return func() { ctx.SetRemoteAddr(nil) }
}

// forwardTokenOf derives the cluster's forward token from the ticket
// secret every node shares.
func forwardTokenOf(secret []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte("slotd cluster forward"))
	return hex.EncodeToString(m.Sum(nil)[:16])
}

// headerGroup names the group a forwarded request is for, where its
// route does not say (a route that spans groups, asked of each).
const headerGroup = "X-Slotd-Group"

// headerNode names, on an answer, the node whose engine answered it:
// the leader of the group named by headerGroup.
const headerNode = "X-Slotd-Node"

// forwardTimeout bounds one forwarded request.
const forwardTimeout = 10 * time.Second

// contactWithin: a leader that has heard from a majority of the nodes
// this recently answers from its engine. Followers elect a new leader only
// after an election timeout (1 s) without its heartbeats, so a leader cut
// off stops answering before another can have taken a write; the bound
// assumes the nodes' clocks run at about the same rate, as raft's lease
// reads do.
const contactWithin = 500 * time.Millisecond

// localServer returns the Server of group g on this node if the node may
// answer for g now: it runs g's engine, raft still calls it g's leader
// (the engine's end may be a moment behind raft), and it has heard from a
// majority lately (contactWithin), so that a leader cut off from the
// others answers nothing, reads included, from an engine that a new
// leader elsewhere may already have overtaken.
func (f *front) localServer(g uint64) *httpapi.Server {
	srv := f.servers[g].Load()
	if srv == nil || f.node.Leader(g) != f.self {
		return nil
	}
	// On the stack for clusters of up to nine nodes: this runs for every
	// request the node answers.
	var buf [8]time.Time
	heard := buf[:0]
	// The group's voters as it applied them: a node added since the
	// start counts, one removed does not.
	f.node.EachVoter(g, func(p uint64) { heard = append(heard, f.node.LastHeard(p)) })
	if !inContact(time.Now(), heard, contactWithin) {
		return nil
	}
	return srv
}

// inContact reports whether this node and the peers heard from within
// the last within of now make a majority of the nodes (this one and
// heard's).
func inContact(now time.Time, heard []time.Time, within time.Duration) bool {
	n := 1
	for _, h := range heard {
		if now.Sub(h) < within {
			n++
		}
	}
	return 2*n > len(heard)+1
}

// frontBodyReadMax is the largest body the front reads whole before it
// refuses it: a body past the API's limit but within this one is read and
// answered 413 body_too_large on an open connection, where refusing it
// unread would close the connection with the body unread and reset it
// under the client's feet, before the client reads the answer.
const frontBodyReadMax = 1 << 20

// frontConcurrencyMax bounds the requests a node's front holds at once,
// served here or forwarded; beyond it fasthttp refuses connections.
const frontConcurrencyMax = 16384

// frontReadError answers a request the front could not read, as a
// Server answers one (problem+json with the Server's codes).
func frontReadError(ctx *fasthttp.RequestCtx, err error) {
	var small *fasthttp.ErrSmallBuffer
	var netErr net.Error
	switch {
	case errors.As(err, &small):
		httpapi.WriteProblem(ctx, api.CodeHeadersTooLarge, fmt.Sprintf("request line and headers must fit in %d bytes", httpapi.DefaultHeaderBytesMax), 0)
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		httpapi.WriteProblem(ctx, api.CodeBodyTooLarge, fmt.Sprintf("request bodies are limited to %d bytes", httpapi.DefaultBodyBytesMax), 0)
	case errors.As(err, &netErr) && netErr.Timeout():
		ctx.SetConnectionClose()
		httpapi.WriteProblem(ctx, api.CodeRequestTimeout, fmt.Sprintf("the request was not received within %s; the connection is closed", httpapi.DefaultReadTimeout), 0)
	default:
		httpapi.WriteProblem(ctx, api.CodeValidationFailed, "the HTTP request could not be read: it is not valid HTTP/1.1", 0)
	}
}

// forwardTimeoutOf bounds the forward of ctx's request: forwardTimeout,
// and for a long-poll of the event feed its wait= on top.
func forwardTimeoutOf(ctx *fasthttp.RequestCtx) time.Duration {
	if string(ctx.Path()) == "/v1/events" {
		if w, err := strconv.Atoi(string(ctx.QueryArgs().Peek("wait"))); err == nil && w > 0 && w <= 3600 {
			return forwardTimeout + time.Duration(w)*time.Second
		}
	}
	return forwardTimeout
}

// retryAfterNoLeaderSeconds: a group elects a leader in about a second.
const retryAfterNoLeaderSeconds = 1

func addClusterFlags(fs *flag.FlagSet, o *clusterOptions) {
	fs.Uint64Var(&o.nodeID, "node-id", 0, "this node's `id` in -peers; 0 runs slotd alone, not as a cluster node")
	fs.StringVar(&o.peers, "peers", "", "every cluster node as `id=host:port` of its Raft listener, comma-separated (cluster mode)")
	fs.StringVar(&o.edges, "edges", "", "every cluster node as `id=host:port` of its API listener, comma-separated: where a node forwards requests for groups another leads (cluster mode)")
	fs.BoolVar(&o.join, "join", false, "start as a node to be added to a running cluster (slotd cluster add): create no group, wait for each group's leader to send its log; -peers and -edges name the running nodes and this one")
	fs.IntVar(&o.groups, "groups", 1, "`count` of Raft groups the offices are sharded over, 1 to 255; the same on every node for the cluster's life (cluster mode)")
}

// parseNodeList reads "1=host:port,2=host:port".
func parseNodeList(flagName, s string) (map[uint64]string, error) {
	out := map[uint64]string{}
	for part := range strings.SplitSeq(s, ",") {
		id, addr, ok := strings.Cut(strings.TrimSpace(part), "=")
		n, err := strconv.ParseUint(id, 10, 64)
		if !ok || err != nil || n == 0 || addr == "" {
			return nil, fmt.Errorf("-%s %q: each node is id=host:port with an id from 1", flagName, part)
		}
		if _, dup := out[n]; dup {
			return nil, fmt.Errorf("-%s: node %d is listed twice", flagName, n)
		}
		out[n] = addr
	}
	return out, nil
}

func (o clusterOptions) check() (peers, edges map[uint64]string, err error) {
	if o.peers == "" || o.edges == "" {
		return nil, nil, errors.New("-node-id needs -peers and -edges, listing every node of the cluster")
	}
	if peers, err = parseNodeList("peers", o.peers); err != nil {
		return nil, nil, err
	}
	if edges, err = parseNodeList("edges", o.edges); err != nil {
		return nil, nil, err
	}
	if _, ok := peers[o.nodeID]; !ok {
		return nil, nil, fmt.Errorf("-node-id %d is not in -peers", o.nodeID)
	}
	for id := range peers {
		if _, ok := edges[id]; !ok {
			return nil, nil, fmt.Errorf("node %d of -peers has no API address in -edges", id)
		}
	}
	if len(edges) != len(peers) {
		return nil, nil, errors.New("-edges must list the nodes of -peers, no others")
	}
	if o.groups < 1 || o.groups > 255 {
		return nil, nil, fmt.Errorf("-groups %d: give 1 to 255", o.groups)
	}
	return peers, edges, nil
}

// serveCluster runs slotd as node opts.cluster.nodeID of a cluster.
func serveCluster(opts options, files startFiles, log *zap.Logger, hup <-chan os.Signal) error {
	co := opts.cluster
	peers, edges, err := co.check()
	if err != nil {
		return err
	}
	keys, offices := files.keys, files.offices
	if err := os.MkdirAll(opts.data, 0o700); err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	if err := checkDataDirOwner(opts.data, co.nodeID); err != nil {
		return err
	}
	if err := checkClusterFormat(opts.data); err != nil {
		return err
	}
	secret, err := ticketSecret(opts.data)
	if err != nil {
		return err
	}
	walOpts := wal.Options{Logger: log.Sugar().Named("pebble"), FS: opts.dataFS}
	raftDB, err := wal.Open(filepath.Join(opts.data, "raft"), walOpts)
	if err != nil {
		return fmt.Errorf("cannot open the Raft log store: %w", err)
	}
	defer raftDB.Close()
	logStore, err := raftlog.Open(raftDB.RaftRegion(), raftlog.Options{})
	if err != nil {
		return err
	}
	stores := map[uint64]*wal.DB{}
	var groups []uint64
	for g := 1; g <= co.groups; g++ {
		id := uint64(g)
		db, err := wal.Open(filepath.Join(opts.data, "groups", strconv.Itoa(g)), walOpts)
		if err != nil {
			return fmt.Errorf("cannot open the store of group %d: %w", g, err)
		}
		defer db.Close()
		stores[id] = db
		groups = append(groups, id)
	}
	if err := checkStoresAgainstLog(stores, logStore); err != nil {
		return err
	}
	f := &front{self: co.nodeID, groups: groups, stores: stores, raftDB: raftDB, log: log, edges: map[uint64]*fasthttp.HostClient{}, servers: map[uint64]*atomic.Pointer[httpapi.Server]{}, keys: keys, officesPut: map[uint64]bool{}, forwardToken: forwardTokenOf(secret)}
	f.dataDir = opts.data
	for id := range peers {
		f.peerIDs = append(f.peerIDs, id)
	}
	for id, addr := range edges {
		f.edges[id] = &fasthttp.HostClient{Addr: addr, MaxConns: 4096, MaxConnWaitTimeout: time.Second, ReadTimeout: forwardTimeout + httpapi.DefaultEventsWaitMax, WriteTimeout: forwardTimeout, NoDefaultUserAgentHeader: true}
	}
	f.transferAsked = map[uint64]*atomic.Int64{}
	for _, g := range groups {
		f.servers[g] = new(atomic.Pointer[httpapi.Server])
		f.transferAsked[g] = new(atomic.Int64)
	}
	steady := httpapi.NewSteadyClock()
	// One set of rate limits for the node, whichever group Server a
	// request reaches.
	limits := httpapi.NewSharedLimits()
	f.newServer = func(group uint64, e *allocator.Engine) (*httpapi.Server, *prometheus.Registry, error) {
		reg := prometheus.NewRegistry()
		srv, err := httpapi.New(httpapi.Config{
			Engine: e, Idempotency: groupIdempotency{db: stores[group], rep: f.rep, group: group}, Events: stores[group],
			Keys: f.currentKeys(), KeysSource: func() ([]httpapi.Key, error) { return f.currentKeys(), nil },
			WatchID: watchIDOf, Secret: secret, Steady: steady, Logger: log.With(zap.Uint64("group", group)), Registry: reg, Limits: limits,
			RatePerSecond: opts.ratePerKey, RateBurst: opts.rateBurst, InFlightMax: opts.inFlightMax,
			RatePerApplicant: applicantRate(opts.ratePerApplicant), RateApplicantBurst: opts.rateApplicantBurst,
			FilesReserved: httpapi.DefaultFilesReserved + storeFilesMax*(1+co.groups),
		})
		return srv, reg, err
	}
	f.offices = offices
	rep, err := replica.New(replica.Config{Self: co.nodeID, Stores: stores, Logger: log.Named("replica"), OnEngine: f.engineChanged,
		LedgerRemote: f.ledgerRemote, MovePartBytes: co.movePartBytes})
	if err != nil {
		return err
	}
	f.rep = rep
	var cpeers []cluster.Peer
	for id, addr := range peers {
		cpeers = append(cpeers, cluster.Peer{ID: id, Addr: addr})
	}
	frameRefused := func(err error) {
		switch {
		case errors.Is(err, cluster.ErrNewerFormat):
			log.Error("refused a frame of a newer format: a peer runs a newer release that writes it", zap.Error(err))
			return
		case errors.Is(err, cluster.ErrUnknownPeer):
			log.Warn("refused the Raft traffic of a node that is not a member, and told it so (removed, or never added)", zap.Error(err))
			return
		}
		log.Warn("refused a malformed frame on the Raft listener", zap.Error(err))
	}
	node, err := cluster.NewNode(cluster.Config{ID: co.nodeID, Peers: cpeers, Groups: groups, ProposalBytesMax: 3 << 20, Join: co.join,
		Transport: cluster.TransportOptions{FrameRefused: frameRefused, TestNoRefusals: co.noRefusals}}, logStore, rep)
	if err != nil {
		return refusedForGood(opts.data, err)
	}
	f.node = node
	rep.Start(node)
	defer func() {
		rep.Close()
		_ = node.Close()
	}()

	adminLn, err := net.Listen("tcp", opts.adminAddr)
	if err != nil {
		return fmt.Errorf("admin listener: %w", err)
	}
	defer adminLn.Close()
	metrics, err := newClusterMetrics(f)
	if err != nil {
		return err
	}
	f.metrics = metrics
	stopMetrics := make(chan struct{})
	defer close(stopMetrics)
	go metrics.countLeaderChanges(f, stopMetrics)
	go f.balance(f.peerIDs, stopMetrics)
	go f.sweepLed(steady, stopMetrics)
	go f.endServedParts(stopMetrics)
	admin := &http.Server{Handler: f.adminHandler(), ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 10 * time.Second, WriteTimeout: time.Minute}
	go func() { _ = admin.Serve(adminLn) }()
	defer admin.Close()
	apiLn, err := net.Listen("tcp", opts.addr)
	if err != nil {
		return fmt.Errorf("API listener: %w", err)
	}
	// The front reads every request before a group's Server sees it, so it
	// holds them to the Server's bounds and answers what it cannot read
	// as a Server would.
	srv := &fasthttp.Server{Handler: f.serve, ErrorHandler: frontReadError, Name: "slotd",
		ReadTimeout: httpapi.DefaultReadTimeout, WriteTimeout: forwardTimeout + httpapi.DefaultEventsWaitMax, IdleTimeout: httpapi.DefaultIdleTimeout,
		MaxRequestBodySize: frontBodyReadMax, ReadBufferSize: httpapi.DefaultHeaderBytesMax, Concurrency: frontConcurrencyMax,
		NoDefaultServerHeader: true, NoDefaultDate: true}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(apiLn) }()
	// Caught from before the ready line on, as in serve.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	log.Info("slotd cluster node ready", zap.Uint64("node", co.nodeID), zap.Int("groups", co.groups),
		zap.String("addr", apiLn.Addr().String()), zap.String("admin_addr", adminLn.Addr().String()), zap.String("data", opts.data))

	stopHup := make(chan struct{})
	defer close(stopHup)
	go f.reloadOnHangup(opts, hup, stopHup)
	select {
	case s := <-sig:
		log.Info("draining", zap.String("signal", s.String()))
	case err := <-served:
		return fmt.Errorf("API listener: %w", err)
	case <-node.Done():
		return refusedForGood(opts.data, fmt.Errorf("cluster node stopped: %w", node.Err()))
	}
	// Readiness off first, then the leaderships handed on (cluster_drain.go).
	f.draining.Store(true)
	stopHandOff := make(chan struct{})
	defer close(stopHandOff)
	if !opts.cluster.noHandOff {
		handedOff := make(chan struct{})
		go f.handOff(stopHandOff, handedOff)
		<-handedOff
	}
	drainDelay(func() {}, opts.shutdownDelay, sig, log)
	ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := srv.ShutdownWithContext(ctx); err != nil {
		log.Warn("shutdown did not finish cleanly", zap.Error(err))
	}
	log.Info("stopped")
	return nil
}

// front routes each request to the Server of its group.
type front struct {
	self    uint64
	groups  []uint64
	stores  map[uint64]*wal.DB
	edges   map[uint64]*fasthttp.HostClient            // guarded by edgesMu once serving: see edge
	servers map[uint64]*atomic.Pointer[httpapi.Server] // by group; nil where no engine runs here
	raftDB  *wal.DB                                    // the Raft log's store; with stores, every store of the node
	rep     *replica.Replica
	node    *cluster.Node
	log     *zap.Logger
	offices []allocator.OfficeConfig // to put at start, each in its group
	// draining is set after SIGTERM for -shutdown-delay: /readyz answers
	// 503 while requests are still served.
	draining atomic.Bool
	// transferAsked is, by group, when this node last asked raft to
	// hand the group's leadership on (Unix nanoseconds); the map is
	// read-only after serveCluster built it (cluster_drain.go).
	transferAsked map[uint64]*atomic.Int64

	newServer func(group uint64, e *allocator.Engine) (*httpapi.Server, *prometheus.Registry, error)

	metrics  *clusterMetrics
	gatherer groupGatherer

	// keysMu orders building a group's Server against key reloads.
	keysMu sync.Mutex
	keys   []httpapi.Key // in force: given to each new group Server; guarded by keysMu
	// officesPut records the groups whose engine here has put the
	// offices file; guarded by keysMu.
	officesPut map[uint64]bool

	edgesMu sync.Mutex

	// peerIDs are every node's id, this one's too.
	peerIDs []uint64

	// forwardToken marks the requests nodes forward to each other
	// (fromPeer).
	forwardToken string

	placeMu  sync.RWMutex
	placed   map[string]uint64 // office → group, as the stores hold it
	placedAt uint64            // rep.Moves() when placed was begun

	// dataDir is the node's data directory; backupMu lets one backup
	// run at a time (cluster_backup.go).
	dataDir  string
	backupMu sync.Mutex
}

// currentKeys are the keys in force; the caller holds keysMu (a Server
// is built, or reloads, only under it).
func (f *front) currentKeys() []httpapi.Key { return f.keys }

// reloadOnHangup reads the keys file at each SIGHUP and, if it is sound,
// puts it in force on every group Server this node runs and every one it
// builds later; a file that is not leaves the keys in force, with a log
// line saying why (httpapi/reload.go has the rules).
func (f *front) reloadOnHangup(opts options, hup <-chan os.Signal, stop <-chan struct{}) {
	for {
		select {
		case <-stop:
			return
		case <-hup:
		}
		keys, err := readKeys(opts)
		if err != nil {
			f.log.Warn("keys not reloaded; the previous keys stay in force", zap.String("file", opts.keys), zap.Error(err))
			continue
		}
		f.reloadKeys(keys)
	}
}

// reloadKeys puts keys in force on every group Server, or, if one refuses
// them (a key whose namespace would move), on none: the Servers and the
// ones built later keep one set of keys. keysMu is held throughout, so
// no Server is built meanwhile with keys about to change.
func (f *front) reloadKeys(keys []httpapi.Key) {
	f.keysMu.Lock()
	defer f.keysMu.Unlock()
	prev := f.keys
	f.keys = keys
	var done []*httpapi.Server
	for _, g := range f.groups {
		srv := f.servers[g].Load()
		if srv == nil {
			continue
		}
		if err := srv.ReloadKeys(); err != nil {
			f.keys = prev
			for _, d := range done {
				_ = d.ReloadKeys()
			}
			return // ReloadKeys logged why
		}
		done = append(done, srv)
	}
}

// ready reports whether the node serves: its Raft loop runs and every
// group has a leader it knows of, so a request here is served or
// forwarded rather than answered 503 no_leader.
func (f *front) ready() bool {
	if f.node.Err() != nil {
		return false
	}
	for _, g := range f.groups {
		if l, _ := f.node.Status(g); l == 0 {
			return false
		}
	}
	return true
}

// engineChanged installs a Server over a group's new engine (nil: the
// group has none here now), and puts the configured offices of the group
// that its store lacks or holds otherwise.
func (f *front) engineChanged(group uint64, e *allocator.Engine) {
	f.keysMu.Lock()
	defer f.keysMu.Unlock()
	if e == nil {
		f.servers[group].Store(nil)
		f.gatherer.set(group, nil)
		return
	}
	srv, reg, err := f.newServer(group, e)
	if err != nil {
		f.log.Error("cannot serve a group", zap.Uint64("group", group), zap.Error(err))
		return
	}
	// The offices file is put once per process, by the first engine of
	// each group here, as a single slotd puts it at its start: a later
	// engine of the group (a failover, a rebuild) must not undo what an
	// admin changed through the API since.
	if !f.officesPut[group] {
		f.officesPut[group] = true
		for _, cfg := range f.offices {
			if f.groupOfOffice(cfg.ID) != group {
				continue
			}
			if cur, err := e.Office(cfg.ID); err == nil && reflect.DeepEqual(cur.Config, cfg) {
				continue
			}
			if _, err := e.PutOffice(time.Now(), cfg, allocator.Meta{Actor: "config"}); err != nil {
				f.log.Warn("cannot put a configured office", zap.String("office", cfg.ID), zap.Error(err))
				f.officesPut[group] = false // the next engine tries again
			}
		}
	}
	srv.SetReady(true)
	f.gatherer.set(group, reg)
	f.servers[group].Store(srv)
}

// groupOfOffice returns the group that holds office id: the one whose
// store has it (data every replica agrees on), or, for an office no
// store has yet, the one its name hashes to, where it will be created;
// 0 while the office moves between groups (replica O1–O4): from its
// freeze to its move-out, which is proposed only once the destination's
// leader applied the import. An office whose move-out this node applied
// before the import goes where the marks name. The answers are cached
// until this node applies a move entry.
func (f *front) groupOfOffice(id string) uint64 {
	moves := f.rep.Moves()
	f.placeMu.RLock()
	g, ok := f.placed[id]
	stale := f.placedAt != moves
	f.placeMu.RUnlock()
	if ok && !stale {
		return g
	}
	if stale {
		f.placeMu.Lock()
		f.placed, f.placedAt = nil, moves
		f.placeMu.Unlock()
	}
	var holder, movedTo uint64
	for _, g := range f.groups {
		st, to, err := f.stores[g].OfficeMove(id)
		switch {
		case err != nil || st == wal.MoveMoving:
			return 0
		case st == wal.MoveMoved:
			movedTo = to
		default:
			if has, err := f.stores[g].HasOffice(id); err == nil && has {
				holder = g
			}
		}
	}
	if holder == 0 && movedTo != 0 {
		// This node's replica of the destination lags the move-out here:
		// follow the marks to where the office went last.
		holder = movedTo
		for range 8 {
			st, to, err := f.stores[holder].OfficeMove(id)
			if err != nil || st != wal.MoveMoved {
				break
			}
			holder = to
		}
	}
	if holder != 0 {
		f.placeMu.Lock()
		if f.placed == nil {
			f.placed = map[string]uint64{}
		}
		if f.placedAt == moves {
			f.placed[id] = holder
		}
		f.placeMu.Unlock()
		return holder
	}
	h := fnv.New32a()
	h.Write([]byte(id))
	return f.groups[h.Sum32()%uint32(len(f.groups))]
}

// groupOfBooking returns the group that holds booking id: the one its
// first byte names, or, once its office moved out of that group, the one
// the move's marks name (replica O4); 0 while its office moves.
func (f *front) groupOfBooking(id allocator.ID) uint64 {
	g := uint64(id[0])
	for range 8 { // an office moved on again: a few hops at most
		to, office, err := f.stores[g].BookingMovedTo(id)
		if err != nil || to == 0 || f.stores[to] == nil {
			return g
		}
		if st, _, err := f.stores[g].OfficeMove(office); err != nil || st != wal.MoveMoved {
			return 0
		}
		g = to
	}
	return g
}

// groupOf finds the group a request belongs to; false for a request that
// spans groups. Group 0: the office moves between groups.
func (f *front) groupOf(ctx *fasthttp.RequestCtx) (uint64, bool) {
	path := string(ctx.Path())
	rest, ok := strings.CutPrefix(path, "/v1/")
	if !ok {
		return 0, false
	}
	seg := strings.Split(rest, "/")
	switch {
	case seg[0] == "offices" && len(seg) >= 2 && seg[1] != "":
		return f.groupOfOffice(seg[1]), true
	case (seg[0] == "bookings" || seg[0] == "watches") && len(seg) >= 2 && seg[1] != "":
		id, err := allocator.ParseID(seg[1])
		if seg[0] == "watches" && err == nil && id[0] == 0 && len(f.groups) > 1 {
			return 0, false // a region watch over the groups (cluster_watches.go)
		}
		if err != nil || id[0] == 0 || int(id[0]) > len(f.groups) {
			// No group holds it: any group's Server answers it as one
			// slotd would (400 for a malformed id, 404 for one nobody has).
			return f.groups[0], true
		}
		if seg[0] == "bookings" {
			return f.groupOfBooking(id), true
		}
		return uint64(id[0]), true
	case (seg[0] == "bookings" || seg[0] == "watches") && len(seg) == 1:
		if ctx.IsPost() {
			var body struct {
				Office string `json:"office"`
			}
			if json.Unmarshal(ctx.PostBody(), &body) == nil && body.Office != "" {
				return f.groupOfOffice(body.Office), true
			}
			return 0, false
		}
		if number := string(ctx.QueryArgs().Peek("number")); number != "" {
			// T1-20261217-0002: the office, then the date and the serial.
			if i := strings.LastIndexByte(number, '-'); i > 0 {
				if j := strings.LastIndexByte(number[:i], '-'); j > 0 {
					return f.groupOfOffice(number[:j]), true
				}
			}
		}
	}
	return 0, false
}

// serve hands the request to its group's Server here, or forwards it to
// the node that leads the group.
func (f *front) serve(ctx *fasthttp.RequestCtx) {
	if len(ctx.PostBody()) > httpapi.DefaultBodyBytesMax {
		httpapi.WriteProblem(ctx, api.CodeBodyTooLarge, fmt.Sprintf("request bodies are limited to %d bytes", httpapi.DefaultBodyBytesMax), 0)
		return
	}
	forwarded := f.fromPeer(ctx)
	if forwarded {
		defer asClient(ctx)()
	}
	if string(ctx.Path()) == pathLedger {
		f.serveLedger(ctx, forwarded)
		return
	}
	if string(ctx.Path()) == pathMembers {
		f.serveMembers(ctx, forwarded)
		return
	}
	if string(ctx.Path()) == pathMove {
		f.serveMove(ctx, forwarded) // cluster_move.go
		return
	}
	g, ok := f.groupOf(ctx)
	if named := ctx.Request.Header.Peek(headerGroup); len(named) > 0 && forwarded {
		n, err := strconv.ParseUint(string(named), 10, 8)
		if err != nil || f.servers[n] == nil {
			httpapi.WriteProblem(ctx, api.CodeValidationFailed, fmt.Sprintf("%s %q is not a group of this cluster", headerGroup, named), 0)
			return
		}
		g, ok = n, true
	}
	if ok && g == 0 {
		httpapi.WriteProblem(ctx, api.CodeOfficeMoving, "the office is moving between the cluster's groups; retry in a moment", retryAfterNoLeaderSeconds)
		return
	}
	if !ok {
		if len(f.groups) > 1 {
			if f.spanning(ctx) {
				return
			}
			if f.regionWatch(ctx) {
				return
			}
		}
		// Whatever else names no group (an unknown route, a body that
		// names no office) is answered by a group's Server as one slotd
		// answers it.
		g = f.groups[0]
	}
	if srv := f.servers[g].Load(); srv != nil && (forwarded || f.node.Leader(g) == f.self) {
		// A broken engine (replica P4) may hold claims the log does not,
		// and one that a move's import is replacing lacks the office:
		// it answers nothing until the next is built. Nor does one the
		// replica dropped already, whose Server engineChanged has not
		// taken down yet: it lacks what the entries applied since wrote.
		if e := f.rep.Engine(g); e == nil || e != srv.Engine() || e.Degraded() {
			httpapi.WriteProblem(ctx, api.CodeNoLeader, fmt.Sprintf("node %d is building the engine of group %d again", f.self, g), retryAfterNoLeaderSeconds)
			return
		}
	}
	if srv := f.localServer(g); srv != nil {
		srv.Handler()(ctx)
		f.leadershipLost(ctx, g)
		// Who answered: the group's leader, which holds every write the
		// group acknowledged, so a read here never lags one.
		ctx.Response.Header.Set(headerNode, strconv.FormatUint(f.self, 10))
		ctx.Response.Header.Set(headerGroup, strconv.FormatUint(g, 10))
		return
	}
	if forwarded {
		httpapi.WriteProblem(ctx, api.CodeNoLeader, fmt.Sprintf("node %d does not lead group %d (any more)", f.self, g), retryAfterNoLeaderSeconds)
		return
	}
	leader := f.node.Leader(g)
	if leader == f.self {
		httpapi.WriteProblem(ctx, api.CodeNoLeader, fmt.Sprintf("node %d leads group %d but has not heard from a majority of the cluster lately: it may no longer be the leader", f.self, g), retryAfterNoLeaderSeconds)
		return
	}
	client := f.edge(leader)
	if leader == 0 || leader == f.self || client == nil {
		httpapi.WriteProblem(ctx, api.CodeNoLeader, fmt.Sprintf("group %d is electing its leader", g), retryAfterNoLeaderSeconds)
		return
	}
	req := fasthttp.AcquireRequest()
	defer fasthttp.ReleaseRequest(req)
	ctx.Request.CopyTo(req)
	req.Header.Set(headerForwarded, f.forwardToken)
	setClient(req, ctx)
	if err := client.DoTimeout(req, &ctx.Response, forwardTimeoutOf(ctx)); err != nil {
		f.metrics.forwarded.WithLabelValues("unreachable").Inc()
		ctx.Response.Reset()
		httpapi.WriteProblem(ctx, api.CodeNoLeader, fmt.Sprintf("the leader of group %d, node %d, did not answer: %v", g, leader, err), retryAfterNoLeaderSeconds)
		return
	}
	f.metrics.forwarded.WithLabelValues("answered").Inc()
}

// groupIdempotency is a group's idempotency store: records are read from
// the group's replica here and written through the group's Raft log, so
// a retry on another node after a failover finds them.
type groupIdempotency struct {
	db    *wal.DB
	rep   *replica.Replica
	group uint64
}

func (s groupIdempotency) LookupIdempotency(key string) (*allocator.IdempotencyRecord, bool, error) {
	return s.db.LookupIdempotency(key)
}

func (s groupIdempotency) PutIdempotency(rec *allocator.IdempotencyRecord) error {
	return s.rep.Commit(s.group, &allocator.Change{Idempotency: rec})
}
