package replica

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"slotd/allocator"
	"slotd/internal/slotdtest"
	"slotd/internal/slotdtest/testtime"
	"slotd/wal"
)

// acked is a booking whose Hold returned nil: acknowledged.
type acked struct {
	id         allocator.ID
	applicant  string
	office     string
	start      time.Time
	window     uint16
	confirmed  bool
	afterCrash bool
}

// load books confirmed seats at group's offices from callers goroutines,
// on whichever node runs the group's engine, until stop is closed; every
// booking acknowledged is recorded. Seats repeat across callers, so
// claims race.
type load struct {
	c      *testCluster
	group  uint64
	first  int // the group's offices: o<first>…o<first+count-1>
	count  int
	mu     sync.Mutex
	acks   []acked
	errs   atomic.Int64
	next   atomic.Int64
	stop   chan struct{}
	wg     sync.WaitGroup
	killed atomic.Bool
}

func (c *testCluster) startLoad(group uint64, first, count, callers int) *load {
	l := &load{c: c, group: group, first: first, count: count, stop: make(chan struct{})}
	for range callers {
		l.wg.Go(l.run)
	}
	return l
}

func (l *load) run() {
	var e *allocator.Engine
	for {
		select {
		case <-l.stop:
			return
		default:
		}
		if e == nil || e.Degraded() {
			e = l.engine()
			if e == nil {
				continue
			}
		}
		i := l.next.Add(1)
		k := i / 2 // two callers want each seat
		office := fmt.Sprintf("o%03d", l.first+int(k)%l.count)
		_, start := slotdtest.BenchSeat(k / int64(l.count) * slotdtest.BenchOffices)
		applicant := fmt.Sprintf("a%d", i)
		b, err := e.Hold(slotdtest.BenchNow, allocator.HoldRequest{Office: office, Service: "s", Applicant: applicant, Start: start, Confirm: true}, allocator.Meta{Actor: "test"})
		if err != nil {
			l.errs.Add(1)
			e = nil
			continue
		}
		l.mu.Lock()
		l.acks = append(l.acks, acked{id: b.ID, applicant: applicant, office: office, start: b.Start, window: b.Window, confirmed: b.Status == allocator.StatusConfirmed, afterCrash: l.killed.Load()})
		l.mu.Unlock()
	}
}

// engine returns the group's engine on a running, connected node, or nil
// after a moment if there is none now.
func (l *load) engine() *allocator.Engine {
	for _, n := range l.c.nodes {
		l.c.mu.Lock()
		cut := l.c.isolated[n.id]
		l.c.mu.Unlock()
		if n.up.Load() && !cut {
			if e := n.rep.Engine(l.group); e != nil && !e.Degraded() {
				return e
			}
		}
	}
	time.Sleep(2 * time.Millisecond)
	return nil
}

// countAfterCrash counts the bookings acknowledged after the fault.
func countAfterCrash(acks []acked) int {
	n := 0
	for _, a := range acks {
		if a.afterCrash {
			n++
		}
	}
	return n
}

func (l *load) end() []acked {
	close(l.stop)
	l.wg.Wait()
	return l.acks
}

// checkAcked asserts that every acknowledged booking is in e with the
// seat it was given (DESIGN invariant 2 across a cluster).
func checkAcked(t *testing.T, e *allocator.Engine, acks []acked) {
	t.Helper()
	for _, a := range acks {
		b, err := e.Get(a.id, a.applicant)
		if err != nil {
			t.Fatalf("acknowledged booking %s (%s at %s %s) is lost: %v", a.id, a.applicant, a.office, a.start, err)
		}
		if b.Office != a.office || !b.Start.Equal(a.start) || b.Window != a.window || b.Status != allocator.StatusConfirmed {
			t.Fatalf("acknowledged booking %s changed: %s %s window %d %s, acknowledged %s %s window %d", a.id, b.Office, b.Start, b.Window, b.Status, a.office, a.start, a.window)
		}
	}
}

// The replicas of a group that applied the same entries hold the same
// bytes (P1–P3, wal invariant W11), and every booking the leader's engine
// acknowledged is in each of them.
func TestReplicasAgree(t *testing.T) {
	c := newTestCluster(t, 3, 2)
	c.putOffices(1, 0, 2)
	c.putOffices(2, 2, 2)
	l1 := c.startLoad(1, 0, 2, 4)
	l2 := c.startLoad(2, 2, 2, 4)
	time.Sleep(300 * time.Millisecond)
	acks1, acks2 := l1.end(), l2.end()
	if len(acks1) == 0 || len(acks2) == 0 {
		t.Fatalf("no booking acknowledged: %d and %d", len(acks1), len(acks2))
	}
	for g, acks := range map[uint64][]acked{1: acks1, 2: acks2} {
		c.converged(g)
		for _, n := range c.nodes {
			checkAcked(t, restored(t, n.stores[g]), acks)
		}
	}
	t.Logf("acknowledged %d + %d bookings", len(acks1), len(acks2))
}

