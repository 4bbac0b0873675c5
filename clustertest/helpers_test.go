package clustertest

import (
	"bufio"
	"bytes"
	crand "crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"slotd/internal/slotdtest"
	"slotd/internal/slotdtest/testtime"
)

// waitFor bounds every wait: a bound for a loaded machine, not a
// measurement.
const waitFor = 30 * time.Second

const (
	portalKey = "cluster-test-portal-key-0123456789"
	adminKey  = "cluster-test-admin-key-0123456789"
)

type cluster struct {
	t      *testing.T
	bin    string
	groups int
	peers  string
	edges  string
	keys   string
	args   []string // added to every node's command line
	env    []string // added to every node's environment
	nodes  []*node
	// nodesMu guards nodes against the rushes' reads (members) while
	// the test replaces a member; the test's own goroutine reads nodes
	// without it.
	nodesMu sync.Mutex
	// links[i][j] carries node i's Raft traffic to node j, when the
	// cluster was started with proxies: the test can cut it.
	links map[int]map[int]*proxy
	// inbound[k] carries every node's Raft traffic to node k, a node
	// added to the running cluster with the proxy's address (see proxy).
	inbound map[int]*proxy
}

type node struct {
	c                 *cluster
	id                int
	addr, admin, raft string
	data              string
	peers             string   // its own -peers: the others through links, when proxied
	edges             string   // its own -edges, when not the cluster's (a node added later)
	args              []string // added to its command line (after the cluster's args)
	// container names the node's Docker container, when it runs in one;
	// containerDown is set while the test has it killed or cut off.
	container     string
	containerDown atomic.Bool

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	log  *bytes.Buffer
}

var client = &http.Client{Timeout: 15 * time.Second}

// startCluster starts size nodes of bin hosting groups Raft groups, with
// the demo offices, one keys file and one ticket secret.
func startCluster(t *testing.T, bin string, size, groups int) *cluster {
	return startClusterLinked(t, bin, size, groups, false)
}

// startClusterLinked is startCluster; with proxied, each node reaches
// each other's Raft listener through a proxy of its own (links), so that
// the test can partition nodes.
func startClusterLinked(t *testing.T, bin string, size, groups int, proxied bool) *cluster {
	return startClusterWith(t, bin, size, groups, proxied, nil)
}

// startClusterWith is startClusterLinked; every node is started with
// args added to its command line, and env ("NAME=value") to its
// environment.
func startClusterWith(t *testing.T, bin string, size, groups int, proxied bool, env []string, args ...string) *cluster {
	c := &cluster{t: t, bin: bin, groups: groups, env: env, args: args}
	dir := t.TempDir()
	c.keys = filepath.Join(dir, "keys.json")
	keys := fmt.Sprintf(`[{"key":%q,"name":"portal","scopes":["portal"],"offices":["*"]},{"key":%q,"name":"admin","scopes":["admin","portal","operator"],"offices":["*"]}]`, portalKey, adminKey)
	if err := os.WriteFile(c.keys, []byte(keys), 0o600); err != nil {
		t.Fatal(err)
	}
	secret := make([]byte, 32)
	crand.Read(secret)
	addrs := slotdtest.FreeAddrs(t, 3*size)
	var peers, edges []string
	for i := range size {
		n := &node{c: c, id: i + 1, raft: addrs[3*i], addr: addrs[3*i+1], admin: addrs[3*i+2], data: filepath.Join(dir, fmt.Sprintf("node%d", i+1))}
		if err := os.MkdirAll(n.data, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(n.data, "ticket-secret"), secret, 0o600); err != nil {
			t.Fatal(err)
		}
		peers = append(peers, fmt.Sprintf("%d=%s", n.id, n.raft))
		edges = append(edges, fmt.Sprintf("%d=%s", n.id, n.addr))
		c.nodes = append(c.nodes, n)
	}
	c.peers, c.edges = strings.Join(peers, ","), strings.Join(edges, ",")
	if proxied {
		c.links = map[int]map[int]*proxy{}
		for _, n := range c.nodes {
			c.links[n.id] = map[int]*proxy{}
			var own []string
			for _, m := range c.nodes {
				addr := m.raft
				if m != n {
					p := newProxy(t, m.raft)
					c.links[n.id][m.id] = p
					addr = p.addr()
				}
				own = append(own, fmt.Sprintf("%d=%s", m.id, addr))
			}
			n.peers = strings.Join(own, ",")
		}
	}
	// Registered before the first start, so that a node that never gets
	// ready is stopped too.
	t.Cleanup(func() {
		for _, n := range c.nodes {
			n.kill()
		}
		if t.Failed() {
			for _, n := range c.nodes {
				t.Logf("node %d log tail:\n%s", n.id, n.tail(4000))
			}
		}
	})
	for _, n := range c.nodes {
		n.launch()
	}
	for _, n := range c.nodes {
		n.waitReady()
	}
	return c
}

