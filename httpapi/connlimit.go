package httpapi

// Connection admission and closing: the caps on open connections,
// enforced before fasthttp sees a connection so that a refused one is
// answered in problem+json with Retry-After like every other refusal
// (fasthttp's own caps answer in plain text); and a lingering close, so
// that an answer the server closes after (a refusal, a body over the
// limit) reaches the client instead of a reset.

import (
	"io"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"

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
	// lingeringMax bounds the connections lingering at once; beyond it a
	// connection closes at once (and a refused one without an answer).
	lingeringMax = 1024
)

// connAdmission counts the server's open connections, in total and per
// client address, over all its listeners, and answers the ones beyond
// Config.ConnsMax (503 overloaded) or Config.ConnsPerIPMax (429
// rate_limited) itself, then closes them. Safe for concurrent use.
type connAdmission struct {
	s *Server

	lingering semaphore // one slot per lingering connection

	mu    sync.Mutex
	total int                // open admitted connections; guarded by mu
	perIP map[netip.Addr]int // open admitted connections per address; guarded by mu
}

func newConnAdmission(s *Server) *connAdmission {
	return &connAdmission{s: s, lingering: make(semaphore, lingeringMax), perIP: make(map[netip.Addr]int)}
}

// admitListener admits the connections of one listener through the
// server's connAdmission. Accept is called by fasthttp's accept loop.
type admitListener struct {
	net.Listener
	l *connAdmission
}

func (al admitListener) Accept() (net.Conn, error) {
	l := al.l
	for {
		c, err := al.Listener.Accept()
		if err != nil {
			return nil, err
		}
		ip := remoteIP(c)
		if p, refused := l.admit(ip); refused {
			l.refuse(c, &p)
			continue
		}
		return &admittedConn{Conn: c, l: l, ip: ip}, nil
	}
}

// admit counts a new connection from ip, or says why it is refused.
func (l *connAdmission) admit(ip netip.Addr) (problem, bool) {
	cfg := &l.s.cfg
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.total >= cfg.ConnsMax {
		return problem{code: api.CodeOverloaded, retryAfterSeconds: retryAfterOverloadedSeconds,
			detail: "the server holds its maximum of " + strconv.Itoa(cfg.ConnsMax) + " open connections; retry after the pause"}, true
	}
	if ip.IsValid() && l.perIP[ip] >= cfg.ConnsPerIPMax {
		return problem{code: api.CodeRateLimited, retryAfterSeconds: retryAfterOverloadedSeconds,
			detail: "this address already holds " + strconv.Itoa(cfg.ConnsPerIPMax) + " open connections, the most allowed; reuse them (keep-alive) or close some"}, true
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
	l.s.m.observe(nil, "", info.Status, 0)
	if p.code == api.CodeRateLimited {
		l.s.m.limitedConns.Inc()
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
