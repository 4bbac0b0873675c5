package peers

import (
	"bytes"
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

	"slotd/api"
	"slotd/client"
	"slotd/internal/flatjson"
	"slotd/internal/httpload"
)

// The rush generator: a closed loop of workers, each one connection (or
// one goroutine calling the Backend directly), bounded by a count of
// applicants and by time.

// rushClient is how one worker reaches the backend. Not safe for
// concurrent use: each worker has its own.
type rushClient interface {
	// free appends the free seats of each of the layout's starts on date
	// to dst, in order (Backend.Availability).
	free(ctx context.Context, date string, dst []int) ([]int, error)
	hold(ctx context.Context, applicant string, start time.Time) (Booking, error)
	cancel(ctx context.Context, id, applicant string) error
}

// Rush is one run of the rush. It is also what Run sends to a generator
// child process (GenerateHTTP), as JSON.
type Rush struct {
	Layout Layout
	// Workers is the number of closed-loop workers (connections).
	Workers int
	// ApplicantsPerDate arrive for each date, in order.
	ApplicantsPerDate int
	// CancelEvery: every CancelEvery-th booked applicant cancels at once;
	// 0 means nobody cancels.
	CancelEvery int
	// ReadAvailability: an applicant reads the date's slots first and
	// tries the starts shown free. Without it (the engine table's claim
	// loop) a worker tries starts in order from the first one that has not
	// yet answered slot_taken to it.
	ReadAvailability bool
	// DurationMax stops the run early; the outcome says it was cut.
	DurationMax time.Duration
	// Addr is the edge's host:port (HTTP runs only).
	Addr string
	// Addrs, if set, replaces Addr: worker i connects to Addrs[i mod
	// len(Addrs)], so that the workers spread evenly over several
	// servers (the nodes of a cluster).
	Addrs []string
	// Authorization, if set, is sent as each request's Authorization
	// header ("Bearer <key>"): slotd's own edge wants a key, the peers'
	// edge none.
	Authorization string
	// RequestTimeout bounds one HTTP request.
	RequestTimeout time.Duration
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
	// Cut is set when DurationMax stopped the run before every applicant
	// was served.
	Cut bool
	// HoldP50 and HoldP99 are latencies of hold attempts (201 and 409 alike).
	HoldP50, HoldP99 time.Duration
	// Verified is set when Verify found the stored state equal to the
	// acknowledged answers; VerifyError says what differed otherwise.
	Verified    bool
	VerifyError string
	// CPU is the machine's CPU use during the run, all of its processes
	// and its kernel; nil where it cannot be read.
	CPU *CPUUse
	// GeneratorCPU is the CPU time (user and system) of the generator's
	// child process (GenerateInChild); zero when the generator ran in
	// process.
	GeneratorCPU time.Duration
	// Note is what the backend says about its run (slotd: group commit).
	Note string
	// Round is the round of the run (Config.Rounds), from 0. In a
	// Report, a row is its backend's median round, and RoundRates holds
	// the bookings/s of all its rounds in round order.
	Round      int
	RoundRates []float64
}

// BookingsPerSecond is the run's throughput.
func (r *Result) BookingsPerSecond() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Bookings) / r.Elapsed.Seconds()
}

// Acked is one acknowledged booking as the client saw it.
type Acked struct {
	ID, Date  string
	Start     time.Time
	Window    int
	Cancelled bool
	// CancelFailed: the cancel was sent and failed. It may still have
	// been done (an answer lost with a leader, a timeout), so the
	// booking may be cancelled or active; Verify accepts either.
	CancelFailed bool
}

// Outcome is what the generator saw: the counts and every acknowledged
// booking, for verify.
type Outcome struct {
	Result Result
	Acked  []Acked
}

// workerTally is one worker's counts. Owned by its worker until the run ends.
type workerTally struct {
	bookings, cancels, conflicts, soldOut, reads, errors int
	firstError                                           error
	holdNanos                                            []int64
	acked                                                []Acked
	free                                                 []int       // scratch of serveApplicant
	starts                                               []time.Time // scratch of serveApplicant
}

func (t *workerTally) fail(err error) {
	t.errors++
	if t.firstError == nil {
		t.firstError = err
	}
}

