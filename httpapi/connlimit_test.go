package httpapi

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap/zapcore"

	"slotd/allocator"
	"slotd/api"
	"slotd/internal/slotdtest"
	"slotd/internal/slotdtest/testtime"
)

// rawGet sends one request on conn and reads the answer, body included.
func rawGet(t *testing.T, conn net.Conn) (*http.Response, []byte, error) {
	t.Helper()
	conn.SetDeadline(time.Now().Add(20 * time.Second)) // a bound, not an assertion
	io.WriteString(conn, "GET /v1/offices HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "+keyPortal+"\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return nil, nil, err
	}
	body, err := io.ReadAll(resp.Body)
	return resp, body, err
}

// wantProblem checks that resp is the problem+json answer with the code,
// the status and a Retry-After, on a connection the server closes.
func wantProblem(t *testing.T, what string, resp *http.Response, body []byte, status int, code string) {
	t.Helper()
	var p struct {
		Status int    `json:"status"`
		Code   string `json:"code"`
		Detail string `json:"detail"`
	}
	if resp.StatusCode != status || resp.Header.Get("Content-Type") != contentProblem || !resp.Close {
		t.Fatalf("%s: %d %q close %v, want %d %s closed", what, resp.StatusCode, resp.Header.Get("Content-Type"), resp.Close, status, contentProblem)
	}
	if err := json.Unmarshal(body, &p); err != nil || p.Code != code || p.Status != status || p.Detail == "" {
		t.Fatalf("%s: body %s (%v), want code %s", what, body, err, code)
	}
	if status == http.StatusTooManyRequests || status == http.StatusServiceUnavailable {
		if resp.Header.Get("Retry-After") == "" {
			t.Fatalf("%s: no Retry-After", what)
		}
	}
}

// ConnsPerIPMax and ConnsMax: connections beyond a cap are answered with
// a problem (429 rate_limited, 503 overloaded) and closed, while the ones
// within it keep working, and a closed one frees its place.
func TestConnectionsCapped(t *testing.T) {
	for _, tc := range []struct {
		name   string
		cfg    func(*Config)
		status int
		code   string
	}{
		{"per address", func(c *Config) { c.ConnsPerIPMax = 2 }, http.StatusTooManyRequests, api.CodeRateLimited},
		{"in total", func(c *Config) { c.ConnsMax = 2 }, http.StatusServiceUnavailable, api.CodeOverloaded},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, tc.cfg)
			addr := strings.TrimPrefix(e.url, "http://")
			dial := func() net.Conn {
				c, err := net.Dial("tcp", addr)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { c.Close() })
				return c
			}
			var kept []net.Conn
			for i := 0; i < 2; i++ {
				c := dial()
				if resp, _, err := rawGet(t, c); err != nil || resp.StatusCode != 200 {
					t.Fatalf("connection %d within the cap: %v %v", i, resp, err)
				}
				kept = append(kept, c)
			}
			resp, body, err := rawGet(t, dial())
			if err != nil {
				t.Fatalf("third connection: %v", err)
			}
			wantProblem(t, "third connection", resp, body, tc.status, tc.code)
			if resp, _, err := rawGet(t, kept[0]); err != nil || resp.StatusCode != 200 {
				t.Fatalf("a connection within the cap stopped working: %v %v", resp, err)
			}
			// Closing one frees its place (the server sees the close
			// when it next reads, so poll).
			kept[1].Close()
			testtime.Eventually(t, waitMax, "a closed connection's place to free", func() error {
				resp, _, err := rawGet(t, dial())
				if err != nil {
					return err
				}
				if resp.StatusCode != 200 {
					return fmt.Errorf("a new connection is answered %d", resp.StatusCode)
				}
				return nil
			})
		})
	}
}

// A body over the limit is answered 413 even while the client is still
// sending it: the server reads and drops the rest before closing, so the
// client's write is not cut off by a reset, and it reads the answer and
// then a clean end of the connection. Closing at once with the sent part
// of the body unread would make the kernel reset the connection.
func TestBodyOverLimitAnswerArrives(t *testing.T) {
	e := newEnv(t, nil)
	addr := strings.TrimPrefix(e.url, "http://")
	for i := 0; i < 3; i++ {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		conn.SetDeadline(time.Now().Add(20 * time.Second)) // a bound, not an assertion
		io.WriteString(conn, "POST /v1/bookings HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "+keyPortal+
			"\r\nContent-Type: application/json\r\nContent-Length: 10000000\r\n\r\n")
		conn.Write(make([]byte, 64<<10)) // part of the announced body, which the server never reads
		br := bufio.NewReader(conn)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("reading the answer: %v", err)
		}
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatalf("reading the answer's body: %v", err)
		}
		wantProblem(t, "body over the limit", resp, body, http.StatusRequestEntityTooLarge, api.CodeBodyTooLarge)
		if _, err := io.ReadAll(br); err != nil {
			t.Fatalf("the connection ended with %v, not a clean close", err)
		}
		conn.Close()
	}
}

