package replica

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"slotd/allocator"
	"slotd/internal/slotdtest"
	"slotd/internal/slotdtest/testtime"
	"slotd/wal"
)

// ledgerLimit is the ledger tests' max_active_per_applicant.
const ledgerLimit = 2

// ledgerOffice is bench office i with four services and a limit of
// ledgerLimit active bookings per applicant.
func ledgerOffice(i int) allocator.OfficeConfig {
	cfg := slotdtest.BenchOffice(i)
	cfg.Services = nil
	for s := 1; s <= 4; s++ {
		cfg.Services = append(cfg.Services, allocator.ServiceConfig{ID: fmt.Sprintf("s%d", s), Name: "S", Slots: 1})
	}
	cfg.Policy.MaxActivePerApplicant = ledgerLimit
	return cfg
}

// engineOf returns group's engine on a running, connected node, nil if
// none has one now.
func (c *testCluster) engineOf(group uint64) *allocator.Engine {
	for _, n := range c.nodes {
		c.mu.Lock()
		cut := c.isolated[n.id]
		c.mu.Unlock()
		if r := n.live.Load(); r != nil && !cut {
			if e := r.Engine(group); e != nil && !e.Degraded() {
				return e
			}
		}
	}
	return nil
}

// activeOf returns the active bookings of applicant in every group, read
// from node n's stores.
func activeOf(t *testing.T, n *testNode, groups []uint64, applicant string) []allocator.Booking {
	t.Helper()
	var out []allocator.Booking
	for _, g := range groups {
		all, _ := restored(t, n.stores[g]).List(applicant, allocator.ListFilter{}, 0, 1000)
		for _, b := range all {
			if b.Status.Active() {
				out = append(out, b)
			}
		}
	}
	return out
}

// hammer books for one applicant at offices o000 (group 1) and o001
// (group 2) from several callers, cancelling now and then, until stop.
type hammer struct {
	c         *testCluster
	applicant string
	ops       atomic.Int64
	held      atomic.Int64
	others    atomic.Int64 // refusals but the rules'
	// fill, once set, stops the cancels: the callers then only hold,
	// filling each group up to what its rules let through.
	fill atomic.Bool
	stop chan struct{}
	wg   sync.WaitGroup
}

func (h *hammer) run(seed uint64) {
	rnd := rand.New(rand.NewPCG(seed, 1))
	meta := allocator.Meta{Actor: "test"}
	for {
		select {
		case <-h.stop:
			return
		default:
		}
		n := h.ops.Add(1)
		if n%2 == 0 {
			runtime.Gosched() // refusals are fast: let the others in
		}
		if !h.fill.Load() && rnd.IntN(5) == 0 {
			h.cancelOne(rnd, meta)
			continue
		}
		group := uint64(1 + n%2)
		e := h.c.engineOf(group)
		if e == nil {
			time.Sleep(time.Millisecond)
			continue
		}
		req := allocator.HoldRequest{
			Office: fmt.Sprintf("o%03d", group-1), Service: fmt.Sprintf("s%d", 1+rnd.IntN(4)), Applicant: h.applicant,
			EarliestAfter: slotdtest.BenchNow.Add(24 * time.Hour), // holds: cancelling them is no penalty
		}
		if _, err := e.Hold(slotdtest.BenchNow, req, meta); err != nil {
			if !errors.Is(err, allocator.ErrLimitReached) && !errors.Is(err, allocator.ErrDuplicateBooking) {
				h.others.Add(1)
			}
			continue
		}
		h.held.Add(1)
	}
}

// cancelOne cancels one of the applicant's active bookings in a group
// picked at random, as its engine lists them: a hold refused for want of
// a leader may still have committed, and such a booking is cancelled too,
// or it would keep the applicant at the limit for good.
func (h *hammer) cancelOne(rnd *rand.Rand, meta allocator.Meta) {
	e := h.c.engineOf(uint64(1 + rnd.IntN(2)))
	if e == nil {
		return
	}
	all, _ := e.List(h.applicant, allocator.ListFilter{}, 0, 1<<20)
	all = slices.DeleteFunc(all, func(b allocator.Booking) bool { return !b.Status.Active() })
	if len(all) > 0 {
		_, _ = e.Cancel(slotdtest.BenchNow, all[rnd.IntN(len(all))].ID, h.applicant, meta)
	}
}

