package peers

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"slotd/allocator"
	"slotd/wal"
)

// slotdBackend is the production path: an allocator.Engine journaling to a
// wal.DB with synced commits. Safe for concurrent use.
type slotdBackend struct {
	lay    Layout
	engine *allocator.Engine
	db     *wal.DB
	meta   allocator.Meta
}

// OpenSlotd opens a fresh store in dir (which should be empty) and creates
// the layout's office with every date released.
func OpenSlotd(dir string, lay Layout) (Backend, error) {
	if err := lay.validate(); err != nil {
		return nil, err
	}
	db, err := wal.Open(dir, wal.Options{})
	if err != nil {
		return nil, err
	}
	e, err := allocator.New(allocator.Config{Journal: db})
	if err != nil {
		_ = db.Close()
		return nil, err
	}
	b := &slotdBackend{lay: lay, engine: e, db: db, meta: allocator.Meta{Actor: "bench"}}
	if err := b.setup(); err != nil {
		_ = db.Close()
		return nil, err
	}
	return b, nil
}

func (b *slotdBackend) setup() error {
	l := &b.lay
	hours := fmt.Sprintf("%02d:%02d-%02d:%02d", l.OpenMinute/60, l.OpenMinute%60, l.CloseMinute/60, l.CloseMinute%60)
	week := map[string][]string{}
	for _, d := range []string{"mon", "tue", "wed", "thu", "fri", "sat", "sun"} {
		week[d] = []string{hours}
	}
	p := allocator.DefaultPolicy()
	// A cancel frees the seat at once, as in the peers.
	p.CancelCutoff, p.LateCancelFloor = 0, 0
	p.HorizonDays = 60
	cfg := allocator.OfficeConfig{
		ID: l.Office, Name: "Bench office", Region: "bench", City: "Bench", Address: "-",
		Timezone: "UTC", SlotMinutes: l.StepMinutes, Windows: l.Windows, Hours: week,
		Services: []allocator.ServiceConfig{{ID: l.Service, Name: "Bench service", Slots: 1}},
		Policy:   p,
	}
	now := time.Now()
	if _, err := b.engine.PutOffice(now, cfg, b.meta); err != nil {
		return fmt.Errorf("cannot create the bench office: %w", err)
	}
	last, _ := allocator.ParseDate(l.Dates[len(l.Dates)-1])
	if _, err := b.engine.Release(now, l.Office, last, b.meta); err != nil {
		return fmt.Errorf("cannot release the bench dates: %w", err)
	}
	return nil
}

func (b *slotdBackend) Name() string { return "slotd" }

func (b *slotdBackend) Availability(_ context.Context, office, date, service string, out []int) ([]int, error) {
	d, err := allocator.ParseDate(date)
	if err != nil {
		return out, fmt.Errorf("%w: %v", ErrValidation, err)
	}
	var steps [allocator.StepsMax]allocator.StepFree
	free, grid, err := b.engine.AppendSlotSteps(steps[:0], time.Now(), office, d, service)
	if err != nil {
		return out, mapEngineError(err)
	}
	// The office's grid is the layout's, in UTC (setup): every start is
	// midnight plus its step, and one of the layout's; anything else is a
	// setup error.
	midnight, length, uniform := grid.Uniform()
	if !uniform {
		return out, fmt.Errorf("the grid of %s is not uniform: the bench office must be in UTC", date)
	}
	offset, step := b.lay.Start(date, 0).Sub(midnight), time.Duration(b.lay.StepMinutes)*time.Minute
	base := len(out)
	out = b.lay.zeroFree(out)
	for _, s := range free {
		at := time.Duration(s.Step)*length - offset // from the layout's first start
		i := int(at / step)
		if at%step != 0 || i < 0 || i >= len(out)-base {
			return out[:base], fmt.Errorf("start %s of %s is not on the layout", grid.Start(int(s.Step)), date)
		}
		out[base+i] = int(s.Free)
	}
	return out, nil
}

func (b *slotdBackend) Hold(_ context.Context, req HoldRequest) (Booking, error) {
	v, err := b.engine.Hold(time.Now(), allocator.HoldRequest{
		Office: req.Office, Service: req.Service, Applicant: req.Applicant, Start: req.Start, Confirm: true,
	}, b.meta)
	if err != nil {
		return Booking{}, mapEngineError(err)
	}
	return viewBooking(v), nil
}