// writeCountingListener counts the Write calls on its connections.
type writeCountingListener struct {
	net.Listener
	writes *atomic.Int64
}

func (l writeCountingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return writeCountingConn{Conn: c, writes: l.writes}, nil
}

type writeCountingConn struct {
	net.Conn
	writes *atomic.Int64
}

func (c writeCountingConn) Write(b []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(b)
}

// The largest availability answer of a day, 288 starts of 256 windows,
// is sent in one write system call: the write buffer holds it, headers
// included. fasthttp would split it in two (the admitted connection is
// not a bare TCP connection, so no writev), one more system call in an
// answer that costs a few.
func TestLargestSlotsAnswerInOneWrite(t *testing.T) {
	e := newEnv(t, nil)
	cfg := slotdtest.BenchOffice(0)
	cfg.ID, cfg.SlotMinutes, cfg.Windows = "office-full-day", 5, 256
	if _, err := e.eng.PutOffice(t0, cfg, allocator.Meta{Actor: "setup"}); err != nil {
		t.Fatal(err)
	}
	var writes atomic.Int64
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go e.srv.Serve(writeCountingListener{Listener: ln, writes: &writes})
	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(20 * time.Second)) // a bound, not an assertion
	br := bufio.NewReader(conn)
	for i := range 3 {
		before := writes.Load()
		io.WriteString(conn, "GET /v1/offices/office-full-day/days/2026-12-01/slots?service=s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "+keyPortal+"\r\n\r\n")
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("answer %d: %d %s %v", i, resp.StatusCode, body, err)
		}
		if n := strings.Count(string(body), `"free":256}`); n != 288 {
			t.Fatalf("answer %d lists %d free starts of 256 windows, want 288: %.200s", i, n, body)
		}
		if n := writes.Load() - before; n != 1 {
			t.Fatalf("answer %d (%d bytes of body) took %d writes, want 1", i, len(body), n)
		}
	}
}

// exhaustedListener fails its first failures accepts as a listener out
// of file descriptors does, then hands out conn; with failures < 0 it
// fails for ever. Accept is called by one goroutine at a time.
type exhaustedListener struct {
	net.Listener
	failures int
	errno    syscall.Errno
	conn     net.Conn
}

func (l *exhaustedListener) Accept() (net.Conn, error) {
	if l.failures != 0 {
		l.failures--
		return nil, &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", l.errno)}
	}
	return l.conn, nil
}

// An accept that fails for want of file descriptors or memory pauses and
// tries again (connlimit.go, F2): it is counted by listener and reason,
// logged when the pause begins and when it ends, and Accept hands out the
// next connection as if nothing happened. Any other error ends Accept,
// and so does Shutdown during a pause.
func TestAcceptPausesThroughExhaustion(t *testing.T) {
	e := newEnv(t, nil)
	for _, tc := range []struct {
		errno    syscall.Errno
		reason   string
		failures int
	}{{syscall.EMFILE, "emfile", 5}, {syscall.ENFILE, "enfile", 1}, {syscall.ENOBUFS, "enobufs", 2}, {syscall.ENOMEM, "enomem", 1}} {
		server, client := net.Pipe()
		al := &admitListener{Listener: &exhaustedListener{failures: tc.failures, errno: tc.errno, conn: server}, l: e.srv.conns}
		c, err := al.Accept()
		if err != nil {
			t.Fatalf("%s: Accept: %v", tc.reason, err)
		}
		c.Close()
		client.Close()
		if n := testutil.ToFloat64(e.srv.acceptErrors.WithLabelValues(listenerAPI, tc.reason)); n != float64(tc.failures) {
			t.Fatalf("%s: %s %g, want %d", tc.reason, metricAcceptErrors, n, tc.failures)
		}
	}
	if n := e.logs.FilterMessage("accept paused: out of file descriptors or memory").Len(); n != 4 {
		t.Fatalf("%d lines when a pause began, want one for each of 4 runs", n)
	}
	resumed := e.logs.FilterMessage("accept resumed").All()
	if len(resumed) != 4 || resumed[0].ContextMap()["failures"] != int64(5) {
		t.Fatalf("lines when a pause ended: %v", resumed)
	}

	// Another error is the listener's end.
	al := &admitListener{Listener: &exhaustedListener{failures: 1, errno: syscall.EINVAL}, l: e.srv.conns}
	if _, err := al.Accept(); !errors.Is(err, syscall.EINVAL) {
		t.Fatalf("EINVAL: Accept returned %v", err)
	}

	// Shutdown ends a pause: Accept returns as from a closed listener.
	al = &admitListener{Listener: &exhaustedListener{failures: -1, errno: syscall.EMFILE}, l: e.srv.conns}
	done := make(chan error, 1)
	go func() { _, err := al.Accept(); done <- err }()
	testtime.Eventually(t, waitMax, "the pause to begin", func() error {
		if n := testutil.ToFloat64(e.srv.acceptErrors.WithLabelValues(listenerAPI, "emfile")); n <= 5 {
			return fmt.Errorf("%g EMFILE accept errors counted, want more than 5", n)
		}
		return nil
	})
	ctx, cancel := contextWithTimeout(10 * time.Second)
	defer cancel()
	if err := e.srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-done; !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Accept during Shutdown returned %v, want net.ErrClosed", err)
	}
}