// GenerateHTTP runs r against the edge at r.Addr (or r.Addrs) from this
// process. Run calls it in a child process when Config.GeneratorCommand
// is set, so that the generator's goroutines do not share a Go scheduler
// with the server under test.
func GenerateHTTP(ctx context.Context, r Rush) (Outcome, error) {
	if err := r.Layout.validate(); err != nil {
		return Outcome{}, err
	}
	addrs := r.Addrs
	if len(addrs) == 0 && r.Addr != "" {
		addrs = []string{r.Addr}
	}
	if r.Workers < 1 || r.Workers > connectionsMax || r.ApplicantsPerDate < 1 || len(addrs) == 0 || slices.Contains(addrs, "") ||
		r.RequestTimeout <= 0 || r.DurationMax <= 0 {
		return Outcome{}, fmt.Errorf("peers: rush %+v: needs 1..%d workers, applicants, an address and positive timeouts", r, connectionsMax)
	}
	return rush(ctx, r, func(w int) rushClient {
		c := newHTTPClient(addrs[w%len(addrs)], &r.Layout, r.RequestTimeout)
		c.authorization = r.Authorization
		return c
	}), nil
}

// rush runs r with one client per worker from newClient, which gets the
// worker's number.
func rush(ctx context.Context, r Rush, newClient func(worker int) rushClient) Outcome {
	lay := &r.Layout
	total := int64(r.ApplicantsPerDate * len(lay.Dates))
	var next atomic.Int64
	tallies := make([]workerTally, r.Workers)
	deadline := time.Now().Add(r.DurationMax)
	var cut atomic.Bool
	freed := make([]freedStarts, len(lay.Dates))
	var wg sync.WaitGroup
	cpu0, cpu0OK := readCPUTimes()
	start := time.Now()
	for w := range r.Workers {
		c := newClient(w)
		t := &tallies[w]
		t.holdNanos = make([]int64, 0, int(total)/r.Workers*2)
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
				di := int(k) / r.ApplicantsPerDate
				applicant := "a-" + strconv.FormatInt(k, 10)
				serveApplicant(ctx, &r, c, t, lay.Dates[di], &hint[di], &freed[di], applicant, k)
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	cpu1, cpu1OK := readCPUTimes()
	out := Outcome{Result: Result{Connections: r.Workers, Elapsed: elapsed, Cut: cut.Load()}}
	res := &out.Result
	if use, ok := cpuBetween(cpu0, cpu1, cpu0OK, cpu1OK); ok {
		res.CPU = &use
	}
	var nanos []int64
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
		out.Acked = append(out.Acked, t.acked...)
	}
	res.HoldP50, res.HoldP99 = percentile(nanos, 0.50), percentile(nanos, 0.99)
	return out
}

// freedStarts holds the starts of one date that cancels freed, for the
// claim loop: a worker's hint may have passed a start before another
// worker's cancel freed it, and without this the seat would stay free
// while later applicants are turned away. Safe for concurrent use.
type freedStarts struct {
	mu     sync.Mutex
	starts []int
}

func (f *freedStarts) push(s int) {
	f.mu.Lock()
	f.starts = append(f.starts, s)
	f.mu.Unlock()
}

// pop takes the start freed first, if any.
func (f *freedStarts) pop() (int, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.starts) == 0 {
		return 0, false
	}
	s := f.starts[0]
	f.starts = f.starts[1:]
	return s, true
}

