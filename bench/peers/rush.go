package peers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
)

// The rush generator: a closed loop of workers, each one connection (or
// one goroutine calling the Backend directly), bounded by a count of
// applicants and by time.

// client is how one worker reaches the backend. Not safe for concurrent
// use: each worker has its own.
type client interface {
	slots(ctx context.Context, date string) ([]Slot, error)
	hold(ctx context.Context, applicant string, start time.Time) (Booking, error)
	cancel(ctx context.Context, id, applicant string) error
}

// rushConfig is one run of the rush.
type rushConfig struct {
	lay Layout
	// workers is the number of closed-loop workers (connections).
	workers int
	// applicantsPerDate arrive for each date, in order.
	applicantsPerDate int
	// cancelEvery: every cancelEvery-th booked applicant cancels at once;
	// 0 means nobody cancels.
	cancelEvery int
	// readAvailability: an applicant reads the date's slots first and
	// tries the starts shown free. Without it (the engine table's claim
	// loop) a worker tries starts in order from the first one that has not
	// yet answered slot_taken to it.
	readAvailability bool
	// durationMax stops the run early; the result says it was cut.
	durationMax time.Duration
}

// Result is one row of a table.
type Result struct {
	Backend string
	// Mode is "http" (through the edge) or "engine" (Backend called directly).
	Mode        string
	Connections int
	Bookings    int // acknowledged holds
	Cancels     int // acknowledged cancels
	Conflicts   int // slot_taken answers
	SoldOut     int // applicants who found no free start
	Reads       int // availability reads
	Errors      int // anything else: transport errors, 5xx, unexpected codes
	FirstError  string
	Elapsed     time.Duration
	// Cut is set when durationMax stopped the run before every applicant
	// was served.
	Cut bool
	// HoldP50 and HoldP99 are latencies of hold attempts (201 and 409 alike).
	HoldP50, HoldP99 time.Duration
	// Verified is set when Verify found the stored state equal to the
	// acknowledged answers; VerifyError says what differed otherwise.
	Verified    bool
	VerifyError string
	// Note is what the backend says about its run (slotd: group commit).
	Note string
}

// BookingsPerSecond is the run's throughput.
func (r *Result) BookingsPerSecond() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Bookings) / r.Elapsed.Seconds()
}

// acked is one acknowledged booking as the client saw it.
type acked struct {
	id, date  string
	start     time.Time
	window    int
	cancelled bool
}

// workerTally is one worker's counts. Owned by its worker until the run ends.
type workerTally struct {
	bookings, cancels, conflicts, soldOut, reads, errors int
	firstError                                           error
	holdNanos                                            []int64
	acked                                                []acked
}

func (t *workerTally) fail(err error) {
	t.errors++
	if t.firstError == nil {
		t.firstError = err
	}
}

// rush runs cfg with one client per worker from newClient, then verifies
// the backend. It returns the result without Backend and Mode.
func rush(ctx context.Context, cfg rushConfig, b Backend, newClient func() client) (Result, error) {
	lay := &cfg.lay
	total := int64(cfg.applicantsPerDate * len(lay.Dates))
	var next atomic.Int64
	tallies := make([]workerTally, cfg.workers)
	deadline := time.Now().Add(cfg.durationMax)
	var cut atomic.Bool
	var wg sync.WaitGroup
	start := time.Now()
	for w := range cfg.workers {
		c := newClient()
		t := &tallies[w]
		t.holdNanos = make([]int64, 0, int(total)/cfg.workers*2)
		wg.Add(1)
		go func() {
			defer wg.Done()
			hint := make([]int, len(lay.Dates)) // claim loop: first start not yet refused
			for {
				k := next.Add(1) - 1
				if k >= total {
					return
				}
				if ctx.Err() != nil || time.Now().After(deadline) {
					cut.Store(true)
					return
				}
				di := int(k) / cfg.applicantsPerDate
				applicant := "a-" + strconv.FormatInt(k, 10)
				serveApplicant(ctx, cfg, c, t, lay.Dates[di], &hint[di], applicant, k)
			}
		}()
	}
	wg.Wait()
	res := Result{Connections: cfg.workers, Elapsed: time.Since(start), Cut: cut.Load()}
	var nanos []int64
	var all []acked
	for i := range tallies {
		t := &tallies[i]
		res.Bookings += t.bookings
		res.Cancels += t.cancels
		res.Conflicts += t.conflicts
		res.SoldOut += t.soldOut
		res.Reads += t.reads
		res.Errors += t.errors
		if t.firstError != nil && res.FirstError == "" {
			res.FirstError = t.firstError.Error()
		}
		nanos = append(nanos, t.holdNanos...)
		all = append(all, t.acked...)
	}
	res.HoldP50, res.HoldP99 = percentile(nanos, 0.50), percentile(nanos, 0.99)
	if err := verify(ctx, b, lay, all, res.Errors > 0); err != nil {
		res.VerifyError = err.Error()
	} else {
		res.Verified = true
	}
	return res, nil
}