func (b *slotdBackend) Cancel(_ context.Context, id, applicant string) error {
	bid, err := allocator.ParseID(id)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrNotFound, err)
	}
	_, err = b.engine.Cancel(time.Now(), bid, applicant, b.meta)
	return mapEngineError(err)
}

// Active reads the bookings back from the store as a restart does: it
// recovers the store into a fresh engine (which refuses a seat owned twice)
// and keeps the active bookings of the date it is handed. Both the serving
// engine and the recovered one must pass allocator.Engine.Verify.
func (b *slotdBackend) Active(_ context.Context, office, date string) ([]Booking, error) {
	if err := b.engine.Verify(); err != nil {
		return nil, fmt.Errorf("engine state: %w", err)
	}
	d, err := allocator.ParseDate(date)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrValidation, err)
	}
	fresh, err := allocator.New(allocator.Config{Journal: &allocator.MemJournal{}})
	if err != nil {
		return nil, err
	}
	c := &activeCollector{Engine: fresh, office: office, date: d}
	if _, err := wal.Recover(b.db, c, time.Now()); err != nil {
		return nil, fmt.Errorf("recovery: %w", err)
	}
	if err := fresh.Verify(); err != nil {
		return nil, fmt.Errorf("recovered state: %w", err)
	}
	out := make([]Booking, 0, len(c.recs))
	for _, r := range c.recs {
		v, ok := fresh.View(r)
		if !ok {
			return nil, fmt.Errorf("booking %s: office %q unknown after recovery", r.ID, r.Office)
		}
		out = append(out, viewBooking(v))
	}
	return out, nil
}

func (b *slotdBackend) Close() error { return b.db.Close() }

// Note says how well group commit worked: commits per WAL fsync, and
// the mean commit and fsync.
func (b *slotdBackend) Note() string {
	st := b.db.Stats()
	if st.WALSyncs == 0 {
		return ""
	}
	return fmt.Sprintf("wal: %d commits, %d fsyncs, %.1f commits/fsync, mean commit %s, mean fsync %s",
		st.Commits, st.WALSyncs, float64(st.Commits)/float64(st.WALSyncs),
		st.CommitLatency.Mean().Round(time.Microsecond), st.WALSyncLatency.Mean().Round(time.Microsecond))
}

// activeCollector is a fresh engine that wal.Recover restores into, and
// that also keeps the active bookings of one office-date it is handed.
// Used from one goroutine.
type activeCollector struct {
	*allocator.Engine
	office string
	date   allocator.Date
	mu     sync.Mutex // recovery restores bookings from several goroutines
	recs   []*allocator.BookingRecord
}

func (c *activeCollector) RestoreBooking(r *allocator.BookingRecord) error {
	if r.Office == c.office && r.Date == c.date && r.Status.Active() {
		c.mu.Lock()
		c.recs = append(c.recs, r)
		c.mu.Unlock()
	}
	return c.Engine.RestoreBooking(r)
}

func viewBooking(v allocator.Booking) Booking {
	return Booking{
		ID: v.ID.String(), Number: v.Number, Office: v.Office, Service: v.Service, Applicant: v.Applicant,
		Window: int(v.Window) + 1, Start: v.Start, End: v.End, Status: v.Status.String(),
	}
}

// mapEngineError maps the engine's refusals to the peers' errors; the rest
// passes through (and becomes a 500 at the edge).
func mapEngineError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, allocator.ErrSlotTaken):
		return ErrSlotTaken // the rush's most frequent refusal: nothing to add
	case errors.Is(err, allocator.ErrDuplicateBooking):
		return fmt.Errorf("%w: %v", ErrDuplicate, err)
	case errors.Is(err, allocator.ErrBookingNotFound), errors.Is(err, allocator.ErrOfficeNotFound),
		errors.Is(err, allocator.ErrServiceNotFound):
		return fmt.Errorf("%w: %v", ErrNotFound, err)
	case errors.Is(err, allocator.ErrNotReleased):
		return fmt.Errorf("%w: %v", ErrNotBookable, err)
	case errors.Is(err, allocator.ErrValidation):
		return fmt.Errorf("%w: %v", ErrValidation, err)
	case errors.Is(err, allocator.ErrInvalidTransition):
		return fmt.Errorf("%w: %v", ErrTransition, err)
	}
	return err
}
