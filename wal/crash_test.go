package wal_test

// The crash test (DESIGN invariants 2 and 4): the engine runs on a real
// Pebble directory in a child process under concurrent load and is killed
// with SIGKILL at a random moment; the parent then recovers the directory
// and checks that every acknowledged change is there in its last
// acknowledged status (or the status of the one operation that was in
// flight on that booking), that nothing was half-applied (each booking's
// last status has its event in the feed), that no seat is owned twice and
// counters equal bitmap popcounts (Engine.Verify), and that event cursors
// only grow.
//
// A SIGKILL keeps what the process had handed to the kernel, so this test
// proves atomic batches and complete recovery, not the fsync itself; the
// fsync is proven by the crash-cloned in-memory file system tests, which
// keep only synced data.
//
// The child prints one line per operation to stdout, written with a single
// write: "try <worker> <op>" before it and "ack <worker> <id> <status>"
// after it returned success, so the parent knows exactly what was
// acknowledged when the kill landed.

import (
	"bufio"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"slotd/allocator"
	"slotd/internal/slotdtest/testtime"
	"slotd/wal"
)

var crashRounds = flag.Int("crash.rounds", 20, "kill-and-restart rounds in TestCrashRecovery (make stress raises it)")

const crashChildEnv = "SLOTD_CRASH_CHILD_DIR"

// crashNow is the child's fixed clock: deterministic policy decisions.
var crashNow = testtime.T0

func crashOffice() allocator.OfficeConfig {
	wk := []string{"09:00-13:00", "14:00-18:00"}
	p := allocator.DefaultPolicy()
	p.MaxActivePerApplicant = 100
	return allocator.OfficeConfig{
		ID: "crash", Name: "Crash office", Region: "r", City: "c", Address: "a", Timezone: "Europe/Moscow",
		SlotMinutes: 15, Windows: 4,
		Hours:    map[string][]string{"mon": wk, "tue": wk, "wed": wk, "thu": wk, "fri": wk},
		Services: []allocator.ServiceConfig{{ID: "s", Name: "S", Slots: 1, Reschedulable: true}},
		Policy:   p,
	}
}

// TestCrashChild is the child process; it does nothing in a normal run.
func TestCrashChild(t *testing.T) {
	dir := os.Getenv(crashChildEnv)
	if dir == "" {
		t.Skip("runs only as the child of TestCrashRecovery")
	}
	db, err := wal.Open(dir, wal.Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, "open:", err)
		os.Exit(3)
	}
	e, err := allocator.New(allocator.Config{Journal: db})
	if err != nil {
		os.Exit(3)
	}
	if _, err := wal.Recover(db, e, crashNow); err != nil {
		fmt.Fprintln(os.Stderr, "recover:", err)
		os.Exit(4)
	}
	if _, err := e.Office("crash"); err != nil {
		if _, err := e.PutOffice(crashNow, crashOffice(), allocator.Meta{Actor: "admin"}); err != nil {
			os.Exit(5)
		}
	}
	var outMu sync.Mutex
	say := func(format string, args ...any) {
		line := fmt.Sprintf(format, args...) + "\n"
		outMu.Lock()
		os.Stdout.WriteString(line) // one write: out of the process before the next step
		outMu.Unlock()
	}
	say("ready")
	seed, _ := strconv.ParseUint(os.Getenv("SLOTD_CRASH_SEED"), 10, 64)
	var wg sync.WaitGroup
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, uint64(w)))
			var mine []allocator.ID
			for n := 0; ; n++ {
				if len(mine) == 0 || rng.IntN(3) == 0 {
					start := crashNow.AddDate(0, 0, 1+rng.IntN(25)).Truncate(24 * time.Hour)
					start = time.Date(start.Year(), start.Month(), start.Day(), 9+rng.IntN(8), 15*rng.IntN(4), 0, 0, crashNow.Location())
					say("try %d hold", w)
					b, err := e.Hold(crashNow, allocator.HoldRequest{Office: "crash", Service: "s",
						Applicant: fmt.Sprintf("a%d-%d-%d", seed, w, n), Start: start}, allocator.Meta{Actor: "p"})
					if err == nil {
						say("ack %d %s %s", w, b.ID, b.Status)
						mine = append(mine, b.ID)
					} else {
						say("nak %d", w)
					}
					continue
				}
				id := mine[rng.IntN(len(mine))]
				cur, _ := e.Get(id, "")
				var b allocator.Booking
				var err error
				say("try %d %s", w, id)
				switch {
				case cur.Status == allocator.StatusHeld && rng.IntN(4) > 0:
					b, err = e.Confirm(crashNow, id, "", allocator.Meta{Actor: "p"})
				case cur.Status == allocator.StatusConfirmed && rng.IntN(2) == 0:
					start := time.Date(2026, 12, 1+rng.IntN(25), 9+rng.IntN(8), 15*rng.IntN(4), 0, 0, crashNow.Location())
					b, err = e.Reschedule(crashNow, id, allocator.RescheduleRequest{Start: start}, allocator.Meta{Actor: "p"})
				default:
					b, err = e.Cancel(crashNow, id, "", allocator.Meta{Actor: "p"})
				}
				if err == nil {
					say("ack %d %s %s", w, b.ID, b.Status)
				} else {
					say("nak %d", w)
				}
			}
		}()
	}
	wg.Wait()
}

