package clustertest

import (
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// proxy forwards TCP connections to target until cut: a link between two
// nodes that the test can break (a partition) and mend. A proxy every
// node dials (the Raft address a node was added with, which every member
// learns from the change) tells its connections apart by the node that
// dialled them (source), so that one node's traffic through it can be
// cut alone (cutFrom).
type proxy struct {
	ln     net.Listener
	target string
	// source names the node that opened a connection, 0 when unknown;
	// nil for a proxy between two nodes.
	source  func(net.Conn) int
	mu      sync.Mutex
	cut     bool
	cutFrom map[int]bool
	conns   map[net.Conn]int // the node that dialled, when source is set
}

func newProxy(t *testing.T, target string) *proxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, target: target, cutFrom: map[int]bool{}, conns: map[net.Conn]int{}}
	go p.accept()
	t.Cleanup(func() { ln.Close(); p.setCut(true) })
	return p
}

func (p *proxy) addr() string { return p.ln.Addr().String() }

func (p *proxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		go p.serve(c)
	}
}

func (p *proxy) serve(c net.Conn) {
	from := 0
	if p.source != nil {
		// A connection whose node is not found is refused: the node dials
		// again, and a partition never lets one through.
		if from = p.source(c); from == 0 {
			c.Close()
			return
		}
	}
	p.mu.Lock()
	if p.cut || p.cutFrom[from] {
		p.mu.Unlock()
		c.Close()
		return
	}
	p.conns[c] = from
	p.mu.Unlock()
	up, err := net.Dial("tcp", p.target)
	if err != nil {
		p.drop(c)
		return
	}
	p.mu.Lock()
	if p.cut || p.cutFrom[from] {
		p.mu.Unlock()
		up.Close()
		p.drop(c)
		return
	}
	p.conns[up] = from
	p.mu.Unlock()
	go func() { io.Copy(up, c); p.drop(up); p.drop(c) }()
	io.Copy(c, up)
	p.drop(c)
	p.drop(up)
}

func (p *proxy) drop(c net.Conn) {
	c.Close()
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
}

// setCut breaks the link (closing every connection) or mends it.
func (p *proxy) setCut(cut bool) {
	p.mu.Lock()
	p.cut = cut
	var open []net.Conn
	if cut {
		for c := range p.conns {
			open = append(open, c)
		}
	}
	p.mu.Unlock()
	for _, c := range open {
		c.Close()
	}
}

// setCutFrom breaks the link for the connections node from dials
// (closing those open) or mends it.
func (p *proxy) setCutFrom(from int, cut bool) {
	p.mu.Lock()
	p.cutFrom[from] = cut
	var open []net.Conn
	if cut {
		for c, f := range p.conns {
			if f == from {
				open = append(open, c)
			}
		}
	}
	p.mu.Unlock()
	for _, c := range open {
		c.Close()
	}
}

// dialler returns a proxy's source: the node among c's that holds the
// other end of an accepted loopback connection, found through
// /proc/net/tcp (the socket's inode) and the nodes' open files; 0 when
// none does.
func (c *cluster) dialler(conn net.Conn) int {
	remote, ok := conn.RemoteAddr().(*net.TCPAddr)
	local, ok2 := conn.LocalAddr().(*net.TCPAddr)
	if !ok || !ok2 {
		return 0
	}
	inode := ""
	for _, file := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, err := os.ReadFile(file)
		if err != nil {
			continue
		}
		for line := range strings.SplitSeq(string(b), "\n") {
			f := strings.Fields(line)
			if len(f) < 10 || !strings.HasSuffix(f[1], fmt.Sprintf(":%04X", remote.Port)) || !strings.HasSuffix(f[2], fmt.Sprintf(":%04X", local.Port)) {
				continue
			}
			inode = f[9]
		}
	}
	if inode == "" {
		return 0
	}
	want := "socket:[" + inode + "]"
	for _, n := range c.members() {
		n.mu.Lock()
		cmd := n.cmd
		n.mu.Unlock()
		if cmd == nil || cmd.Process == nil {
			continue
		}
		dir := fmt.Sprintf("/proc/%d/fd", cmd.Process.Pid)
		fds, _ := os.ReadDir(dir)
		for _, fd := range fds {
			if l, err := os.Readlink(filepath.Join(dir, fd.Name())); err == nil && l == want {
				return n.id
			}
		}
	}
	return 0
}
