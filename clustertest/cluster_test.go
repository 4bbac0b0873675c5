package clustertest

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"slotd/internal/slotdtest"
	"slotd/internal/slotdtest/testtime"
)

// booked is a booking a node acknowledged.
type booked struct {
	id, applicant, start string
	window               float64
	node                 int
}

// rush books confirmed seats at office from callers goroutines, each
// request to a random running node, until stop is closed.
type rush struct {
	c       *cluster
	office  string
	date    string
	mu      sync.Mutex
	acks    []booked
	refused atomic.Int64 // 4xx: seat taken and the like
	failed  atomic.Int64 // 503 and connection errors: retryable
	other   atomic.Int64 // anything else: a failure of the test
	seq     atomic.Int64
	stop    chan struct{}
	wg      sync.WaitGroup
	// firstOK is closed by the first acknowledgement after armed.
	armed   atomic.Bool
	firstOK chan struct{}
	once    sync.Once
}

func (c *cluster) startRush(office, date string, callers int) *rush {
	r := &rush{c: c, office: office, date: date, stop: make(chan struct{}), firstOK: make(chan struct{})}
	for range callers {
		r.wg.Go(r.run)
	}
	return r
}

func (r *rush) run() {
	for {
		select {
		case <-r.stop:
			return
		default:
		}
		n := r.c.randomUp()
		i := r.seq.Add(1)
		applicant := fmt.Sprintf("a-%d", i)
		minute := rand.IntN(8) * 15
		body := fmt.Sprintf(`{"office":%q,"service":"patent","applicant":%q,"earliest_after":"%sT%02d:%02d:00+03:00","confirm":true}`,
			r.office, applicant, r.date, 9+minute/60, minute%60)
		status, out, err := n.call("POST", "/v1/bookings", body, fmt.Sprintf("k-%d", i))
		switch {
		case err != nil || status == 503:
			r.failed.Add(1)
			time.Sleep(5 * time.Millisecond)
		case status == 201 || status == 200:
			b := booked{id: str(out["id"]), applicant: applicant, start: str(out["start"]), node: n.id}
			b.window, _ = out["window"].(float64)
			r.mu.Lock()
			r.acks = append(r.acks, b)
			r.mu.Unlock()
			if r.armed.Load() {
				r.once.Do(func() { close(r.firstOK) })
			}
		case status >= 400 && status < 500:
			r.refused.Add(1)
		default:
			r.other.Add(1)
			r.c.t.Errorf("hold on node %d: %d %v", n.id, status, out)
		}
	}
}

func (r *rush) end() []booked {
	close(r.stop)
	r.wg.Wait()
	return r.acks
}

func str(v any) string { s, _ := v.(string); return s }

// endRushes ends the rushes at offices, waits until the replicas agree,
// and checks every node holds what each rush got acknowledged.
func (c *cluster) endRushes(offices []string, rushes []*rush) {
	c.t.Helper()
	var acks [][]booked
	for _, r := range rushes {
		acks = append(acks, r.end())
	}
	for g := range c.groups {
		c.converged(uint64(g + 1))
	}
	for _, n := range c.nodes {
		for i, o := range offices {
			checkBooked(c.t, n, o, acks[i])
		}
	}
	for i, o := range offices {
		c.t.Logf("%s: %d acknowledged, %d retryable failures", o, len(acks[i]), rushes[i].failed.Load())
	}
}

// other returns a node other than n.
func (c *cluster) other(n *node) *node {
	for _, m := range c.nodes {
		if m != n {
			return m
		}
	}
	return nil
}