// serveApplicant is one applicant's attempt: read (or guess) the free
// starts, try them in order until booked.
func serveApplicant(ctx context.Context, cfg rushConfig, c client, t *workerTally, date string, hint *int, applicant string, k int64) {
	lay := &cfg.lay
	var starts []time.Time
	if cfg.readAvailability {
		slots, err := c.slots(ctx, date)
		t.reads++
		if err != nil {
			t.fail(fmt.Errorf("availability: %w", err))
			return
		}
		for _, s := range slots {
			if s.Free > 0 {
				starts = append(starts, s.Start)
			}
		}
	} else {
		for s := *hint; s < lay.Steps(); s++ {
			starts = append(starts, lay.Start(date, s))
		}
	}
	for _, st := range starts {
		t0 := time.Now()
		bk, err := c.hold(ctx, applicant, st)
		t.holdNanos = append(t.holdNanos, int64(time.Since(t0)))
		switch {
		case errors.Is(err, ErrSlotTaken):
			t.conflicts++
			if !cfg.readAvailability {
				*hint = int(st.Sub(lay.Start(date, 0))/(time.Duration(lay.StepMinutes)*time.Minute)) + 1
			}
			continue
		case err != nil:
			t.fail(fmt.Errorf("hold: %w", err))
			return
		}
		t.bookings++
		a := acked{id: bk.ID, date: date, start: bk.Start, window: bk.Window}
		if cfg.cancelEvery > 0 && k%int64(cfg.cancelEvery) == 0 {
			if err := c.cancel(ctx, bk.ID, applicant); err != nil {
				t.fail(fmt.Errorf("cancel: %w", err))
			} else {
				t.cancels++
				a.cancelled = true
			}
		}
		t.acked = append(t.acked, a)
		return
	}
	t.soldOut++
}

// verify compares what b stored with what it acknowledged: every
// acknowledged, uncancelled booking owns its seat; no seat has two owners;
// nothing else owns a seat. After errors (a request that failed may still
// have committed) unacknowledged owners are allowed.
func verify(ctx context.Context, b Backend, lay *Layout, all []acked, hadErrors bool) error {
	want := map[string]acked{}
	for _, a := range all {
		if !a.cancelled {
			want[a.id] = a
		}
	}
	type seat struct {
		start  int64
		window int
	}
	for _, date := range lay.Dates {
		active, err := b.Active(ctx, lay.Office, date)
		if err != nil {
			return fmt.Errorf("cannot read back %s: %w", date, err)
		}
		owners := map[seat]string{}
		for _, bk := range active {
			k := seat{bk.Start.UnixNano(), bk.Window}
			if other, dup := owners[k]; dup {
				return fmt.Errorf("seat %s window %d owned by %s and %s", bk.Start.Format(time.RFC3339), bk.Window, other, bk.ID)
			}
			owners[k] = bk.ID
			a, ok := want[bk.ID]
			switch {
			case !ok && !hadErrors:
				return fmt.Errorf("booking %s owns seat %s window %d but was never acknowledged (or was cancelled)", bk.ID, bk.Start.Format(time.RFC3339), bk.Window)
			case ok && (a.date != date || !a.start.Equal(bk.Start) || a.window != bk.Window):
				return fmt.Errorf("booking %s acknowledged at %s window %d but stored at %s window %d", bk.ID, a.start.Format(time.RFC3339), a.window, bk.Start.Format(time.RFC3339), bk.Window)
			}
			delete(want, bk.ID)
		}
	}
	for id, a := range want {
		return fmt.Errorf("acknowledged booking %s (%s window %d) is not stored as active (%d such)", id, a.start.Format(time.RFC3339), a.window, len(want))
	}
	return nil
}

// percentile returns the q-quantile of nanos (sorted in place).
func percentile(nanos []int64, q float64) time.Duration {
	if len(nanos) == 0 {
		return 0
	}
	if !slices.IsSorted(nanos) {
		slices.Sort(nanos)
	}
	i := int(q*float64(len(nanos))+0.5) - 1
	return time.Duration(nanos[min(max(i, 0), len(nanos)-1)])
}

// directClient calls a Backend in process: the engine table.
type directClient struct {
	b   Backend
	lay *Layout
}