// runLedgerHammer runs the hammer on a three-node cluster of two groups,
// killing group 1's leader once a third of holds are acknowledged, and returns
// what the survivors hold for the applicant when all is settled, and a
// survivor.
func runLedgerHammer(t *testing.T, broken func(r *Replica), holds int64) ([]allocator.Booking, *testNode, *testCluster, string) {
	// Tokens the kill leaves behind are settled a second after; a slow
	// hold may be voided by then, which breaks its engine (L4) but keeps
	// the rules.
	c := &testCluster{t: t, isolated: map[uint64]bool{}, broken: broken, reconcileAfter: time.Second}
	startCluster(c, 3, 2)
	for g := uint64(1); g <= 2; g++ {
		_, e := c.leaderEngine(g)
		if _, err := e.PutOffice(slotdtest.BenchNow, ledgerOffice(int(g-1)), allocator.Meta{Actor: "test"}); err != nil {
			t.Fatal(err)
		}
	}
	h := &hammer{c: c, applicant: "ns\x00hammer", stop: make(chan struct{})}
	for i := range 6 {
		h.wg.Go(func() { h.run(uint64(i)) })
	}
	testtimeEventually(t, "a third of the holds acknowledged", func() bool { return h.held.Load() >= holds/3 })
	killed, _ := c.leaderEngine(1)
	killed.stop()
	t.Logf("group 1's leader, node %d, stopped after %d holds", killed.id, h.held.Load())
	testtimeEventually(t, "all holds acknowledged", func() bool { return h.held.Load() >= holds })
	// The end state is then made full: without cancels, a few thousand
	// more holds at both groups fill each up to its rules, so a rule the
	// groups do not keep together shows in the end state, however the
	// random cancels left it.
	h.fill.Store(true)
	filled := h.ops.Load() + 3000
	testtimeEventually(t, "3000 holds more without cancels", func() bool { return h.ops.Load() >= filled })
	close(h.stop)
	h.wg.Wait()
	c.converged(1)
	c.converged(2)
	var survivor *testNode
	for _, n := range c.nodes {
		if n.up.Load() {
			survivor = n
		}
	}
	active := activeOf(t, survivor, c.groups, h.applicant)
	t.Logf("%d operations, %d holds acknowledged, %d other refusals, %d active at the end", h.ops.Load(), h.held.Load(), h.others.Load(), len(active))
	return active, survivor, c, h.applicant
}

// ruleBroken returns what in active breaks the applicant rules: more
// than ledgerLimit bookings, or a service twice.
func ruleBroken(active []allocator.Booking) string {
	if len(active) > ledgerLimit {
		return fmt.Sprintf("%d active bookings, the limit is %d", len(active), ledgerLimit)
	}
	var services []string
	for _, b := range active {
		if slices.Contains(services, b.Service) {
			return "two active bookings of service " + b.Service
		}
		services = append(services, b.Service)
	}
	return ""
}

// An applicant hammering holds at offices of two groups, with one
// group's leader killed midway, never holds more than the limit nor a
// service twice, counting both groups (L1–L3); every active booking has
// its token in the applicant's home group.
func TestApplicantLimitAcrossGroups(t *testing.T) {
	active, survivor, c, applicant := runLedgerHammer(t, nil, 150)
	if why := ruleBroken(active); why != "" {
		t.Fatalf("applicant rules broken across groups: %s: %+v", why, active)
	}
	home := survivor.rep.HomeGroup(applicant)
	tokens, err := survivor.stores[home].LedgerTokens(applicant)
	if err != nil {
		t.Fatal(err)
	}
	if len(tokens) > ledgerLimit {
		t.Fatalf("%d tokens in the ledger, the limit is %d", len(tokens), ledgerLimit)
	}
	for _, b := range active {
		if !slices.ContainsFunc(tokens, func(tk wal.LedgerToken) bool { return tk.Booking == b.ID && tk.Service == b.Service }) {
			t.Fatalf("active booking %s (%s) has no token in group %d's ledger (L3): %+v", b.ID, b.Service, home, tokens)
		}
	}
	_ = c
}