// Killing the leader of a group under load: the group gets a new leader
// and engine, which takes bookings again; nothing acknowledged is lost,
// no seat is owned twice (recovery refuses that), and the survivors'
// replicas agree.
func TestLeaderKilledNothingAcknowledgedLost(t *testing.T) {
	c := newTestCluster(t, 3, 2)
	c.putOffices(1, 0, 2)
	c.putOffices(2, 2, 2)
	l := c.startLoad(1, 0, 2, 8)
	other := c.startLoad(2, 2, 2, 2)
	time.Sleep(200 * time.Millisecond)
	leader, _ := c.leaderEngine(1)
	l.killed.Store(true)
	killedAt := time.Now()
	leader.stop()
	_, e := c.leaderEngine(1)
	t.Logf("group 1: node %d stopped; a new engine after %v", leader.id, time.Since(killedAt))
	l.mu.Lock()
	before := len(l.acks)
	l.mu.Unlock()
	time.Sleep(300 * time.Millisecond)
	acks := l.end()
	acks2 := other.end()
	after := countAfterCrash(acks)
	if after == 0 {
		t.Fatalf("no booking acknowledged after the leader stopped (%d before, %d errors)", before, l.errs.Load())
	}
	_ = e
	c.converged(1)
	c.converged(2)
	for _, n := range c.nodes {
		if n.up.Load() {
			checkAcked(t, restored(t, n.stores[1]), acks)
			checkAcked(t, restored(t, n.stores[2]), acks2)
		}
	}
	// The stopped node comes back, catches up and agrees.
	leader.start(nil)
	c.converged(1)
	checkAcked(t, restored(t, leader.stores[1]), acks)
	t.Logf("%d acknowledged (%d after the stop), %d errors", len(acks), after, l.errs.Load())
}

// Every node stops and starts again: everything acknowledged is back and
// the groups take bookings again (P5).
func TestRestartAllKeepsAcknowledged(t *testing.T) {
	c := newTestCluster(t, 3, 1)
	c.putOffices(1, 0, 2)
	l := c.startLoad(1, 0, 2, 4)
	time.Sleep(300 * time.Millisecond)
	acks := l.end()
	for _, n := range c.nodes {
		n.stop()
	}
	for _, n := range c.nodes {
		n.start(nil)
	}
	_, e := c.leaderEngine(1)
	checkAcked(t, e, acks)
	l2 := c.startLoad(1, 0, 2, 2)
	time.Sleep(100 * time.Millisecond)
	if more := l2.end(); len(more) == 0 {
		t.Fatal("no booking acknowledged after the restart")
	}
	c.converged(1)
}

// An engine's change proposed after its engine was replaced is refused
// (P1, P2, P4), so the new engine, built without it, cannot give its seat
// to another. The proposal is made to land after the new epoch began:
// testDetached proposes it even though the old leadership ended, as a
// proposal queued just before the end does. With the epochs taken out
// (testNoEpochs) the same steps leave two active bookings on one seat,
// which recovery refuses: the check fails without P1.
func TestStaleEngineChangeRefused(t *testing.T) {
	for _, v := range []struct {
		name              string
		detached, noEpoch bool
		wantDouble        bool
	}{
		{name: "as built"},
		{name: "proposal after the end", detached: true},
		{name: "broken: no epochs", detached: true, noEpoch: true, wantDouble: true},
	} {
		t.Run(v.name, func(t *testing.T) {
			c := &testCluster{t: t, isolated: map[uint64]bool{}}
			blocked := make(chan *journal, 1)
			release := make(chan struct{})
			c.broken = func(r *Replica) {
				r.testDetached, r.testNoEpochs = v.detached, v.noEpoch
				r.testBeforePropose = func(j *journal, ch *allocator.Change) {
					if len(ch.Bookings) == 1 && ch.Bookings[0].Applicant == "alice" {
						blocked <- j
						<-release
					}
				}
			}
			c = startCluster(c, 1, 1)
			_, e1 := c.leaderEngine(1)
			office := slotdtest.BenchOffice(0)
			office.Windows = 1
			if _, err := e1.PutOffice(slotdtest.BenchNow, office, allocator.Meta{Actor: "test"}); err != nil {
				t.Fatal(err)
			}
			_, start := slotdtest.BenchSeat(0)
			hold := func(e *allocator.Engine, who string) error {
				_, err := e.Hold(slotdtest.BenchNow, allocator.HoldRequest{Office: office.ID, Service: "s", Applicant: who, Start: start, Confirm: true}, allocator.Meta{Actor: "test"})
				return err
			}
			aliceErr := make(chan error, 1)
			go func() { aliceErr <- hold(e1, "alice") }()
			j := <-blocked
			j.l.broken.Store(true) // the engine must be replaced (P4)
			var e2 *allocator.Engine
			testtimeEventually(t, "a new engine", func() bool {
				_, e2 = c.leaderEngine(1)
				return e2 != e1
			})
			close(release)
			err := <-aliceErr
			t.Logf("alice's hold through the replaced engine: %v", err)
			if err := hold(e2, "bob"); err != nil && !v.wantDouble {
				t.Logf("bob's hold: %v", err)
			}
			c.converged(1)
			e, rerr := allocator.New(allocator.Config{Journal: &allocator.MemJournal{}})
			if rerr != nil {
				t.Fatal(rerr)
			}
			_, rerr = wal.Recover(c.node(1).stores[1], e, slotdtest.BenchNow)
			switch {
			case v.wantDouble && rerr == nil:
				t.Fatal("the broken variant left a consistent store: the test cannot tell")
			case !v.wantDouble && rerr != nil:
				t.Fatalf("two bookings own one seat: %v", rerr)
			}
		})
	}
}

