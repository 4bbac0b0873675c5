package httpapi

// Connection admission and closing: the caps on open connections,
// enforced before fasthttp sees a connection so that a refused one is
// answered in problem+json with Retry-After like every other refusal
// (fasthttp's own caps answer in plain text); a lingering close, so that
// an answer the server closes after (a refusal, a body over the limit)
// reaches the client instead of a reset; and accepting through running
// out of file descriptors.
//
// # File descriptors
//
// Every open connection holds a file descriptor, and so does every
// lingering one, and the process may hold RLIMIT_NOFILE in all. Past the
// limit accept fails with EMFILE, and fasthttp takes any accept error but
// a timeout for the listener's end: Serve returned and the server never
// answered again, though the connections went away a moment later. Two
// defences:
//
//	F1. The caps fit the limit (fitConns): ConnsMax and the lingering
//	    connections of the API listener, plus the admin listener's, plus
//	    Config.FilesReserved for the store and the process's own, stay
//	    within RLIMIT_NOFILE. A connection past ConnsMax is refused with
//	    503 overloaded and closed, and the process keeps descriptors for
//	    its store files.
//	F2. An accept that fails for want of a resource that closing
//	    connections gives back — EMFILE, ENFILE, ENOBUFS, ENOMEM — pauses
//	    the listener (5 ms, doubling to 1 s) and tries again; it is
//	    counted in slotd_http_accept_errors_total and logged when the
//	    pause begins, every acceptLogInterval while it lasts, and when it
//	    ends. The clients wait in the kernel's listen queue meanwhile.
//	    Something else may still take the descriptors (the store beyond
//	    its reserve, another process for ENFILE): F1 alone is not enough.

import (
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"
	"go.uber.org/zap"

	"slotd/api"
)

const (
	// lingerMax bounds how long a closing connection stays open: its
	// answer is written, the sending side closed, and what the client
	// still sends is read and dropped until it closes too. Closing at once
	// with a request unread (a body over the limit, a refused connection)
	// makes the kernel reset the connection, and the client loses the
	// answer.
	lingerMax = time.Second
	// lingerBytesMax bounds what a lingering connection reads.
	lingerBytesMax = 1 << 20
	// lingeringMax bounds the API connections lingering at once; beyond it
	// a connection closes at once (and a refused one without an answer).
	// fitConns lowers it under a low descriptor limit.
	lingeringMax = 1024

	// acceptPauseMin and acceptPauseMax bound the pause after an accept
	// that failed for want of descriptors or memory (F2): short enough
	// that a client barely notices a brief shortage, long enough that a
	// lasting one does not spin a core.
	acceptPauseMin = 5 * time.Millisecond
	acceptPauseMax = time.Second
	// acceptLogInterval spaces the log lines of a lasting pause.
	acceptLogInterval = 10 * time.Second

	// connsFitMin is the fewest API connections a descriptor limit must
	// leave room for; under it New refuses to start.
	connsFitMin = 16

	// listenerAPI and listenerAdmin are the listener label of the
	// connection metrics.
	listenerAPI   = "api"
	listenerAdmin = "admin"
)

// exhaustion lists the accept errors that mean the process or the system
// ran out of something that closing connections gives back: file
// descriptors of the process (EMFILE) or the system (ENFILE), socket
// buffers (ENOBUFS), kernel memory (ENOMEM). They pause the listener
// (F2); every other accept error ends it. reason is the metric's label.
var exhaustion = [...]struct {
	errno  syscall.Errno
	reason string
}{
	{syscall.EMFILE, "emfile"},
	{syscall.ENFILE, "enfile"},
	{syscall.ENOBUFS, "enobufs"},
	{syscall.ENOMEM, "enomem"},
}

// exhausted returns the reason label of an accept error that F2 pauses
// for, or "".
func exhausted(err error) string {
	for _, e := range exhaustion {
		if errors.Is(err, e.errno) {
			return e.reason
		}
	}
	return ""
}

// fitConns returns the caps that keep the process within limit file
// descriptors (F1): API connections and lingering API connections, after
// reserved descriptors for the rest of the process and the admin
// listener's adminFilesMax. A limit of 0 (unknown) leaves ConnsMax as
// configured. It fails when the limit leaves fewer than connsFitMin
// connections.
func fitConns(limit, reserved int) (conns, lingering int, err error) {
	if limit <= 0 {
		return math.MaxInt, lingeringMax, nil
	}
	budget := limit - reserved - adminFilesMax
	// A refused connection lingers to deliver its answer; an eighth of
	// the descriptors is plenty for that, and a low limit keeps the rest
	// for connections that are served.
	lingering = min(lingeringMax, max(1, budget/8))
	conns = budget - lingering
	if conns < connsFitMin {
		return 0, 0, fmt.Errorf("httpapi: the process may open %d files (RLIMIT_NOFILE), which leaves %d for API connections "+
			"after %d for the store and the process (FilesReserved) and %d for the admin listener; at least %d are needed: "+
			"raise the limit (ulimit -n, systemd LimitNOFILE=)", limit, max(0, conns), reserved, adminFilesMax, connsFitMin)
	}
	return conns, lingering, nil
}