// Without the ledger the same hammer must break the rules, or the test
// could not tell.
func TestApplicantLimitAcrossGroupsCaughtWithoutLedger(t *testing.T) {
	active, _, _, _ := runLedgerHammer(t, func(r *Replica) { r.testNoLedger = true }, 150)
	if why := ruleBroken(active); why == "" {
		t.Fatalf("the broken variant kept the rules (%d active): the test cannot tell", len(active))
	} else {
		t.Logf("caught: %s", why)
	}
}

// A node that dies between a reservation and its claim leaves tokens of
// bookings that never come: the applicant is refused at the limit until
// the home group's leader voids those bookings in their group and
// releases the tokens (L5, L6); then the applicant books again.
func TestLedgerReconcilesLostReservations(t *testing.T) {
	c := &testCluster{t: t, isolated: map[uint64]bool{}, reconcileAfter: 300 * time.Millisecond}
	startCluster(c, 3, 2)
	for g := uint64(1); g <= 2; g++ {
		_, e := c.leaderEngine(g)
		if _, err := e.PutOffice(slotdtest.BenchNow, ledgerOffice(int(g-1)), allocator.Meta{Actor: "test"}); err != nil {
			t.Fatal(err)
		}
	}
	const applicant = "ns\x00lost"
	n, _ := c.leaderEngine(1)
	var lost []allocator.ID
	for i := range ledgerLimit {
		id := allocator.ID{2, byte(i + 1), 0xee} // of group 2, never booked
		tk := wal.LedgerToken{Applicant: applicant, Booking: id, Service: fmt.Sprintf("s%d", i+1), CreatedUnixNano: slotdtest.BenchNow.UnixNano()}
		if answer, err := n.rep.ledgerCall(n.rep.HomeGroup(applicant), reserveEntry(tk, ledgerLimit), waitFor); err != nil || answer != LedgerOK {
			t.Fatalf("reserve %d: answer %d, %v", i, answer, err)
		}
		lost = append(lost, id)
	}
	req := allocator.HoldRequest{Office: "o000", Service: "s3", Applicant: applicant, EarliestAfter: slotdtest.BenchNow.Add(24 * time.Hour)}
	if _, err := c.engineOf(1).Hold(slotdtest.BenchNow, req, allocator.Meta{Actor: "test"}); !errors.Is(err, allocator.ErrLimitReached) {
		t.Fatalf("hold with the lost tokens in the ledger: %v, want the limit", err)
	}
	testtime.Eventually(t, waitFor, "the applicant books again", func() error {
		e := c.engineOf(1)
		if e == nil {
			return errors.New("no engine")
		}
		_, err := e.Hold(slotdtest.BenchNow, req, allocator.Meta{Actor: "test"})
		return err
	})
	c.converged(2)
	for _, m := range c.nodes {
		for _, id := range lost {
			if v, err := m.stores[2].Voided(id); err != nil || !v {
				t.Fatalf("node %d: booking %s is not void in group 2 (%v)", m.id, id, err)
			}
		}
	}
}