func (c *directClient) slots(ctx context.Context, date string) ([]Slot, error) {
	return c.b.Availability(ctx, c.lay.Office, date, c.lay.Service)
}

func (c *directClient) hold(ctx context.Context, applicant string, start time.Time) (Booking, error) {
	return c.b.Hold(ctx, HoldRequest{Office: c.lay.Office, Service: c.lay.Service, Applicant: applicant, Start: start})
}

func (c *directClient) cancel(ctx context.Context, id, applicant string) error {
	return c.b.Cancel(ctx, id, applicant)
}

// httpClient is one connection's worth of fasthttp client. The HostClient
// is shared; the request and response are the worker's own.
type httpClient struct {
	hc      *fasthttp.HostClient
	base    string // http://host:port
	lay     *Layout
	timeout time.Duration
	req     *fasthttp.Request
	resp    *fasthttp.Response
	body    []byte
}

func newHTTPClient(hc *fasthttp.HostClient, lay *Layout, timeout time.Duration) *httpClient {
	return &httpClient{hc: hc, base: "http://" + hc.Addr, lay: lay, timeout: timeout, req: fasthttp.AcquireRequest(), resp: fasthttp.AcquireResponse()}
}

// do sends the prepared request and returns the status.
func (c *httpClient) do() (int, error) {
	if err := c.hc.DoTimeout(c.req, c.resp, c.timeout); err != nil {
		return 0, err
	}
	return c.resp.StatusCode(), nil
}

func (c *httpClient) slots(_ context.Context, date string) ([]Slot, error) {
	c.req.Reset()
	c.req.Header.SetMethod(fasthttp.MethodGet)
	c.req.SetRequestURI(c.base + "/v1/offices/" + c.lay.Office + "/days/" + date + "/slots?service=" + c.lay.Service)
	status, err := c.do()
	if err != nil {
		return nil, err
	}
	if status != fasthttp.StatusOK {
		return nil, c.unexpected(status)
	}
	var out slotsJSON
	if err := json.Unmarshal(c.resp.Body(), &out); err != nil {
		return nil, fmt.Errorf("slots answer: %w", err)
	}
	slots := make([]Slot, len(out.Slots))
	for i, s := range out.Slots {
		slots[i] = Slot(s)
	}
	return slots, nil
}

func (c *httpClient) hold(_ context.Context, applicant string, start time.Time) (Booking, error) {
	c.req.Reset()
	c.req.Header.SetMethod(fasthttp.MethodPost)
	c.req.SetRequestURI(c.base + "/v1/bookings")
	c.req.Header.SetContentType("application/json")
	b := append(c.body[:0], `{"office":`...)
	b = strconv.AppendQuote(b, c.lay.Office)
	b = append(b, `,"service":`...)
	b = strconv.AppendQuote(b, c.lay.Service)
	b = append(b, `,"applicant":`...)
	b = strconv.AppendQuote(b, applicant)
	b = append(b, `,"start":"`...)
	b = start.AppendFormat(b, time.RFC3339)
	b = append(b, `","confirm":true}`...)
	c.body = b
	c.req.SetBody(b)
	status, err := c.do()
	if err != nil {
		return Booking{}, err
	}
	if status != fasthttp.StatusCreated {
		return Booking{}, c.unexpected(status)
	}
	var out bookingJSON
	if err := json.Unmarshal(c.resp.Body(), &out); err != nil {
		return Booking{}, fmt.Errorf("booking answer: %w", err)
	}
	return Booking(out), nil
}

func (c *httpClient) cancel(_ context.Context, id, applicant string) error {
	c.req.Reset()
	c.req.Header.SetMethod(fasthttp.MethodPost)
	c.req.SetRequestURI(c.base + "/v1/bookings/" + id + "/cancel")
	c.req.Header.SetContentType("application/json")
	b := append(c.body[:0], `{"applicant":`...)
	b = strconv.AppendQuote(b, applicant)
	b = append(b, `,"reason":"bench"}`...)
	c.body = b
	c.req.SetBody(b)
	status, err := c.do()
	if err != nil {
		return err
	}
	if status != fasthttp.StatusOK {
		return c.unexpected(status)
	}
	return nil
}

// unexpected turns a non-success answer into an error; 409 slot_taken
// becomes ErrSlotTaken.
func (c *httpClient) unexpected(status int) error {
	var p problemJSON
	_ = json.Unmarshal(c.resp.Body(), &p)
	if status == fasthttp.StatusConflict && p.Code == codeSlotTaken {
		return ErrSlotTaken
	}
	return fmt.Errorf("HTTP %d %s: %s", status, p.Code, p.Detail)
}