// checkBooked asserts every acknowledged booking is on node n with its
// seat, and that no two of them share a seat.
func checkBooked(t *testing.T, n *node, office string, acks []booked) {
	t.Helper()
	seats := map[string]string{}
	for _, a := range acks {
		seat := fmt.Sprintf("%s window %v", a.start, a.window)
		if other, dup := seats[seat]; dup {
			t.Fatalf("bookings %s and %s both own %s", other, a.id, seat)
		}
		seats[seat] = a.id
		var status int
		var out map[string]any
		var err error
		// A read during an election answers 503: retry it.
		_ = testtime.Poll(waitFor, func() error {
			status, out, err = n.call("GET", "/v1/bookings/"+a.id+"?applicant="+a.applicant, "", "")
			if err == nil && status == 503 {
				return errors.New("503")
			}
			return nil
		})
		if err != nil || status != 200 {
			t.Fatalf("node %d: acknowledged booking %s (by node %d) is lost: %d %v %v", n.id, a.id, a.node, status, out, err)
		}
		if str(out["start"]) != a.start || out["window"] != a.window || str(out["status"]) != "confirmed" {
			t.Fatalf("node %d: booking %s changed: %v, acknowledged at %s window %v", n.id, a.id, out, a.start, a.window)
		}
	}
}

// Three nodes under a booking rush; the leader of the office's group is
// killed with SIGKILL. Writes succeed again, every acknowledged booking
// is on the survivors with its seat, no seat is owned twice, the
// survivors' replicas agree, and the killed node comes back and agrees.
func TestKillLeaderUnderRush(t *testing.T) {
	c := startCluster(t, slotdtest.Build(t), 3, 1)
	date := nextWeekday(3)
	c.leader(1)
	r := c.startRush("msk-mfc-tverskoy", date, 16)
	time.Sleep(500 * time.Millisecond)
	leader := c.leader(1)
	// A consumer of the event feed reads what there is, through a node
	// that is not the leader, and keeps its cursor.
	reader := c.other(leader)
	before, cursor := reader.readFeed(t, "0")
	r.armed.Store(true)
	killed := time.Now()
	leader.kill()
	select {
	case <-r.firstOK:
		t.Logf("first acknowledged write %v after SIGKILL of the leader, node %d", time.Since(killed), leader.id)
	case <-time.After(waitFor):
		t.Fatalf("no write acknowledged within %v of the leader's death", waitFor)
	}
	time.Sleep(500 * time.Millisecond)
	acks := r.end()
	t.Logf("%d acknowledged, %d refused, %d retryable failures", len(acks), r.refused.Load(), r.failed.Load())
	if len(acks) == 0 {
		t.Fatal("nothing acknowledged")
	}
	c.converged(1)
	for _, n := range c.nodes {
		if n.up() {
			checkBooked(t, n, "msk-mfc-tverskoy", acks)
		}
	}
	// The consumer goes on from its cursor after the failover: the feed
	// continues where it left off, and together its two reads hold every
	// acknowledged booking, each event once.
	after, _ := c.leader(1).readFeed(t, cursor)
	checkFeed(t, append(before, after...), acks)
	leader.start()
	c.converged(1)
	checkBooked(t, leader, "msk-mfc-tverskoy", acks)
	all, _ := leader.readFeed(t, "0")
	checkFeed(t, all, acks)
}

// checkFeed asserts that events come in rising cursor order, each cursor
// once, and that every acknowledged booking has its booking.held event.
func checkFeed(t *testing.T, events []feedEvent, acks []booked) {
	t.Helper()
	held := map[string]bool{}
	var last uint64
	for _, e := range events {
		c, err := strconv.ParseUint(e.Cursor, 10, 64)
		if err != nil || c <= last {
			t.Fatalf("event cursor %q after %d", e.Cursor, last)
		}
		last = c
		if e.Type == "booking.held" {
			held[e.Booking.ID] = true
		}
	}
	for _, a := range acks {
		if !held[a.id] {
			t.Fatalf("acknowledged booking %s has no booking.held event in the feed (%d events)", a.id, len(events))
		}
	}
}

// Every node is killed with SIGKILL under a rush and started again:
// everything acknowledged is back.
func TestKillAllRestartAll(t *testing.T) {
	c := startCluster(t, slotdtest.Build(t), 3, 2)
	date := nextWeekday(4)
	c.leader(1)
	r := c.startRush("msk-mfc-tverskoy", date, 8)
	time.Sleep(700 * time.Millisecond)
	for _, n := range c.nodes {
		n.cmd.Process.Signal(syscall.SIGKILL)
	}
	acks := r.end()
	for _, n := range c.nodes {
		n.wait()
	}
	if len(acks) == 0 {
		t.Fatal("nothing acknowledged")
	}
	for _, n := range c.nodes {
		n.launch()
	}
	for _, n := range c.nodes {
		n.waitReady()
	}
	c.leader(1)
	for _, n := range c.nodes {
		checkBooked(t, n, "msk-mfc-tverskoy", acks)
	}
	c.converged(1)
	c.converged(2)
	t.Logf("%d acknowledged before the kill, all back", len(acks))
}