// The connection caps fit the file descriptor limit (connlimit.go, F1).
func TestFitConns(t *testing.T) {
	f := func(limit, reserved, conns, lingering int) {
		t.Helper()
		c, l, err := fitConns(limit, reserved)
		if err != nil || c != conns || l != lingering {
			t.Fatalf("fitConns(%d, %d) = %d, %d, %v; want %d, %d", limit, reserved, c, l, err, conns, lingering)
		}
		if limit > 0 && c+l+reserved+adminFilesMax != limit {
			t.Fatalf("fitConns(%d, %d): %d + %d + %d + %d is not the limit", limit, reserved, c, l, reserved, adminFilesMax)
		}
	}
	f(0, 64, math.MaxInt, lingeringMax) // no limit known: ConnsMax as configured
	f(256, 64, 112, 16)                 // a low limit: an eighth of what is left lingers
	f(20000, 1128, 20000-1128-adminFilesMax-lingeringMax, lingeringMax)
	f(1<<20, 64, 1<<20-64-adminFilesMax-lingeringMax, lingeringMax)
	if _, _, err := fitConns(128, 64); err == nil || !strings.Contains(err.Error(), "RLIMIT_NOFILE") {
		t.Fatalf("a limit that leaves no room for connections: %v", err)
	}
}

// A configured ConnsMax above what the descriptor limit allows is lowered,
// and the log says so.
func TestConnsMaxLoweredToFileLimit(t *testing.T) {
	fit, _, err := fitConns(fileLimit(), DefaultFilesReserved)
	if err != nil || fit >= 1<<24 {
		t.Skipf("the descriptor limit %d allows any ConnsMax", fileLimit())
	}
	e := newEnv(t, func(c *Config) { c.ConnsMax = 1 << 24 })
	if e.srv.cfg.ConnsMax != fit || e.srv.conns.connsMax != fit {
		t.Fatalf("ConnsMax %d, admission %d; want %d", e.srv.cfg.ConnsMax, e.srv.conns.connsMax, fit)
	}
	lines := e.logs.FilterMessage("connection cap lowered to fit the file descriptor limit").All()
	if len(lines) != 1 || lines[0].Level != zapcore.WarnLevel || lines[0].ContextMap()["conns_max"] != int64(fit) {
		t.Fatalf("log lines: %v", lines)
	}
}

// The admin listener caps its connections: one past adminConnsMax is
// answered 503 and closed, and Shutdown ends ServeAdmin with nil.
func TestAdminListenerCapped(t *testing.T) {
	e := newEnv(t, nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- e.srv.ServeAdmin(ln) }()
	get := func(c net.Conn) (*http.Response, []byte, error) {
		c.SetDeadline(time.Now().Add(20 * time.Second)) // a bound, not an assertion
		io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			return nil, nil, err
		}
		body, err := io.ReadAll(resp.Body)
		return resp, body, err
	}
	var kept []net.Conn
	defer func() {
		for _, c := range kept {
			c.Close()
		}
	}()
	for i := range adminConnsMax + 1 {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		kept = append(kept, c)
		resp, body, err := get(c)
		if err != nil {
			t.Fatalf("admin connection %d: %v", i, err)
		}
		if i < adminConnsMax {
			if resp.StatusCode != 200 || string(body) != "ok\n" {
				t.Fatalf("admin connection %d: %d %q", i, resp.StatusCode, body)
			}
			continue
		}
		wantProblem(t, "admin connection past the cap", resp, body, http.StatusServiceUnavailable, api.CodeOverloaded)
	}
	ctx, cancel := contextWithTimeout(10 * time.Second)
	defer cancel()
	if err := e.srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-served; err != nil {
		t.Fatalf("ServeAdmin after Shutdown: %v", err)
	}
}
