// Package httpload is a lean HTTP/1.1 load generator for the benchmarks.
// Run drives fixed requests: each connection keeps up to Depth requests unanswered
// (Depth 1 is plain keep-alive, one request at a time), writes the
// requests that replace the answered ones in one system call, and reads
// the answers in order, looking only at the status line and the
// Content-Length. It costs the machine a small part of what a full HTTP
// client does per request, so that on a small machine shared with the
// server the server's own cost shows.
//
// Conn is the same for a closed loop whose next request depends on the
// last answer: one request at a time on one connection.
//
// It speaks only what a benchmark needs: every answer must carry a
// Content-Length (no chunked bodies, no 1xx, no HEAD requests or 204 and
// 304 answers, whose bodies go by other rules), and it never follows a
// redirect or retries.
package httpload

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Config is one run.
type Config struct {
	Addr string // host:port
	// Conns is the number of connections, Depth the requests each keeps
	// unanswered (pipelining when above 1).
	Conns, Depth int
	// Requests is the number to send in all.
	Requests int
	// Request returns the raw bytes of request i (0 ≤ i < Requests),
	// request line to end of headers and any body, keep-alive. It is
	// called from many goroutines.
	Request func(i int) []byte
	// Check, if set, sees every answer with the number of its request;
	// an error ends that connection and the run fails with it. Called
	// from many goroutines.
	Check func(i, status int, body []byte) error
	// Timeout bounds each write and each wait for bytes of an answer;
	// zero means 30 s.
	Timeout time.Duration
}

// Result is what a run measured.
type Result struct {
	Requests int           // answered
	Elapsed  time.Duration // first write to last answer
	// Status counts the answers by status code.
	Status map[int]int
	// Latencies holds every request's time from its write to the end of
	// its answer, sorted.
	Latencies []time.Duration
}

// PerSecond is answers per second.
func (r *Result) PerSecond() float64 { return float64(r.Requests) / r.Elapsed.Seconds() }

// Percentile returns latency percentile p (0–100).
func (r *Result) Percentile(p float64) time.Duration {
	if len(r.Latencies) == 0 {
		return 0
	}
	i := int(float64(len(r.Latencies)-1) * p / 100)
	return r.Latencies[i]
}

