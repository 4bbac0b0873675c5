package wal

import (
	"errors"
	"strings"
	"testing"
	"time"

	"slotd/allocator"
	"slotd/internal/slotdtest/testtime"
)

// One booking's history must never stop the writes of the whole server:
// a change the journal would refuse for its own content is refused up
// front, for that request, by the engine's history limit.

// historyNow is 18 hours before historyStart: inside the window where an
// applicant's cancel becomes a request for the operator (between the
// late-cancel floor of 12h and the cutoff of 24h).
var (
	historyNow   = testtime.At(0, 15, 0)
	historyStart = testtime.At(1, 9, 0)
)

// startHistoryEngine runs the engine on a fresh DB with offices msk-1 and
// msk-2.
func startHistoryEngine(t *testing.T) (*allocator.Engine, *DB, string) {
	t.Helper()
	db, dir := openTest(t, Options{})
	e, err := allocator.New(allocator.Config{Journal: db})
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"msk-1", "msk-2"} {
		if _, err := e.PutOffice(historyNow, testOffice(id), allocator.Meta{Actor: "admin"}); err != nil {
			t.Fatal(err)
		}
	}
	return e, db, dir
}

// cycleLateCancels runs up to cycles rounds of an applicant's late cancel
// and the operator's reject on booking id, and returns the first refusal.
func cycleLateCancels(t *testing.T, e *allocator.Engine, id allocator.ID, cycles int, portal, operator allocator.Meta) (int, error) {
	t.Helper()
	for i := range cycles {
		b, err := e.Cancel(historyNow, id, "", portal)
		if err != nil {
			return i, err
		}
		if b.Status != allocator.StatusCancelRequested {
			t.Fatalf("cycle %d: cancel gave %s, want cancel_requested", i, b.Status)
		}
		if _, err := e.RejectCancel(historyNow, id, operator); err != nil {
			return i, err
		}
	}
	return cycles, nil
}

// checkStillWrites fails unless the engine still takes writes: a hold of
// another applicant at another office.
func checkStillWrites(t *testing.T, e *allocator.Engine, applicant string) {
	t.Helper()
	if e.Degraded() {
		t.Fatal("one booking's history degraded the whole engine")
	}
	req := allocator.HoldRequest{Office: "msk-2", Service: "patent", Applicant: applicant, Start: historyStart.Add(time.Hour)}
	if _, err := e.Hold(historyNow, req, allocator.Meta{Actor: "portal-a"}); err != nil {
		t.Fatalf("another applicant's hold after the refusal: %v", err)
	}
}

// TestDefectHistoryLimitLateCancelCyclesDegradeEngine: 511 rounds of late
// cancel and reject take a booking to 1,024 history entries, the most the
// on-disk format holds; the next cancel used to reach the journal, which
// refused it as too large, and the engine degraded for every office. It
// must be refused for that booking alone, before anything is claimed or
// committed.
func TestDefectHistoryLimitLateCancelCyclesDegradeEngine(t *testing.T) {
	e, _, _ := startHistoryEngine(t)
	b, err := e.Hold(historyNow, allocator.HoldRequest{Office: "msk-1", Service: "patent", Applicant: "cycler", Start: historyStart, Confirm: true}, allocator.Meta{Actor: "portal-a"})
	if err != nil {
		t.Fatal(err)
	}
	done, err := cycleLateCancels(t, e, b.ID, 512, allocator.Meta{Actor: "portal-a", Reason: "changed plans"}, allocator.Meta{Actor: "operator-a"})
	if err == nil {
		t.Fatalf("%d rounds of late cancel and reject all went through", done)
	}
	if !errors.Is(err, allocator.ErrHistoryLimit) {
		t.Fatalf("round %d refused with %v, want ErrHistoryLimit", done, err)
	}
	checkStillWrites(t, e, "bystander")
	got, err := e.Get(b.ID, "")
	if err != nil || got.Status != allocator.StatusConfirmed {
		t.Fatalf("the refused booking is %v (%v), want it confirmed as before the refusal", got.Status, err)
	}
	if n := got.History.Len(); n > allocator.HistoryEntriesMax {
		t.Fatalf("history of %d entries, beyond the limit of %d", n, allocator.HistoryEntriesMax)
	}
}