// connAdmission counts the open connections of one kind of listener (the
// API's, or the admin's), in total and per client address, over all the
// listeners it serves, and answers the ones beyond connsMax (503
// overloaded) or perIPMax (429 rate_limited) itself, then closes them.
// Safe for concurrent use.
type connAdmission struct {
	s *Server
	// listener is the metric label: listenerAPI or listenerAdmin. Only
	// the API's refusals count as API requests in the request metrics.
	listener           string
	connsMax, perIPMax int
	// stop ends a pause of F2 early: the API's is Shutdown's start; the
	// admin listener's is nil, as it serves through the drain and its
	// pause ends by itself within acceptPauseMax.
	stop <-chan struct{}

	lingering semaphore // one slot per lingering connection

	mu    sync.Mutex
	total int                // open admitted connections; guarded by mu
	perIP map[netip.Addr]int // open admitted connections per address; guarded by mu
}

func newConnAdmission(s *Server, listener string, connsMax, perIPMax, lingering int, stop <-chan struct{}) *connAdmission {
	return &connAdmission{s: s, listener: listener, connsMax: connsMax, perIPMax: perIPMax, stop: stop,
		lingering: make(semaphore, lingering), perIP: make(map[netip.Addr]int)}
}

// open returns the open admitted connections.
func (l *connAdmission) open() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.total
}

// admitListener admits the connections of one listener through a
// connAdmission, and pauses through resource exhaustion (F2). Accept is
// called by the server's accept loop; it is safe for concurrent use all
// the same.
type admitListener struct {
	net.Listener
	l *connAdmission

	mu sync.Mutex
	// The run of exhausted accepts in progress; guarded by mu.
	failures int           // since the last accept that succeeded
	pause    time.Duration // the next pause
	began    time.Time     // when the run began
	logged   time.Time     // when it was last logged
}

func (al *admitListener) Accept() (net.Conn, error) {
	l := al.l
	for {
		c, err := al.Listener.Accept()
		if err != nil {
			reason := exhausted(err)
			if reason == "" {
				return nil, err
			}
			if !al.wait(reason, err) {
				// Shutdown began: end the accept loop as a closed
				// listener does (fasthttp's Serve then returns nil).
				return nil, net.ErrClosed
			}
			continue
		}
		al.resumed()
		ip := remoteIP(c)
		if p, refused := l.admit(ip); refused {
			l.refuse(c, &p)
			continue
		}
		return &admittedConn{Conn: c, l: l, ip: ip}, nil
	}
}

// wait counts and logs an exhausted accept and pauses before the next
// one. It returns false if the admission's stop came meanwhile.
func (al *admitListener) wait(reason string, err error) bool {
	l := al.l
	l.s.acceptErrors.WithLabelValues(l.listener, reason).Inc()
	now := time.Now()
	al.mu.Lock()
	al.failures++
	if al.failures == 1 {
		al.began, al.pause = now, acceptPauseMin
	}
	pause := al.pause
	al.pause = min(2*al.pause, acceptPauseMax)
	first := al.failures == 1
	logNow := first || now.Sub(al.logged) >= acceptLogInterval
	if logNow {
		al.logged = now
	}
	failures, began := al.failures, al.began
	al.mu.Unlock()
	if logNow {
		msg := "accept paused: out of file descriptors or memory"
		if !first {
			msg = "accept still paused: out of file descriptors or memory"
		}
		l.s.log.Warn(msg, zap.String("listener", l.listener), zap.Error(err), zap.Int("failures", failures),
			zap.Duration("paused_for", now.Sub(began)), zap.Int("conns", l.open()), zap.Int("conns_max", l.connsMax),
			zap.String("hint", "compare process_open_fds with process_max_fds; raise LimitNOFILE or lower the connection caps"))
	}
	t := time.NewTimer(pause)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-l.stop:
		return false
	}
}

// resumed ends a run of exhausted accepts, if one was in progress, with a
// log line.
func (al *admitListener) resumed() {
	al.mu.Lock()
	failures, began := al.failures, al.began
	al.failures = 0
	al.mu.Unlock()
	if failures > 0 {
		al.l.s.log.Info("accept resumed", zap.String("listener", al.l.listener), zap.Int("failures", failures),
			zap.Duration("paused_for", time.Since(began)))
	}
}

