package clustertest

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
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
	var reader *node
	for _, n := range c.nodes {
		if n != leader {
			reader = n
		}
	}
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
		n.start()
	}
	c.leader(1)
	for _, n := range c.nodes {
		checkBooked(t, n, "msk-mfc-tverskoy", acks)
	}
	c.converged(1)
	c.converged(2)
	t.Logf("%d acknowledged before the kill, all back", len(acks))
}