// TestDefectHistoryLimitAfterRestart: the booking refused at its limit is
// refused again after a restart, for itself alone; it used to degrade the
// engine again with the first cancel after recovery.
func TestDefectHistoryLimitAfterRestart(t *testing.T) {
	e, db, dir := startHistoryEngine(t)
	b, err := e.Hold(historyNow, allocator.HoldRequest{Office: "msk-1", Service: "patent", Applicant: "cycler", Start: historyStart, Confirm: true}, allocator.Meta{Actor: "portal-a"})
	if err != nil {
		t.Fatal(err)
	}
	// 511 rounds reach the 1,024 entries the on-disk format holds, unless
	// the engine's own limit refuses a round first.
	portal, operator := allocator.Meta{Actor: "portal-a", Reason: "changed plans"}, allocator.Meta{Actor: "operator-a"}
	if done, err := cycleLateCancels(t, e, b.ID, 511, portal, operator); err != nil && !errors.Is(err, allocator.ErrHistoryLimit) {
		t.Fatalf("round %d: %v, want ErrHistoryLimit", done, err)
	}
	checkStillWrites(t, e, "bystander-1")
	before, _ := e.Get(b.ID, "")

	db = reopen(t, db, dir)
	e2, err := allocator.New(allocator.Config{Journal: db})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Recover(db, e2, historyNow); err != nil {
		t.Fatal(err)
	}
	if err := e2.Tick(historyNow); err != nil {
		t.Fatal(err)
	}
	got, err := e2.Get(b.ID, "")
	if err != nil || got.History != before.History {
		t.Fatalf("recovered history differs (%v):\n%s\nwant\n%s", err, got.History, before.History)
	}
	if _, err := cycleLateCancels(t, e2, b.ID, 1, portal, operator); !errors.Is(err, allocator.ErrHistoryLimit) {
		t.Fatalf("cancel after the restart: %v, want ErrHistoryLimit", err)
	}
	checkStillWrites(t, e2, "bystander-2")
	// The booking itself can still end: the operator's ways out are not
	// repeatable and the limit kept room for them.
	if _, err := e2.ForceCancel(historyNow, b.ID, allocator.Meta{Actor: "operator-a", Reason: "stuck in late cancels"}); err != nil {
		t.Fatalf("force-cancel at the limit: %v", err)
	}
}

// TestHistoryLimitLongestEntriesCommitDurably fills a booking to exactly
// allocator.HistoryEntriesMax entries, each with an actor and a reason of
// the longest length the engine accepts, different actors taking turns so
// that no entry shares its predecessor's name, along the longest ending
// the limit keeps room for (reject, check in, complete). Every change is
// synced through the journal, and the booking is recovered as it was
// acknowledged: a record the engine lets through is never refused for its
// size.
func TestHistoryLimitLongestEntriesCommitDurably(t *testing.T) {
	e, db, dir := startHistoryEngine(t)
	reason := strings.Repeat("ж", allocator.ReasonBytesMax/2) // 2 bytes each
	portal := allocator.Meta{Actor: strings.Repeat("p", allocator.ActorBytesMax), Reason: reason}
	operator := allocator.Meta{Actor: strings.Repeat("o", allocator.ActorBytesMax), Reason: reason}
	b, err := e.Hold(historyNow, allocator.HoldRequest{Office: "msk-1", Service: "patent", Applicant: strings.Repeat("a", 128), Start: historyStart}, portal)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Confirm(historyNow, b.ID, "", operator); err != nil {
		t.Fatal(err)
	}
	done, err := cycleLateCancels(t, e, b.ID, allocator.HistoryEntriesMax, portal, operator)
	if !errors.Is(err, allocator.ErrHistoryLimit) {
		t.Fatalf("round %d: %v, want ErrHistoryLimit", done, err)
	}
	// The last round let in left room for the longest ending after its
	// request: its reject, a check-in and a completion.
	cur, _ := e.Get(b.ID, "")
	if n := cur.History.Len(); n != allocator.HistoryEntriesMax-2 {
		t.Fatalf("refused at %d entries, want %d (room for a check-in and a completion)", n, allocator.HistoryEntriesMax-2)
	}
	onTheDay := historyStart.Add(-30 * time.Minute)
	if _, err := e.CheckIn(onTheDay, b.ID, portal); err != nil {
		t.Fatalf("check-in at %d entries: %v", cur.History.Len(), err)
	}
	last, err := e.Complete(onTheDay, b.ID, operator)
	if err != nil {
		t.Fatalf("completion: %v", err)
	}
	if n := last.History.Len(); n != allocator.HistoryEntriesMax {
		t.Fatalf("history of %d entries, want exactly %d", n, allocator.HistoryEntriesMax)
	}
	for i, tr := range last.History.All() {
		if len(tr.Actor) != allocator.ActorBytesMax || len(tr.Reason) != allocator.ReasonBytesMax {
			t.Fatalf("entry %d has a %d-byte actor and a %d-byte reason, want the longest", i, len(tr.Actor), len(tr.Reason))
		}
	}
	if e.Degraded() {
		t.Fatal("degraded")
	}

	db = reopen(t, db, dir)
	r, ok, err := db.LoadBooking(b.ID, historyNow.UnixNano())
	if err != nil || !ok {
		t.Fatalf("load after reopen: %v %v", ok, err)
	}
	if r.Status != allocator.StatusCompleted || r.History != last.History {
		t.Fatalf("recovered %s with %d entries, want completed with the %d acknowledged", r.Status, r.History.Len(), last.History.Len())
	}
}