// start runs the node's process and waits until it is ready.
func (n *node) start() {
	n.c.t.Helper()
	n.launch()
	n.waitReady()
}

// launch runs the node's process.
func (n *node) launch() {
	t := n.c.t
	t.Helper()
	peers := n.c.peers
	if n.peers != "" {
		peers = n.peers
	}
	edges := n.c.edges
	if n.edges != "" {
		edges = n.edges
	}
	cmd := exec.Command(n.c.bin, "-demo", "-keys", n.c.keys, "-data", n.data, "-addr", n.addr, "-admin-addr", n.admin,
		"-node-id", fmt.Sprint(n.id), "-peers", peers, "-edges", edges, "-groups", fmt.Sprint(n.c.groups),
		"-rate-per-key", "100000", "-rate-per-applicant", "0", "-log-level", "info")
	cmd.Args = append(cmd.Args, n.c.args...)
	cmd.Args = append(cmd.Args, n.args...)
	cmd.Env = append(os.Environ(), n.c.env...)
	log := &bytes.Buffer{}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout = io.Discard
	// Should the test binary itself be killed (a timeout), the node dies
	// with it instead of living on.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			n.mu.Lock()
			log.Write(sc.Bytes())
			log.WriteByte('\n')
			n.mu.Unlock()
		}
		cmd.Wait()
		close(done)
	}()
	n.mu.Lock()
	n.cmd, n.done, n.log = cmd, done, log
	n.mu.Unlock()
}

// waitReady waits until the node's /readyz answers 200: every group has
// a leader it knows of.
func (n *node) waitReady() {
	t := n.c.t
	t.Helper()
	n.mu.Lock()
	done := n.done
	n.mu.Unlock()
	testtime.Eventually(t, waitFor, fmt.Sprintf("node %d is ready", n.id), func() error {
		select {
		case <-done:
			return errors.New("exited:\n" + n.tail(2000))
		default:
		}
		resp, err := client.Get("http://" + n.admin + "/readyz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("readyz %d", resp.StatusCode)
		}
		return nil
	})
}

func (n *node) tail(max int) string {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.log == nil {
		return ""
	}
	b := n.log.Bytes()
	if len(b) > max {
		b = b[len(b)-max:]
	}
	return string(b)
}