// A void keeps its booking from ever being written: a change that
// creates a voided booking is applied as nothing on every replica, and
// its engine is replaced (L4); the same change for an id not void is
// written.
func TestLedgerVoidRefusesLateCommit(t *testing.T) {
	c := newTestCluster(t, 3, 2)
	n, e := c.leaderEngine(1)
	if _, err := e.PutOffice(slotdtest.BenchNow, ledgerOffice(0), allocator.Meta{Actor: "test"}); err != nil {
		t.Fatal(err)
	}
	b, err := e.Hold(slotdtest.BenchNow, allocator.HoldRequest{Office: "o000", Service: "s1", Applicant: "ns\x00late", EarliestAfter: slotdtest.BenchNow.Add(24 * time.Hour)}, allocator.Meta{Actor: "test"})
	if err != nil {
		t.Fatal(err)
	}
	late := func(id allocator.ID, window uint16) *allocator.Change {
		r := b.BookingRecord
		r.ID, r.Window = id, window
		return &allocator.Change{Bookings: []*allocator.BookingRecord{&r}}
	}
	kept, voided := allocator.ID{1, 0xaa}, allocator.ID{1, 0xbb}
	created := b.History.First().AtUnixNano
	if answer, err := n.rep.ledgerCall(1, voidEntry(voided, created), waitFor); err != nil || answer != LedgerOK {
		t.Fatalf("void: answer %d, %v", answer, err)
	}
	if answer, err := n.rep.ledgerCall(1, voidEntry(b.ID, created), waitFor); err != nil || answer != LedgerExists {
		t.Fatalf("void of a booking that exists: answer %d, %v; want LedgerExists", answer, err)
	}
	if err := n.rep.Commit(1, late(kept, b.Window+1)); err != nil {
		t.Fatalf("a change of a booking not void: %v", err)
	}
	if err := n.rep.Commit(1, late(voided, b.Window+2)); !errors.Is(err, ErrRefused) {
		t.Fatalf("a change creating a voided booking: %v, want ErrRefused", err)
	}
	c.converged(1)
	for _, m := range c.nodes {
		if _, found, err := m.stores[1].LoadBooking(voided, created); err != nil || found {
			t.Fatalf("node %d: the voided booking was written (%v)", m.id, err)
		}
		if _, found, err := m.stores[1].LoadBooking(kept, created); err != nil || !found {
			t.Fatalf("node %d: the booking not void is missing (%v)", m.id, err)
		}
	}
	c.leaderEngine(1) // a new engine serves the group
}

// The rules count both groups at once, and each end of a booking gives
// its place back at once (G3), without waiting for the reconciler: a
// cancel in one group and a closure in the other let the applicant book
// again right away; a service held in one group is refused in the other.
func TestLedgerEndsReleaseAtOnce(t *testing.T) {
	c := &testCluster{t: t, isolated: map[uint64]bool{}, reconcileAfter: time.Hour}
	startCluster(c, 3, 2)
	for g := uint64(1); g <= 2; g++ {
		_, e := c.leaderEngine(g)
		if _, err := e.PutOffice(slotdtest.BenchNow, ledgerOffice(int(g-1)), allocator.Meta{Actor: "test"}); err != nil {
			t.Fatal(err)
		}
	}
	const applicant = "ns\x00ends"
	meta := allocator.Meta{Actor: "test"}
	hold := func(group uint64, service string) (allocator.Booking, error) {
		_, e := c.leaderEngine(group)
		return e.Hold(slotdtest.BenchNow, allocator.HoldRequest{Office: fmt.Sprintf("o%03d", group-1), Service: service, Applicant: applicant,
			EarliestAfter: slotdtest.BenchNow.Add(24 * time.Hour)}, meta)
	}
	a, err := hold(1, "s1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := hold(2, "s2"); err != nil {
		t.Fatal(err)
	}
	if _, err := hold(1, "s3"); !errors.Is(err, allocator.ErrLimitReached) {
		t.Fatalf("a third booking, the second in group 1: %v, want the limit", err)
	}
	_, e1 := c.leaderEngine(1)
	if _, err := e1.Cancel(slotdtest.BenchNow, a.ID, applicant, meta); err != nil {
		t.Fatal(err)
	}
	if _, err := hold(2, "s2"); !errors.Is(err, allocator.ErrDuplicateBooking) {
		t.Fatalf("s2 again in group 2: %v, want a duplicate", err)
	}
	b3, err := hold(1, "s3")
	if err != nil {
		t.Fatalf("a booking after a cancel gave its place back: %v", err)
	}
	if _, err := hold(2, "s3"); !errors.Is(err, allocator.ErrDuplicateBooking) && !errors.Is(err, allocator.ErrLimitReached) {
		t.Fatalf("s3, held in group 1, in group 2: %v, want a refusal", err)
	}
	_, e1 = c.leaderEngine(1)
	if _, err := e1.CloseDate(slotdtest.BenchNow, "o000", b3.Date, meta); err != nil {
		t.Fatal(err)
	}
	if _, err := hold(2, "s3"); err != nil {
		t.Fatalf("a booking after a closure gave its place back: %v", err)
	}
}