// admit counts a new connection from ip, or says why it is refused.
func (l *connAdmission) admit(ip netip.Addr) (problem, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.total >= l.connsMax {
		return problem{code: api.CodeOverloaded, retryAfterSeconds: retryAfterOverloadedSeconds,
			detail: "the server holds its maximum of " + strconv.Itoa(l.connsMax) + " open connections; retry after the pause"}, true
	}
	if ip.IsValid() && l.perIP[ip] >= l.perIPMax {
		return problem{code: api.CodeRateLimited, retryAfterSeconds: retryAfterOverloadedSeconds,
			detail: "this address already holds " + strconv.Itoa(l.perIPMax) + " open connections, the most allowed; reuse them (keep-alive) or close some"}, true
	}
	l.total++
	if ip.IsValid() {
		l.perIP[ip]++
	}
	return problem{}, false
}

func (l *connAdmission) release(ip netip.Addr) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.total--
	if !ip.IsValid() {
		return
	}
	if n := l.perIP[ip] - 1; n > 0 {
		l.perIP[ip] = n
	} else {
		delete(l.perIP, ip)
	}
}

// refuse answers c with p and closes it. The request, if the client sent
// one, is not served.
func (l *connAdmission) refuse(c net.Conn, p *problem) {
	info := codes[p.code]
	if l.listener == listenerAPI {
		l.s.m.observe(nil, "", info.Status, 0)
		if p.code == api.CodeRateLimited {
			l.s.m.limitedConns.Inc()
		}
	}
	body := appendProblem(nil, p)
	b := make([]byte, 0, 256+len(body))
	b = append(b, "HTTP/1.1 "...)
	b = strconv.AppendInt(b, int64(info.Status), 10)
	b = append(b, ' ')
	b = append(b, fasthttp.StatusMessage(info.Status)...)
	b = append(b, "\r\nConnection: close\r\nContent-Type: "+contentProblem+"\r\nRetry-After: "...)
	b = strconv.AppendInt(b, int64(p.retryAfterSeconds), 10)
	b = append(b, "\r\nContent-Length: "...)
	b = strconv.AppendInt(b, int64(len(body)), 10)
	b = append(b, "\r\n\r\n"...)
	b = append(b, body...)
	l.linger(c, b)
}

// linger writes answer (if any) to c and closes it without losing the
// answer to a reset (lingerMax), on its own goroutine so that a slow
// client holds up neither the accept loop nor a server worker.
func (l *connAdmission) linger(c net.Conn, answer []byte) {
	if !l.lingering.tryAcquire() {
		_ = c.Close()
		return
	}
	go func() {
		defer l.lingering.release()
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(lingerMax))
		if len(answer) > 0 {
			if _, err := c.Write(answer); err != nil {
				return
			}
		}
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
		_, _ = io.Copy(io.Discard, io.LimitReader(c, lingerBytesMax))
	}()
}

// admittedConn gives its place back once, on the first Close, and closes
// by lingering (the server may close with a request still arriving: a
// body over the limit). Safe for concurrent use, as a net.Conn is.
type admittedConn struct {
	net.Conn
	l      *connAdmission
	ip     netip.Addr
	closed atomic.Bool
}

func (c *admittedConn) Close() error {
	if c.closed.CompareAndSwap(false, true) {
		c.l.release(c.ip)
		c.l.linger(c.Conn, nil)
	}
	return nil
}

// remoteIP is the peer's address without port, IPv4 in IPv4 form; the
// zero Addr (not counted per address) when the listener is not TCP.
func remoteIP(c net.Conn) netip.Addr {
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		ip, _ := netip.AddrFromSlice(a.IP)
		return ip.Unmap()
	}
	return netip.Addr{}
}

// connCollector exports, at scrape time, the open connections and the cap
// of each kind of listener. Safe for concurrent use.
type connCollector struct{ admissions []*connAdmission }

var (
	descConns    = prometheus.NewDesc(metricConnections, "Open connections by listener (api, admin).", []string{"listener"}, nil)
	descConnsMax = prometheus.NewDesc(metricConnectionsMax, "The cap on open connections by listener; the API's fits the file descriptor limit.", []string{"listener"}, nil)
)

func (c *connCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descConns
	ch <- descConnsMax
}

func (c *connCollector) Collect(ch chan<- prometheus.Metric) {
	for _, l := range c.admissions {
		ch <- prometheus.MustNewConstMetric(descConns, prometheus.GaugeValue, float64(l.open()), l.listener)
		ch <- prometheus.MustNewConstMetric(descConnsMax, prometheus.GaugeValue, float64(l.connsMax), l.listener)
	}
}

// registerConnMetrics registers the connection metrics of the
// admissions and returns the counter of exhausted accepts (F2).
func registerConnMetrics(reg *prometheus.Registry, admissions ...*connAdmission) (*prometheus.CounterVec, error) {
	acceptErrors := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: metricAcceptErrors,
		Help: "Accepts that failed for want of file descriptors (reason emfile, enfile) or memory (enobufs, enomem), by listener; each pauses the listener before it tries again.",
	}, []string{"listener", "reason"})
	for _, c := range []prometheus.Collector{acceptErrors, &connCollector{admissions: admissions}} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return acceptErrors, nil
}
