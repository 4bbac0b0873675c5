package allocator

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
)

// Linearizability of seat ownership, checked with porcupine on histories
// recorded from concurrent goroutines. Each seat is a register holding its
// owner: hold(seat) answers ok (and becomes the owner) or taken; release
// (the owner's cancel) answers ok and clears it. The history is partitioned
// per seat, so each seat is checked on its own.
//
// The office has one window, so a start names exactly one seat and the
// engine has no choice of window to hide a double sale behind.

type seatInput struct {
	seat    int
	release bool
	booking ID // release: the booking cancelled
}

type seatOutput struct {
	ok      bool
	booking ID // hold ok: the new booking
}

var seatModel = porcupine.Model{
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		bySeat := map[int][]porcupine.Operation{}
		var seats []int
		for _, op := range history {
			s := op.Input.(seatInput).seat
			if _, seen := bySeat[s]; !seen {
				seats = append(seats, s)
			}
			bySeat[s] = append(bySeat[s], op)
		}
		out := make([][]porcupine.Operation, 0, len(seats))
		for _, s := range seats {
			out = append(out, bySeat[s])
		}
		return out
	},
	Init: func() any { return ID{} }, // zero: free
	Step: func(state, input, output any) (bool, any) {
		owner, in, out := state.(ID), input.(seatInput), output.(seatOutput)
		switch {
		case in.release:
			return out.ok && owner == in.booking, ID{}
		case owner == ID{}:
			return out.ok, out.booking
		default:
			return !out.ok, owner
		}
	},
	DescribeOperation: func(input, output any) string {
		in, out := input.(seatInput), output.(seatOutput)
		if in.release {
			return fmt.Sprintf("release(seat %d, %s) → %v", in.seat, in.booking, out.ok)
		}
		if out.ok {
			return fmt.Sprintf("hold(seat %d) → %s", in.seat, out.booking)
		}
		return fmt.Sprintf("hold(seat %d) → taken", in.seat)
	},
}

// TestLinearizableSeatsHoldRelease: 8 goroutines hold random seats of 12
// and cancel seven in eight of what they win, 300 operations each; the history
// must be linearizable per seat.
func TestLinearizableSeatsHoldRelease(t *testing.T) {
	const seed, seats, clients, opsPerClient = 7, 12, 8, 300
	cfg := testOffice("a")
	cfg.Windows = 1
	e, _ := newTestEngine(t, cfg)
	seatStart := func(s int) time.Time { return at(2, 9, 15*s) } // Wednesday 09:00, 09:15, …
	var mu sync.Mutex
	var history []porcupine.Operation
	base := time.Now()
	clock := func() int64 { return int64(time.Since(base)) } // monotonic
	raceGo(clients, func(g int) {
		r := rand.New(rand.NewPCG(seed, uint64(g)))
		var ops []porcupine.Operation
		for i := range opsPerClient {
			s := r.IntN(seats)
			call := clock()
			b, err := e.Hold(t0, HoldRequest{Office: "a", Service: "patent", Applicant: fmt.Sprintf("c%d-%d", g, i), Start: seatStart(s)}, portal())
			ret := clock()
			if err != nil && !errors.Is(err, ErrSlotTaken) {
				t.Errorf("seed %d: hold: %v", seed, err)
				return
			}
			ops = append(ops, porcupine.Operation{ClientId: g, Input: seatInput{seat: s}, Call: call,
				Output: seatOutput{ok: err == nil, booking: b.ID}, Return: ret})
			if err != nil || r.IntN(8) == 0 {
				continue
			}
			call = clock()
			_, err = e.Cancel(t0, b.ID, b.Applicant, portal())
			ret = clock()
			ops = append(ops, porcupine.Operation{ClientId: g, Input: seatInput{seat: s, release: true, booking: b.ID}, Call: call,
				Output: seatOutput{ok: err == nil}, Return: ret})
		}
		mu.Lock()
		history = append(history, ops...)
		mu.Unlock()
	})
	if t.Failed() {
		return
	}
	// Not vacuous: seats were contended (refusals) and changed hands
	// (several successful holds of one seat).
	taken, holdsOK := 0, map[int]int{}
	for _, op := range history {
		in, out := op.Input.(seatInput), op.Output.(seatOutput)
		if !in.release && !out.ok {
			taken++
		}
		if !in.release && out.ok {
			holdsOK[in.seat]++
		}
	}
	resold := 0
	for _, n := range holdsOK {
		if n > 1 {
			resold++
		}
	}
	if taken == 0 || resold == 0 {
		t.Fatalf("seed %d: a vacuous history: %d refused holds, %d seats held more than once", seed, taken, resold)
	}
	res := porcupine.CheckOperationsTimeout(seatModel, history, 30*time.Second)
	if res != porcupine.Ok {
		t.Fatalf("seed %d: seat history of %d operations is %s, want Ok (DESIGN invariant 1 / claim invariant C1)", seed, len(history), res)
	}
	t.Logf("%d operations, %d refused holds, %d seats resold", len(history), taken, resold)
	checkSeatsExact(t, e)
}

// TestLinearizableSeatModelRejectsDoubleSale keeps the model honest: a
// history in which two overlapping holds of one seat both succeed, with no
// release between them, is not linearizable.
func TestLinearizableSeatModelRejectsDoubleSale(t *testing.T) {
	a, b := ID{1}, ID{2}
	history := []porcupine.Operation{
		{ClientId: 0, Input: seatInput{seat: 1}, Call: 0, Output: seatOutput{ok: true, booking: a}, Return: 10},
		{ClientId: 1, Input: seatInput{seat: 1}, Call: 5, Output: seatOutput{ok: true, booking: b}, Return: 15},
	}
	if res := porcupine.CheckOperationsTimeout(seatModel, history, time.Second); res != porcupine.Illegal {
		t.Fatalf("double sale checked as %s, want Illegal", res)
	}
}