// serveApplicant is one applicant's attempt: read (or guess) the free
// starts, try them in order until booked. In the claim loop (no reads),
// a start a cancel freed below the worker's hint is tried first.
func serveApplicant(ctx context.Context, r *Rush, c rushClient, t *workerTally, date string, hint *int, freed *freedStarts, applicant string, k int64) {
	lay := &r.Layout
	first, step := lay.Start(date, 0), time.Duration(lay.StepMinutes)*time.Minute
	starts := t.starts[:0]
	if r.ReadAvailability {
		free, err := c.free(ctx, date, t.free[:0])
		t.free = free
		t.reads++
		if err != nil {
			t.fail(fmt.Errorf("availability: %w", err))
			return
		}
		for s, n := range free {
			if n > 0 {
				starts = append(starts, first.Add(time.Duration(s)*step))
			}
		}
	} else {
		if s, ok := freed.pop(); ok && s < *hint {
			starts = append(starts, first.Add(time.Duration(s)*step))
		}
		for s := *hint; s < lay.Steps(); s++ {
			starts = append(starts, first.Add(time.Duration(s)*step))
		}
	}
	t.starts = starts
	for _, st := range starts {
		t0 := time.Now()
		bk, err := c.hold(ctx, applicant, st)
		t.holdNanos = append(t.holdNanos, int64(time.Since(t0)))
		switch {
		case errors.Is(err, ErrSlotTaken):
			t.conflicts++
			if !r.ReadAvailability {
				*hint = max(*hint, int(st.Sub(first)/step)+1)
			}
			continue
		case err != nil:
			t.fail(fmt.Errorf("hold: %w", err))
			return
		}
		t.bookings++
		a := Acked{ID: bk.ID, Date: date, Start: bk.Start, Window: bk.Window}
		if r.CancelEvery > 0 && k%int64(r.CancelEvery) == 0 {
			if err := c.cancel(ctx, bk.ID, applicant); err != nil {
				t.fail(fmt.Errorf("cancel: %w", err))
				a.CancelFailed = true
			} else {
				t.cancels++
				a.Cancelled = true
				if !r.ReadAvailability {
					freed.push(int(bk.Start.Sub(first) / step))
				}
			}
		}
		t.acked = append(t.acked, a)
		return
	}
	t.soldOut++
}

// ActiveReader reads back what a backend stored (Backend.Active); a
// slotd reached only over HTTP implements it too.
type ActiveReader interface {
	Active(ctx context.Context, office, date string) ([]Booking, error)
}