// A leader cut off from its peers acknowledges nothing: its engine's
// commits wait for a quorum that never answers, and fail once it steps
// down (CheckQuorum) and its engine is dropped (P3, P4). The others
// elect a leader that takes bookings meanwhile, and no booking the old
// one was asked for during the cut is in any store.
func TestIsolatedLeaderAcknowledgesNothing(t *testing.T) {
	c := newTestCluster(t, 3, 1)
	c.putOffices(1, 0, 1)
	old, e := c.leaderEngine(1)
	c.isolate(old.id, true)
	_, start := slotdtest.BenchSeat(0)
	type result struct {
		b   allocator.Booking
		err error
	}
	results := make(chan result, 8)
	for i := range 8 {
		go func() {
			b, err := e.Hold(slotdtest.BenchNow, allocator.HoldRequest{Office: "o000", Service: "s", Applicant: fmt.Sprintf("cut-%d", i), Start: start, Confirm: true}, allocator.Meta{Actor: "test"})
			results <- result{b, err}
		}()
	}
	// The majority side elects and books meanwhile.
	_, e2 := c.leaderEngine(1)
	if e2 == e {
		t.Fatal("the isolated node's engine is still the group's")
	}
	if _, err := e2.Hold(slotdtest.BenchNow, allocator.HoldRequest{Office: "o000", Service: "s", Applicant: "majority", Start: start, Confirm: true}, allocator.Meta{Actor: "test"}); err != nil {
		t.Fatalf("the majority's leader refused a booking: %v", err)
	}
	for range 8 {
		if r := <-results; r.err == nil {
			t.Fatalf("the isolated leader acknowledged booking %s", r.b.ID)
		}
	}
	c.isolate(old.id, false)
	c.converged(1)
	for _, n := range c.nodes {
		e := restored(t, n.stores[1])
		for i := range 8 {
			if got, _ := e.List(fmt.Sprintf("cut-%d", i), allocator.ListFilter{}, 0, 10); len(got) != 0 {
				t.Fatalf("node %d holds a booking the isolated leader refused: %+v", n.id, got[0].BookingRecord)
			}
		}
	}
}