type crashAck struct {
	status allocator.Status
}

func TestCrashRecovery(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test skipped in -short")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	acked := map[allocator.ID]allocator.Status{} // last acknowledged status
	var lastCursor uint64
	for round := 0; round < *crashRounds; round++ {
		seed := uint64(round + 1)
		inflight := runCrashChild(t, exe, dir, seed, acked)
		lastCursor = checkRecovered(t, dir, round, acked, inflight, lastCursor)
	}
}

// runCrashChild runs one child until a random kill and returns, per worker,
// whether an operation was in flight (tried, not answered) at the kill.
func runCrashChild(t *testing.T, exe, dir string, seed uint64, acked map[allocator.ID]allocator.Status) map[int]bool {
	t.Helper()
	cmd := exec.Command(exe, "-test.run=^TestCrashChild$", "-test.v=false")
	cmd.Env = append(os.Environ(), crashChildEnv+"="+dir, "SLOTD_CRASH_SEED="+strconv.FormatUint(seed, 10))
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(out)
	if !sc.Scan() || sc.Text() != "ready" {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("child (seed %d) did not start: %q", seed, sc.Text())
	}
	rng := rand.New(rand.NewPCG(seed, 99))
	killAfter := time.Duration(20+rng.IntN(250)) * time.Millisecond
	timer := time.AfterFunc(killAfter, func() { cmd.Process.Signal(syscall.SIGKILL) })
	defer timer.Stop()
	inflight := map[int]bool{}
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 {
			continue
		}
		w, _ := strconv.Atoi(f[1])
		switch f[0] {
		case "try":
			inflight[w] = true
		case "nak":
			inflight[w] = false
		case "ack":
			inflight[w] = false
			id, err := allocator.ParseID(f[2])
			st, ok := allocator.ParseStatus(f[3])
			if err != nil || !ok {
				t.Fatalf("bad ack line %q", sc.Text())
			}
			acked[id] = st
		}
	}
	cmd.Wait()
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() {
		t.Fatalf("child (seed %d) ended without being killed: %v", seed, cmd.ProcessState)
	}
	return inflight
}

// checkRecovered recovers dir in this process and checks the invariants.
func checkRecovered(t *testing.T, dir string, round int, acked map[allocator.ID]allocator.Status, inflight map[int]bool, prevCursor uint64) uint64 {
	t.Helper()
	db, err := wal.Open(dir, wal.Options{})
	if err != nil {
		t.Fatalf("round %d: reopen: %v", round, err)
	}
	defer db.Close()
	e, _ := allocator.New(allocator.Config{Journal: db})
	st, err := wal.Recover(db, e, crashNow)
	if err != nil {
		t.Fatalf("round %d: recovery: %v", round, err) // includes a double-owned seat
	}
	if err := e.Verify(); err != nil {
		t.Fatalf("round %d: after recovery: %v", round, err)
	}
	inFlightOps := 0
	for _, busy := range inflight {
		if busy {
			inFlightOps++
		}
	}
	// Every acknowledged booking is there, in its last acknowledged status
	// or one step further (the worker's in-flight operation landed but was
	// not acknowledged before the kill).
	moved := 0
	for id, want := range acked {
		got, err := e.Get(id, "")
		if err != nil {
			t.Fatalf("round %d: acknowledged booking %s lost: %v", round, id, err)
		}
		if got.Status != want {
			moved++
			acked[id] = got.Status
		}
	}
	unacked := st.Bookings - len(acked)
	if moved+unacked > inFlightOps {
		t.Fatalf("round %d: %d bookings changed and %d appeared without acknowledgement, but only %d operations were in flight",
			round, moved, unacked, inFlightOps)
	}
	// Adopt the unacknowledged-but-durable holds so later rounds track them.
	// Nothing half-applied: each booking's current status has its event.
	lastEvent := map[allocator.ID]allocator.Status{}
	var cursor uint64
	for {
		evs, err := db.ReadEvents(cursor, 1000)
		if err != nil {
			t.Fatalf("round %d: events: %v", round, err)
		}
		if len(evs) == 0 {
			break
		}
		for _, ev := range evs {
			if ev.Cursor <= cursor {
				t.Fatalf("round %d: event cursor %d after %d", round, ev.Cursor, cursor)
			}
			cursor = ev.Cursor
			if ev.Booking != nil {
				lastEvent[ev.Booking.ID] = ev.Booking.Status
			}
		}
	}
	if cursor < prevCursor {
		t.Fatalf("round %d: event feed went back from %d to %d", round, prevCursor, cursor)
	}
	for id := range lastEvent {
		got, err := e.Get(id, "")
		if err != nil {
			t.Fatalf("round %d: event for booking %s that recovery does not have", round, id)
		}
		if got.Status != lastEvent[id] {
			t.Fatalf("round %d: booking %s is %s but its last event says %s (half-applied change)", round, id, got.Status, lastEvent[id])
		}
		acked[id] = got.Status
	}
	if len(lastEvent) != st.Bookings {
		t.Fatalf("round %d: %d bookings but events for %d", round, st.Bookings, len(lastEvent))
	}
	return cursor
}