// Run sends cfg.Requests requests and waits for every answer. A
// connection stops at its first error (a failed connection, an answer it
// cannot read, a Check that refuses, a timeout); the others go on, and
// Run returns the errors joined with what was answered.
func Run(cfg Config) (Result, error) {
	if cfg.Conns < 1 || cfg.Depth < 1 || cfg.Requests < 1 || cfg.Request == nil {
		return Result{}, errors.New("httpload: Conns, Depth and Requests must be positive and Request set")
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 30 * time.Second
	}
	conns := make([]*conn, cfg.Conns)
	for i := range conns {
		nc, err := net.Dial("tcp", cfg.Addr)
		if err != nil {
			for _, c := range conns[:i] {
				c.nc.Close()
			}
			return Result{}, fmt.Errorf("httpload: %w", err)
		}
		conns[i] = &conn{nc: nc, cfg: &cfg, status: map[int]int{}}
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make([]error, len(conns))
	start := time.Now()
	for i, c := range conns {
		wg.Go(func() {
			defer c.nc.Close()
			errs[i] = c.run(&next)
		})
	}
	wg.Wait()
	res := Result{Elapsed: time.Since(start), Status: map[int]int{}}
	for _, c := range conns {
		res.Requests += c.answered
		for code, n := range c.status {
			res.Status[code] += n
		}
		res.Latencies = append(res.Latencies, c.latencies...)
	}
	slices.Sort(res.Latencies)
	return res, errors.Join(errs...)
}

// conn is one connection's state, owned by its goroutine.
type conn struct {
	nc        net.Conn
	cfg       *Config
	out       []byte      // requests to write
	in        []byte      // bytes read, not yet parsed
	sent      []time.Time // write time of each unanswered request, oldest first
	ids       []int       // the number of each unanswered request, in the same order
	answered  int
	status    map[int]int
	latencies []time.Duration
}

// run keeps Depth requests in flight until the shared counter passes
// Requests and every answer is in.
func (c *conn) run(next *atomic.Int64) error {
	c.in = make([]byte, 0, 64<<10) // pipelined answers arrive many at a time
	for {
		// Top the window up, in one write.
		c.out = c.out[:0]
		now := time.Now()
		for len(c.sent) < c.cfg.Depth {
			i := next.Add(1) - 1
			if i >= int64(c.cfg.Requests) {
				break
			}
			c.out = append(c.out, c.cfg.Request(int(i))...)
			c.sent = append(c.sent, now)
			c.ids = append(c.ids, int(i))
		}
		if len(c.out) > 0 {
			if err := c.nc.SetWriteDeadline(now.Add(c.cfg.Timeout)); err != nil {
				return fmt.Errorf("httpload: %w", err)
			}
			if _, err := c.nc.Write(c.out); err != nil {
				return fmt.Errorf("httpload: write: %w", err)
			}
		}
		if len(c.sent) == 0 {
			return nil
		}
		if err := c.nc.SetReadDeadline(time.Now().Add(c.cfg.Timeout)); err != nil {
			return fmt.Errorf("httpload: %w", err)
		}
		var err error
		c.in, err = readMore(c.nc, c.in)
		if perr := c.parse(time.Now()); perr != nil {
			return perr
		}
		if err != nil {
			return fmt.Errorf("httpload: read with %d answers due: %w", len(c.sent), err)
		}
	}
}

// readMore appends what nc has to buf, growing it; the end of the stream
// is an unexpected end here, since an answer is always due.
func readMore(nc net.Conn, buf []byte) ([]byte, error) {
	if cap(buf)-len(buf) < 4<<10 {
		buf = slices.Grow(buf, 16<<10)
	}
	n, err := nc.Read(buf[len(buf):cap(buf)])
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return buf[:len(buf)+n], err
}

// parse consumes the complete answers at the start of c.in.
func (c *conn) parse(now time.Time) error {
	done := 0
	for {
		status, bodyAt, size, err := parseAnswer(c.in[done:])
		if err != nil {
			return err
		}
		if size == 0 {
			break
		}
		if len(c.sent) == 0 {
			return errors.New("httpload: an answer to no request")
		}
		if c.cfg.Check != nil {
			if err := c.cfg.Check(c.ids[0], status, c.in[done+bodyAt:done+size]); err != nil {
				return fmt.Errorf("httpload: request %d: %w", c.ids[0], err)
			}
		}
		c.status[status]++
		c.latencies = append(c.latencies, now.Sub(c.sent[0]))
		c.sent, c.ids = c.sent[1:], c.ids[1:]
		c.answered++
		done += size
	}
	c.in = append(c.in[:0], c.in[done:]...)
	if len(c.sent) == 0 {
		c.sent, c.ids = c.sent[:0:0], c.ids[:0:0] // let the backing arrays go when idle
	}
	return nil
}

var (
	headEnd         = []byte("\r\n\r\n")
	contentLength   = []byte("\r\ncontent-length:")
	connectionClose = []byte("\r\nconnection: close\r\n")
)

// parseAnswer returns the status, where the body starts and the size of
// the answer at the start of b, or size 0 when b does not yet hold all of
// it.
func parseAnswer(b []byte) (status, bodyAt, size int, err error) {
	end := bytes.Index(b, headEnd)
	if end < 0 {
		if len(b) > 64<<10 {
			return 0, 0, 0, errors.New("httpload: answer headers over 64 KiB")
		}
		return 0, 0, 0, nil
	}
	head := b[:end+2]
	if len(head) < 13 || !bytes.HasPrefix(head, []byte("HTTP/1.1 ")) {
		return 0, 0, 0, fmt.Errorf("httpload: not an HTTP/1.1 answer: %q", head[:min(len(head), 40)])
	}
	for _, d := range head[9:12] {
		if d < '0' || d > '9' {
			return 0, 0, 0, fmt.Errorf("httpload: bad status line %q", head[:min(len(head), 40)])
		}
		status = status*10 + int(d-'0')
	}
	if head[12] != ' ' && head[12] != '\r' {
		return 0, 0, 0, fmt.Errorf("httpload: bad status line %q", head[:min(len(head), 40)])
	}
	i := indexFold(head, contentLength)
	if i < 0 {
		return 0, 0, 0, errors.New("httpload: an answer without Content-Length")
	}
	v := bytes.Trim(head[i+len(contentLength):][:bytes.IndexByte(head[i+len(contentLength):], '\r')], " \t")
	n := 0
	for _, d := range v {
		if d < '0' || d > '9' {
			return 0, 0, 0, fmt.Errorf("httpload: bad Content-Length %q", v)
		}
		n = n*10 + int(d-'0')
	}
	if len(v) == 0 || len(v) > 12 {
		return 0, 0, 0, fmt.Errorf("httpload: bad Content-Length %q", v)
	}
	bodyAt = end + len(headEnd)
	size = bodyAt + n
	if len(b) < size {
		return 0, 0, 0, nil
	}
	return status, bodyAt, size, nil
}

// indexFold is bytes.Index ignoring ASCII case; sep is lower case.
func indexFold(b, sep []byte) int {
	for i := 0; i+len(sep) <= len(b); i++ {
		j := 0
		for ; j < len(sep); j++ {
			c := b[i+j]
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			if c != sep[j] {
				break
			}
		}
		if j == len(sep) {
			return i
		}
	}
	return -1
}

// Conn is one keep-alive connection that sends a request and waits for its
// answer. A failed request closes it, and so does an answer that says
// Connection: close; the next Do dials again. It never retries: a request
// sent on a connection the server has just closed fails. Not safe for
// concurrent use.
type Conn struct {
	addr    string
	timeout time.Duration
	nc      net.Conn
	in      []byte
}

// NewConn returns a Conn to addr whose requests each get timeout to be
// answered. It dials on the first Do.
func NewConn(addr string, timeout time.Duration) *Conn {
	return &Conn{addr: addr, timeout: timeout}
}

// Do sends req, the raw bytes of one keep-alive request, and returns the
// answer's status and body. The body is valid until the next Do.
func (c *Conn) Do(req []byte) (status int, body []byte, err error) {
	if c.nc == nil {
		if c.nc, err = net.DialTimeout("tcp", c.addr, c.timeout); err != nil {
			c.nc = nil
			return 0, nil, fmt.Errorf("httpload: %w", err)
		}
	}
	defer func() {
		if err != nil {
			c.Close()
		}
	}()
	if err := c.nc.SetDeadline(time.Now().Add(c.timeout)); err != nil {
		return 0, nil, fmt.Errorf("httpload: %w", err)
	}
	if _, err := c.nc.Write(req); err != nil {
		return 0, nil, fmt.Errorf("httpload: write: %w", err)
	}
	c.in = c.in[:0]
	for {
		var rerr error
		c.in, rerr = readMore(c.nc, c.in)
		status, bodyAt, size, err := parseAnswer(c.in)
		switch {
		case err != nil:
			return 0, nil, err
		case size > 0 && size != len(c.in):
			return 0, nil, errors.New("httpload: bytes after the answer")
		case size > 0:
			if indexFold(c.in[:bodyAt], connectionClose) >= 0 {
				// The server closes after this answer: the next Do dials.
				// The body stays readable in c.in until then.
				_ = c.nc.Close()
				c.nc = nil
			}
			return status, c.in[bodyAt:size], nil
		case rerr != nil:
			return 0, nil, fmt.Errorf("httpload: read: %w", rerr)
		}
	}
}

// Close closes the connection; a later Do dials again.
func (c *Conn) Close() {
	if c.nc != nil {
		_ = c.nc.Close()
		c.nc = nil
	}
}
