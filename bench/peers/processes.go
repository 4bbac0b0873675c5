package peers

import (
	"context"
	"fmt"
	"time"
)

// Backends that serve slotd's own API from processes of their own —
// slotd's binary, alone or as a cluster (package clusterbench) — rather
// than behind the edge: the HTTP table's rush goes to their addresses
// with their key, and the same rush of the same generator meets the
// peers in the same round.

// ProcessBackend is a backend of the HTTP table served by processes of
// its own (Config.Processes). The engine table leaves it out: it has no
// Go API here. Its methods are called from one goroutine.
type ProcessBackend interface {
	// Name is the backend's row name; it must differ from slotd,
	// postgres and redis.
	Name() string
	// Start starts the processes on fresh data in a new directory under
	// dir (empty: the system's temporary directory), creates lay's
	// office through the API and releases its dates.
	Start(ctx context.Context, dir string, lay *Layout) (Processes, error)
	// TimesPeerTarget is DESIGN §6's ratio of the backend's bookings/s
	// to the named peer's, or 0 where it sets none.
	TimesPeerTarget(peer string) float64
}

// Processes are a ProcessBackend's processes for one rush. Their methods
// are called from one goroutine.
type Processes interface {
	// Target returns the addresses the workers go round (Rush.Addrs)
	// and the Authorization header every request carries.
	Target() (addrs []string, authorization string)
	// CPUTime is the CPU time the processes have used so far, user and
	// system; false where it cannot be read.
	CPUTime() (time.Duration, bool)
	// Check compares what the processes stored with the acknowledged
	// bookings (Verify, and whatever more the processes owe, such as a
	// cluster's replicas agreeing); the note, possibly empty, says what
	// it found beyond that.
	Check(ctx context.Context, acked []Acked, hadErrors bool) (note string, err error)
	// Close stops the processes and removes their data.
	Close()
}

// RushProcesses rushes p with r, its workers at p's addresses with p's
// key, through the generator command (in this process if it is empty),
// then checks what p stored. The result's Note gives the CPU time of p's
// processes and of the generator per booking; Backend and Mode are left
// to the caller.
func RushProcesses(ctx context.Context, generator []string, p Processes, r Rush) (Result, error) {
	r.Addr = ""
	r.Addrs, r.Authorization = p.Target()
	cpu0, cpu0OK := p.CPUTime()
	var out Outcome
	var err error
	if len(generator) > 0 {
		out, err = GenerateInChild(ctx, generator, r)
	} else {
		out, err = GenerateHTTP(ctx, r)
	}
	if err != nil {
		return Result{}, fmt.Errorf("generator: %w", err)
	}
	cpu1, cpu1OK := p.CPUTime()
	res := out.Result
	if cpu0OK && cpu1OK && res.Bookings > 0 {
		res.Note = fmt.Sprintf("slotd's processes: %s of CPU per booking", fmtLatency((cpu1-cpu0)/time.Duration(res.Bookings)))
		if res.GeneratorCPU > 0 {
			res.Note += fmt.Sprintf(", the generator %s", fmtLatency(res.GeneratorCPU/time.Duration(res.Bookings)))
		}
	}
	note, err := p.Check(ctx, out.Acked, res.Errors > 0)
	if note != "" {
		if res.Note != "" {
			res.Note += "; "
		}
		res.Note += note
	}
	if err != nil {
		res.VerifyError = err.Error()
	} else {
		res.Verified = true
	}
	return res, nil
}