// A new portal key written to the keys file and announced with SIGHUP
// works through every node, for requests a node serves and ones it
// forwards; the keys in force before stay valid.
func TestKeysReloadOnEveryNode(t *testing.T) {
	c := startCluster(t, slotdtest.Build(t), 3, 2)
	c.leader(1)
	c.leader(2)
	const newKey = "cluster-test-new-portal-key-0123456789"
	keys := fmt.Sprintf(`[{"key":%q,"name":"portal","scopes":["portal"],"offices":["*"]},{"key":%q,"name":"portal-b","scopes":["portal"],"offices":["*"]},{"key":%q,"name":"admin","scopes":["admin","portal","operator"],"offices":["*"]}]`, portalKey, newKey, adminKey)
	if err := os.WriteFile(c.keys, []byte(keys), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, n := range c.nodes {
		if status, _, _ := n.callAs(newKey, "GET", "/v1/offices/msk-mfc-tverskoy", "", ""); status != 401 {
			t.Fatalf("node %d: the new key answered %d before the reload", n.id, status)
		}
	}
	for _, n := range c.nodes {
		n.cmd.Process.Signal(syscall.SIGHUP)
	}
	for _, n := range c.nodes {
		for _, office := range []string{"msk-mfc-tverskoy", "msk-mfc-mitino", "spb-mmc", "msk-sakharovo"} {
			testtime.Eventually(t, waitFor, "the new key works", func() error {
				status, out, err := n.callAs(newKey, "GET", "/v1/offices/"+office, "", "")
				if err != nil || status != 200 {
					return fmt.Errorf("node %d, %s: %d %v %v", n.id, office, status, out, err)
				}
				return nil
			})
			if status, _, _ := n.call("GET", "/v1/offices/"+office, "", ""); status != 200 {
				t.Fatalf("node %d: the old key answered %d after the reload", n.id, status)
			}
		}
		if !n.up() {
			t.Fatalf("node %d ended on SIGHUP", n.id)
		}
	}
}

// A long-poll of the event feed through a node that does not lead the
// (only) group waits as long as it asked, past the forward's usual
// bound, and answers 200.
func TestLongPollThroughFollower(t *testing.T) {
	c := startCluster(t, slotdtest.Build(t), 3, 1)
	leader := c.leader(1)
	follower := c.other(leader)
	_, cursor := follower.readFeed(t, "0")
	req, _ := http.NewRequest("GET", "http://"+follower.addr+"/v1/events?wait=12&after="+cursor, nil)
	req.Header.Set("Authorization", "Bearer "+adminKey)
	long := &http.Client{Timeout: waitFor}
	resp, err := long.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("a 12 s long-poll through a follower answered %d", resp.StatusCode)
	}
}

// Six groups on three nodes: whatever the elections did, the nodes hand
// leaderships on until none leads two groups more than another.
func TestLeadersSpread(t *testing.T) {
	c := startCluster(t, slotdtest.Build(t), 3, 6)
	testtime.Eventually(t, waitFor, "leaders spread over the nodes", func() error {
		st, err := c.nodes[0].status()
		if err != nil {
			return err
		}
		led := map[uint64]int{1: 0, 2: 0, 3: 0}
		for _, g := range st {
			if g.Leader == 0 {
				return fmt.Errorf("group %d has no leader", g.Group)
			}
			led[g.Leader]++
		}
		lo, hi := 6, 0
		for _, n := range led {
			lo, hi = min(lo, n), max(hi, n)
		}
		if hi-lo > 1 {
			return fmt.Errorf("leaders per node %v", led)
		}
		return nil
	})
}

