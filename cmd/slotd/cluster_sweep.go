package main

import (
	"errors"
	"time"

	"go.uber.org/zap"

	"slotd/replica"
)

// sweepRoundsMax bounds one group's sweeps per sweepInterval, as a single
// slotd bounds its own: a backlog is worked off over several intervals.
const sweepRoundsMax = 100

// sweepLed runs the retention sweep of every group this node leads, each
// sweepInterval, as entries of the group's log (replica.Replica.Sweep,
// wal W12): the leader stamps the cutoffs on the steady clock that stamps
// the idempotency records (httpapi/clock.go), and every replica deletes
// by them. A group led elsewhere is swept by its leader.
func (f *front) sweepLed(steady func() time.Time, stop <-chan struct{}) {
	t := time.NewTicker(sweepInterval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		for _, g := range f.groups {
			f.sweepGroup(g, steady)
		}
	}
}

// sweepGroup sweeps group g until nothing past retention is left or
// sweepRoundsMax entries were spent.
func (f *front) sweepGroup(g uint64, steady func() time.Time) {
	for range sweepRoundsMax {
		st, err := f.rep.Sweep(g, steady())
		if errors.Is(err, replica.ErrNoEngine) {
			return // led elsewhere, or its engine is being built
		}
		if err != nil {
			f.log.Warn("sweep", zap.Uint64("group", g), zap.Error(err))
			return
		}
		if !st.More {
			return
		}
	}
}