// up reports whether the node's process runs (for a container: whether
// the test left it running and connected).
func (n *node) up() bool {
	if n.container != "" {
		return !n.containerDown.Load()
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.done == nil {
		return false
	}
	select {
	case <-n.done:
		return false
	default:
		return true
	}
}

// kill ends the process with SIGKILL and waits for it.
func (n *node) kill() {
	n.mu.Lock()
	cmd, done := n.cmd, n.done
	n.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Kill()
	<-done
}

func (n *node) wait() {
	n.mu.Lock()
	done := n.done
	n.mu.Unlock()
	<-done
}

// call sends an API request with the portal key (and an Idempotency-Key
// if idem is set) and decodes the JSON answer.
func (n *node) call(method, path, body, idem string) (int, map[string]any, error) {
	return n.callAs(portalKey, method, path, body, idem)
}

// callAs is call with another key.
func (n *node) callAs(key, method, path, body, idem string) (int, map[string]any, error) {
	req, err := http.NewRequest(method, "http://"+n.addr+path, strings.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+key)
	if idem != "" {
		req.Header.Set("Idempotency-Key", idem)
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out, nil
}

type groupStatus struct {
	Group   uint64 `json:"group"`
	Leader  uint64 `json:"leader"`
	Applied uint64 `json:"applied"`
	Digest  string `json:"digest"`
	Engine  bool   `json:"engine"`
}

func (n *node) status() ([]groupStatus, error) {
	resp, err := client.Get("http://" + n.admin + "/cluster/status")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var out struct{ Groups []groupStatus }
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return nil, err
	}
	return out.Groups, nil
}

// leader waits until a running node runs group's engine, and returns it.
func (c *cluster) leader(group uint64) *node {
	c.t.Helper()
	var l *node
	testtime.Eventually(c.t, waitFor, fmt.Sprintf("group %d has a leader with an engine", group), func() error {
		for _, n := range c.nodes {
			if !n.up() {
				continue
			}
			st, err := n.status()
			if err != nil {
				continue
			}
			for _, g := range st {
				if g.Group == group && g.Engine {
					l = n
					return nil
				}
			}
		}
		return errors.New("none")
	})
	return l
}

// converged waits until every running node's replica of group is at one
// applied index with one digest.
func (c *cluster) converged(group uint64) {
	c.t.Helper()
	testtime.Eventually(c.t, waitFor, fmt.Sprintf("replicas of group %d agree", group), func() error {
		var first *groupStatus
		for _, n := range c.nodes {
			if !n.up() {
				continue
			}
			st, err := n.status()
			if err != nil {
				return err
			}
			for _, g := range st {
				if g.Group != group {
					continue
				}
				if first == nil {
					first = &g
				} else if g.Applied != first.Applied || g.Digest != first.Digest {
					return fmt.Errorf("node %d at %d %s, another at %d %s", n.id, g.Applied, g.Digest, first.Applied, first.Digest)
				}
			}
		}
		return nil
	})
}

// caughtUp waits until every running node's replica of group has applied
// at least what the most advanced one had when the wait began: under
// load the indexes never stand still long enough to compare.
func (c *cluster) caughtUp(group uint64) {
	c.t.Helper()
	applied := func(n *node) (uint64, error) {
		st, err := n.status()
		if err != nil {
			return 0, err
		}
		for _, g := range st {
			if g.Group == group {
				return g.Applied, nil
			}
		}
		return 0, fmt.Errorf("node %d has no group %d", n.id, group)
	}
	var target uint64
	for _, n := range c.nodes {
		if n.up() {
			if a, err := applied(n); err == nil {
				target = max(target, a)
			}
		}
	}
	testtime.Eventually(c.t, waitFor, fmt.Sprintf("replicas of group %d reach %d", group, target), func() error {
		for _, n := range c.nodes {
			if !n.up() {
				continue
			}
			a, err := applied(n)
			if err != nil {
				return err
			}
			if a < target {
				return fmt.Errorf("node %d at %d", n.id, a)
			}
		}
		return nil
	})
}

// members returns the cluster's nodes, as of now.
func (c *cluster) members() []*node {
	c.nodesMu.Lock()
	defer c.nodesMu.Unlock()
	return c.nodes
}

// randomUp returns a running node.
func (c *cluster) randomUp() *node {
	for {
		nodes := c.members()
		n := nodes[rand.IntN(len(nodes))]
		if n.up() {
			return n
		}
	}
}

// nextWeekday returns the date days ahead, moved on to a Monday–Friday,
// in Moscow, as YYYY-MM-DD.
func nextWeekday(days int) string {
	msk := time.FixedZone("MSK", 3*3600)
	d := time.Now().In(msk).AddDate(0, 0, days)
	for d.Weekday() == time.Saturday || d.Weekday() == time.Sunday {
		d = d.AddDate(0, 0, 1)
	}
	return d.Format("2006-01-02")
}

// feedEvent is one event of GET /v1/events as the tests read it.
type feedEvent struct {
	Cursor  string `json:"cursor"`
	Type    string `json:"type"`
	Booking struct {
		ID string `json:"id"`
	} `json:"booking"`
}

// readFeed reads the event feed from after= on, through node n with the
// admin key, until a page comes back empty.
func (n *node) readFeed(t *testing.T, after string) (events []feedEvent, next string) {
	t.Helper()
	next = after
	for {
		var page struct {
			Events     []feedEvent `json:"events"`
			NextCursor string      `json:"next_cursor"`
		}
		err := testtime.Poll(waitFor, func() error {
			req, _ := http.NewRequest("GET", "http://"+n.addr+"/v1/events?limit=1000&after="+next, nil)
			req.Header.Set("Authorization", "Bearer "+adminKey)
			resp, err := client.Do(req)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			if resp.StatusCode != 200 {
				return fmt.Errorf("events: %d", resp.StatusCode)
			}
			return json.NewDecoder(resp.Body).Decode(&page)
		})
		if err != nil {
			t.Fatalf("node %d: %v", n.id, err)
		}
		if len(page.Events) == 0 {
			return events, next
		}
		events = append(events, page.Events...)
		next = page.NextCursor
	}
}

// partition cuts node id off from the others' Raft traffic, both ways, or
// mends it.
func (c *cluster) partition(id int, cut bool) {
	for i, to := range c.links {
		for j, p := range to {
			if i == id || j == id {
				p.setCut(cut)
			}
		}
	}
	for k, p := range c.inbound {
		if k == id {
			p.setCut(cut)
		} else {
			p.setCutFrom(id, cut)
		}
	}
}

// pause stops the node's process (SIGSTOP) or lets it go on (SIGCONT).
func (n *node) pause(stop bool) {
	n.mu.Lock()
	cmd := n.cmd
	n.mu.Unlock()
	if stop {
		cmd.Process.Signal(syscall.SIGSTOP)
	} else {
		cmd.Process.Signal(syscall.SIGCONT)
	}
}