// A hold acknowledged before its group's leader dies, retried with the
// same Idempotency-Key on another node after the failover, answers the
// same booking; the answers name the group's leader that gave them.
func TestIdempotentRetryAfterFailover(t *testing.T) {
	c := startCluster(t, slotdtest.Build(t), 3, 1)
	leader := c.leader(1)
	body := fmt.Sprintf(`{"office":"msk-mfc-tverskoy","service":"patent","applicant":"retry-1","earliest_after":"%sT10:00:00+03:00"}`, nextWeekday(3))
	via := c.other(leader)
	req := func(n *node) (int, map[string]any, http.Header) {
		r, _ := http.NewRequest("POST", "http://"+n.addr+"/v1/bookings", strings.NewReader(body))
		r.Header.Set("Authorization", "Bearer "+portalKey)
		r.Header.Set("Idempotency-Key", "retry-after-failover")
		resp, err := client.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&out)
		return resp.StatusCode, out, resp.Header
	}
	status, first, h := req(via)
	if status != 201 {
		t.Fatalf("hold through node %d: %d %v", via.id, status, first)
	}
	if h.Get("X-Slotd-Node") != fmt.Sprint(leader.id) || h.Get("X-Slotd-Group") != "1" {
		t.Fatalf("answer through node %d names node %q group %q, want the leader %d, group 1", via.id, h.Get("X-Slotd-Node"), h.Get("X-Slotd-Group"), leader.id)
	}
	leader.kill()
	newLeader := c.leader(1)
	var retry map[string]any
	testtime.Eventually(t, waitFor, "the retry is answered", func() error {
		status, retry, _ = req(via)
		if status == 503 {
			return fmt.Errorf("503 %v", retry)
		}
		return nil
	})
	if status != 201 || retry["id"] != first["id"] {
		t.Fatalf("retry after the failover (leader now %d): %d %v, first answer %v", newLeader.id, status, retry, first)
	}
}

// The front holds requests to a Server's bounds and ignores routing
// headers a client sends: a body past the limit answers 413
// body_too_large as one slotd does, and a request claiming to be
// forwarded, for a group that does not exist, is routed as any other.
func TestFrontBoundsAndSpoofedHeaders(t *testing.T) {
	c := startCluster(t, slotdtest.Build(t), 3, 2)
	c.leader(1)
	c.leader(2)
	n := c.nodes[0]
	big := `{"office":"msk-mfc-tverskoy","service":"patent","applicant":"` + strings.Repeat("a", 100<<10) + `"}`
	status, out, err := n.call("POST", "/v1/bookings", big, "")
	if err != nil || status != 413 || out["code"] != "body_too_large" {
		t.Fatalf("a 100 KiB body: %d %v %v, want 413 body_too_large", status, out, err)
	}
	req, _ := http.NewRequest("GET", "http://"+n.addr+"/v1/offices/msk-mfc-tverskoy", nil)
	req.Header.Set("Authorization", "Bearer "+portalKey)
	req.Header.Set("X-Slotd-Forwarded", "1")
	req.Header.Set("X-Slotd-Group", "99")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("a request with forged routing headers answered %d, want 200 as without them", resp.StatusCode)
	}
	// What names no group is answered as one slotd answers it.
	for _, tc := range []struct {
		method, path, body string
		status             int
		code               string
	}{
		{"GET", "/v1/bookings/not-an-id?applicant=a", "", 404, "not_found"},
		{"GET", "/v1/bookings/_____________________w?applicant=a", "", 404, "not_found"},
		{"GET", "/v1/nowhere", "", 404, "not_found"},
		{"POST", "/v1/bookings", `{"service":"patent","applicant":"a"}`, 400, "validation_failed"},
	} {
		status, out, err := n.call(tc.method, tc.path, tc.body, "")
		if err != nil || status != tc.status || out["code"] != tc.code || strings.Contains(fmt.Sprint(out["detail"]), "replica groups") {
			t.Errorf("%s %s: %d %v %v, want %d %s as from one slotd", tc.method, tc.path, status, out, err, tc.status, tc.code)
		}
	}
}