// Verify compares what b stored with what it acknowledged: every
// acknowledged, uncancelled booking owns its seat; no seat has two owners;
// nothing else owns a seat. After errors (a request that failed may still
// have committed) unacknowledged owners are allowed, and a booking whose
// cancel failed may be found active or not.
func Verify(ctx context.Context, b ActiveReader, lay *Layout, all []Acked, hadErrors bool) error {
	want := map[string]Acked{}
	maybe := map[string]Acked{}
	for _, a := range all {
		switch {
		case a.CancelFailed:
			maybe[a.ID] = a
		case !a.Cancelled:
			want[a.ID] = a
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
			if !ok {
				a, ok = maybe[bk.ID]
			}
			switch {
			case !ok && !hadErrors:
				return fmt.Errorf("booking %s owns seat %s window %d but was never acknowledged (or was cancelled)", bk.ID, bk.Start.Format(time.RFC3339), bk.Window)
			case ok && (a.Date != date || !a.Start.Equal(bk.Start) || a.Window != bk.Window):
				return fmt.Errorf("booking %s acknowledged at %s window %d but stored at %s window %d", bk.ID, a.Start.Format(time.RFC3339), a.Window, bk.Start.Format(time.RFC3339), bk.Window)
			}
			delete(want, bk.ID)
		}
	}
	for id, a := range want {
		return fmt.Errorf("acknowledged booking %s (%s window %d) is not stored as active (%d such)", id, a.Start.Format(time.RFC3339), a.Window, len(want))
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

func (c *directClient) free(ctx context.Context, date string, dst []int) ([]int, error) {
	return c.b.Availability(ctx, c.lay.Office, date, c.lay.Service, dst)
}

func (c *directClient) hold(ctx context.Context, applicant string, start time.Time) (Booking, error) {
	return c.b.Hold(ctx, HoldRequest{Office: c.lay.Office, Service: c.lay.Service, Applicant: applicant, Start: start})
}

func (c *directClient) cancel(ctx context.Context, id, applicant string) error {
	return c.b.Cancel(ctx, id, applicant)
}

// httpClient is one worker's connection: one request at a time, written
// as raw bytes and read back by status and length (internal/httpload), so
// that the generator, on the same cores as the server, costs each backend
// as little as it can.
type httpClient struct {
	conn *httpload.Conn
	host string
	// authorization is the Authorization header's value; "" sends none.
	authorization string
	lay           *Layout
	req           []byte // the request being built
	bodies        *bodyWriter
	resp          []byte // the last answer's body, valid until the next request
	slots         freeParser
}

func newHTTPClient(addr string, lay *Layout, timeout time.Duration) *httpClient {
	return &httpClient{conn: httpload.NewConn(addr, timeout), host: addr, lay: lay, bodies: newBodyWriter(lay),
		slots: freeParser{lay: lay}}
}

// do sends a request of method to path with body (none for GET) and
// returns the status; the answer's body is in c.resp.
func (c *httpClient) do(method, path string, body []byte) (int, error) {
	b := append(c.req[:0], method...)
	b = append(b, ' ')
	b = append(b, path...)
	b = append(b, " HTTP/1.1\r\nHost: "...)
	b = append(b, c.host...)
	if c.authorization != "" {
		b = append(b, "\r\nAuthorization: "...)
		b = append(b, c.authorization...)
	}
	if body != nil {
		b = append(b, "\r\nContent-Type: application/json\r\nContent-Length: "...)
		b = strconv.AppendInt(b, int64(len(body)), 10)
	}
	b = append(b, "\r\n\r\n"...)
	b = append(b, body...)
	c.req = b
	status, resp, err := c.conn.Do(b)
	c.resp = resp
	return status, err
}

func (c *httpClient) free(_ context.Context, date string, dst []int) ([]int, error) {
	status, err := c.do("GET", "/v1/offices/"+c.lay.Office+"/days/"+date+"/slots?service="+c.lay.Service, nil)
	if err != nil {
		return dst, err
	}
	if status != fasthttp.StatusOK {
		return dst, c.unexpected(status)
	}
	return c.slots.parse(c.resp, date, dst)
}

// freeParser reads the availability answers of one layout,
// {"slots":[{"start":…,"free":n},…]}. The edge lists every start of the
// date in order (appendSlotsJSON), so all of an entry but its count is
// known before the answer arrives, and reading one is a comparison of
// bytes and a number. The expected entries are written with
// time.Time.Format, not with the edge's encoder, so an edge that wrote a
// start wrong fails the run instead of being read as another start. The
// generator is on the same cores as the server, so its reading is kept
// as cheap as the edge's writing; anything unexpected is an error, never
// a guess. Owned by one worker.
type freeParser struct {
	lay     *Layout
	date    string // the date entries is for; "" before the first answer
	entries []byte // `{"start":"…","free":` of each start, a ',' before all but the first
	ends    []int  // the end of each entry in entries
}

// freeDigitsMax bounds a free count's digits, far above any layout's
// windows, so that reading it cannot overflow.
const freeDigitsMax = 9

func (p *freeParser) parse(body []byte, date string, dst []int) ([]int, error) {
	if date != p.date {
		p.expect(date)
	}
	bad := func(at int) error {
		return fmt.Errorf("slots answer for %s: unexpected JSON at byte %d: %.40q", date, at, body[min(at, len(body)):])
	}
	if !bytes.HasPrefix(body, []byte(slotsHead)) {
		return dst, bad(0)
	}
	i, from := len(slotsHead), 0
	for _, end := range p.ends {
		entry := p.entries[from:end]
		from = end
		if !bytes.HasPrefix(body[i:], entry) {
			return dst, bad(i)
		}
		i += len(entry)
		n, j := 0, i
		for j < len(body) && j-i < freeDigitsMax && body[j] >= '0' && body[j] <= '9' {
			n = n*10 + int(body[j]-'0')
			j++
		}
		if j == i || j >= len(body) || body[j] != '}' || (j-i > 1 && body[i] == '0') {
			return dst, bad(j)
		}
		dst = append(dst, n)
		i = j + 1
	}
	if !bytes.Equal(body[i:], []byte(slotsTail)) {
		return dst, bad(i)
	}
	return dst, nil
}

// expect writes the entries of date's starts.
func (p *freeParser) expect(date string) {
	p.date, p.entries, p.ends = date, p.entries[:0], p.ends[:0]
	first, step := p.lay.Start(date, 0), time.Duration(p.lay.StepMinutes)*time.Minute
	for s := range p.lay.Steps() {
		if s > 0 {
			p.entries = append(p.entries, ',')
		}
		p.entries = append(p.entries, `{"start":"`...)
		p.entries = first.Add(time.Duration(s)*step).AppendFormat(p.entries, time.RFC3339)
		p.entries = append(p.entries, `","free":`...)
		p.ends = append(p.ends, len(p.entries))
	}
}

func (c *httpClient) hold(_ context.Context, applicant string, start time.Time) (Booking, error) {
	status, err := c.do("POST", "/v1/bookings", c.bodies.hold(applicant, start))
	if err != nil {
		return Booking{}, err
	}
	if status != fasthttp.StatusCreated {
		return Booking{}, c.unexpected(status)
	}
	return readBooking(c.resp)
}

// readBooking reads a booking answer into the API's booking
// (client.Booking), by flatjson.Decode when it can and by encoding/json
// otherwise, and keeps what the rush needs.
func readBooking(body []byte) (Booking, error) {
	var out client.Booking
	if !flatjson.Decode(body, &out) {
		out = client.Booking{}
		if err := json.Unmarshal(body, &out); err != nil {
			return Booking{}, fmt.Errorf("booking answer: %w", err)
		}
	}
	return BookingOf(&out), nil
}

// bodyWriter writes the rush's request bodies, the API's request types
// (package client) as encoding/json writes them, into one buffer kept
// from request to request: the request values point at its applicant
// and start, so that a body costs an encoding and no new values. Owned
// by one worker.
type bodyWriter struct {
	buf       bytes.Buffer
	enc       *json.Encoder
	applicant string
	start     time.Time
	holdReq   client.HoldJSONRequestBody   // confirmed in the same step
	cancelReq client.CancelJSONRequestBody // with the reason "bench"
}

func newBodyWriter(lay *Layout) *bodyWriter {
	w := &bodyWriter{}
	w.enc = json.NewEncoder(&w.buf)
	w.holdReq = client.HoldJSONRequestBody{Office: lay.Office, Service: lay.Service,
		Applicant: &w.applicant, Start: &w.start, Confirm: new(true)}
	w.cancelReq = client.CancelJSONRequestBody{Applicant: &w.applicant, Reason: new("bench")}
	return w
}

// hold is the body of applicant's hold of start, valid until the next
// body.
func (w *bodyWriter) hold(applicant string, start time.Time) []byte {
	w.applicant, w.start = applicant, start
	return w.encode(&w.holdReq)
}

// cancel is the body of applicant's cancel, valid until the next body.
func (w *bodyWriter) cancel(applicant string) []byte {
	w.applicant = applicant
	return w.encode(&w.cancelReq)
}

func (w *bodyWriter) encode(v any) []byte {
	w.buf.Reset()
	if err := w.enc.Encode(v); err != nil {
		panic("BUG: peers: cannot encode a request body: " + err.Error())
	}
	b := w.buf.Bytes()
	return b[:len(b)-1] // Encode ends a value with a newline; json.Marshal does not
}

// BookingOf takes the members of an API booking the rush keeps.
func BookingOf(b *client.Booking) Booking {
	return Booking{ID: b.Id, Number: b.Number, Office: b.Office, Service: b.Service, Applicant: b.Applicant,
		Window: b.Window, Start: b.Start, End: b.End, Status: string(b.Status)}
}

func (c *httpClient) cancel(_ context.Context, id, applicant string) error {
	status, err := c.do("POST", "/v1/bookings/"+id+"/cancel", c.bodies.cancel(applicant))
	if err != nil {
		return err
	}
	if status != fasthttp.StatusOK {
		return c.unexpected(status)
	}
	return nil
}

// slotTakenEnd is how a slot_taken answer ends: the edges (slotd's and
// the peers') write the code last, so the rush's most frequent answer is
// told by its end without decoding it.
var slotTakenEnd = []byte(`"code":"` + api.CodeSlotTaken + `"}`)

// unexpected turns a non-success answer into an error; 409 slot_taken
// becomes ErrSlotTaken.
func (c *httpClient) unexpected(status int) error {
	if status == fasthttp.StatusConflict && bytes.HasSuffix(c.resp, slotTakenEnd) {
		return ErrSlotTaken
	}
	var p client.Problem
	_ = json.Unmarshal(c.resp, &p)
	if status == fasthttp.StatusConflict && p.Code == client.ProblemCodeSlotTaken {
		return ErrSlotTaken
	}
	return fmt.Errorf("HTTP %d %s: %s", status, p.Code, p.Detail)
}