// The leader's disk fills up under load: its Raft loop stops at the first
// failed log write (cluster invariant N3), it drops its engine, the other
// two elect a leader and take bookings, and nothing acknowledged is lost.
// Then a second node's disk fills: without a quorum, no booking is
// acknowledged at all.
func TestDiskFailureQuorum(t *testing.T) {
	c := newTestCluster(t, 3, 1)
	c.putOffices(1, 0, 2)
	l := c.startLoad(1, 0, 2, 6)
	time.Sleep(200 * time.Millisecond)
	leader, _ := c.leaderEngine(1)
	l.killed.Store(true)
	leader.diskFull.Store(true)
	testtimeEventually(t, "the full node's loop stops", func() bool { return leader.node.Err() != nil })
	t.Logf("node %d stopped: %v", leader.id, leader.node.Err())
	// The replica's watch sees the stopped loop at its next poll.
	testtimeEventually(t, "the node whose disk failed drops the group's engine", func() bool { return leader.rep.Engine(1) == nil })
	n, e := c.leaderEngine(1)
	if n == leader {
		t.Fatal("the node whose disk failed runs the group's engine again")
	}
	time.Sleep(200 * time.Millisecond)
	acks := l.end()
	after := countAfterCrash(acks)
	if after == 0 {
		t.Fatal("no booking acknowledged after the leader's disk failed")
	}
	var healthy []*testNode
	for _, n := range c.nodes {
		if n != leader {
			healthy = append(healthy, n)
		}
	}
	c.mu.Lock()
	c.isolated[leader.id] = true // its replica stays where its disk left it
	c.mu.Unlock()
	for _, n := range healthy {
		testtime.Eventually(t, waitFor, "the survivors agree", func() error {
			d0, a0, _ := healthy[0].stores[1].StateDigest()
			d1, a1, _ := healthy[1].stores[1].StateDigest()
			if a0 != a1 || d0 != d1 {
				return fmt.Errorf("at %d and %d", a0, a1)
			}
			return nil
		})
		checkAcked(t, restored(t, n.stores[1]), acks)
	}

	// A second disk fails: one node of three is left, no quorum. Holds
	// sent now make the nodes write, so the full one finds out; none of
	// them may be acknowledged.
	healthy[0].diskFull.Store(true)
	last := healthy[1]
	_ = e
	results := make(chan error, 4)
	for i := range 4 {
		go func() {
			var err error = ErrNoEngine
			for _, n := range healthy {
				if e := n.rep.Engine(1); e != nil {
					_, start := slotdtest.BenchSeat(int64(100000 + i*64))
					_, err = e.Hold(slotdtest.BenchNow, allocator.HoldRequest{Office: "o000", Service: "s", Applicant: fmt.Sprintf("noquorum-%d", i), Start: start, Confirm: true}, allocator.Meta{Actor: "test"})
					break
				}
			}
			results <- err
		}()
	}
	testtimeEventually(t, "the second full node's loop stops", func() bool { return healthy[0].node.Err() != nil })
	for range 4 {
		if err := <-results; err == nil {
			t.Fatal("a booking was acknowledged without a quorum")
		}
	}
	checkAcked(t, restored(t, last.stores[1]), acks)
}

// Closing a busy day is one change of every booking the closure cancels,
// with an event each: in a cluster it is one proposal, which must fit. A
// day of 3,000 confirmed bookings at one office closes, on every replica.
//
// The nodes tick at slotd's own 100 ms: the entry is megabytes, and at
// the other tests' 10 ms a loaded machine may take longer than an
// election timeout to write and send it. Should the leadership change
// anyway, the closure is asked of the new leader; either way every
// replica must end with all 3,000 cancelled.
func TestBusyDayClosureCommits(t *testing.T) {
	c := startCluster(&testCluster{t: t, isolated: map[uint64]bool{}, tick: 100 * time.Millisecond}, 3, 1)
	c.putOffices(1, 0, 1)
	_, e := c.leaderEngine(1)
	const bookings = 3000
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for i := next.Add(1) - 1; i < bookings; i = next.Add(1) - 1 {
				// Seat i of the bench office's first day: window i%64, step i/64.
				_, start := slotdtest.BenchSeat(i * slotdtest.BenchOffices)
				if err := holdOnLeader(c, allocator.HoldRequest{Office: "o000", Service: "s", Applicant: fmt.Sprintf("busy-%d", i), Start: start, Confirm: true}); err != nil {
					t.Errorf("hold %d: %v", i, err)
					return
				}
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	b, _ := e.List("busy-0", allocator.ListFilter{}, 0, 1)
	date := b[0].Date
	for attempt := 0; ; attempt++ {
		_, e = c.leaderEngine(1)
		cancelled, err := e.CloseDate(slotdtest.BenchNow, "o000", date, allocator.Meta{Actor: "test", Reason: "flood"})
		if err == nil {
			if attempt == 0 && len(cancelled) != bookings {
				t.Fatalf("the closure cancelled %d bookings, want %d", len(cancelled), bookings)
			}
			break
		}
		if attempt == 3 {
			t.Fatalf("closing a day of %d bookings: %v", bookings, err)
		}
		t.Logf("closing a day of %d bookings: %v; asking the leader again", bookings, err)
	}
	c.converged(1)
	for _, n := range c.nodes {
		r := restored(t, n.stores[1])
		for i := range bookings {
			got, _ := r.List(fmt.Sprintf("busy-%d", i), allocator.ListFilter{}, 0, 1)
			if len(got) != 1 || got[0].Status != allocator.StatusCancelled {
				t.Fatalf("node %d: busy-%d after the closure: %+v", n.id, i, got)
			}
		}
	}
}

// holdOnLeader holds on e, or on the group's next leader once e has lost
// its leadership; a hold whose answer was lost with the leadership is
// found by its applicant instead of being held twice.
func holdOnLeader(c *testCluster, req allocator.HoldRequest) error {
	var err error
	for range 4 {
		_, e := c.leaderEngine(1)
		if got, _ := e.List(req.Applicant, allocator.ListFilter{}, 0, 1); len(got) == 1 {
			return nil
		}
		if _, err = e.Hold(slotdtest.BenchNow, req, allocator.Meta{Actor: "test"}); err == nil {
			return nil
		}
	}
	return err
}