// A watch's auto hold is a new booking like a hold: an applicant at the
// limit in another group gets no seat from it (the watch stays), and
// once the applicant has room the next seat freed is theirs (G1).
func TestLedgerWatchAutoHold(t *testing.T) {
	// The test holds on to each group's engine throughout, so it ticks
	// at slotd's own 100 ms: at the other tests' 10 ms a loaded machine
	// can miss an election timeout, and a leadership lost breaks the
	// engine the test holds.
	c := &testCluster{t: t, isolated: map[uint64]bool{}, reconcileAfter: time.Hour, tick: 100 * time.Millisecond}
	startCluster(c, 3, 2)
	for g := uint64(1); g <= 2; g++ {
		_, e := c.leaderEngine(g)
		if _, err := e.PutOffice(slotdtest.BenchNow, ledgerOffice(int(g-1)), allocator.Meta{Actor: "test"}); err != nil {
			t.Fatal(err)
		}
	}
	const applicant, other = "ns\x00watcher", "ns\x00other"
	meta := allocator.Meta{Actor: "test"}
	after := slotdtest.BenchNow.Add(24 * time.Hour)
	_, e2 := c.leaderEngine(2)
	var mine []allocator.Booking
	for _, s := range []string{"s1", "s2"} {
		b, err := e2.Hold(slotdtest.BenchNow, allocator.HoldRequest{Office: "o001", Service: s, Applicant: applicant, EarliestAfter: after}, meta)
		if err != nil {
			t.Fatal(err)
		}
		mine = append(mine, b)
	}
	_, e1 := c.leaderEngine(1)
	// freeOne books a seat for other at o000 and cancels it: the freed
	// seat is offered to the watch.
	freeOne := func() allocator.Booking {
		t.Helper()
		b, err := e1.Hold(slotdtest.BenchNow, allocator.HoldRequest{Office: "o000", Service: "s3", Applicant: other, EarliestAfter: after}, meta)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e1.Cancel(slotdtest.BenchNow, b.ID, other, meta); err != nil {
			t.Fatal(err)
		}
		return b
	}
	date := allocator.DateOf(after.In(time.FixedZone("MSK", 3*3600)))
	w, err := e1.Watch(slotdtest.BenchNow, allocator.WatchRequest{Applicant: applicant, Service: "s3", Office: "o000", From: date - 1, To: date + 2, AutoHold: true}, meta)
	if err != nil {
		t.Fatal(err)
	}
	freeOne()
	if got, err := e1.GetWatch(w.ID, applicant); err != nil || !got.Active {
		t.Fatalf("the watch of an applicant at the limit was served: %+v, %v", got, err)
	}
	if list, _ := e1.List(applicant, allocator.ListFilter{}, 0, 10); len(list) != 0 {
		t.Fatalf("an applicant at the limit in group 2 got a seat in group 1: %+v", list)
	}
	if _, err := e2.Cancel(slotdtest.BenchNow, mine[0].ID, applicant, meta); err != nil {
		t.Fatal(err)
	}
	freeOne()
	list, _ := e1.List(applicant, allocator.ListFilter{}, 0, 10)
	if len(list) != 1 || !list[0].Status.Active() {
		t.Fatalf("with room again, the watch's applicant has %+v in group 1, want one active booking", list)
	}
}
