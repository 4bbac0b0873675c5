package clustertest

import (
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"slotd/internal/slotdtest/testtime"
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
	return newProxyFrom(t, target, nil)
}

// newProxyFrom is newProxy for a proxy that tells its connections apart
// by source.
func newProxyFrom(t *testing.T, target string, source func(net.Conn) int) *proxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, target: target, source: source, cutFrom: map[int]bool{}, conns: map[net.Conn]int{}}
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

// A proxy that tells its connections apart by the process that dialled
// them cuts one node's connections and keeps the other's: two processes
// (bash holding a connection open, standing in for nodes) dial one
// proxy; cut from node 1, only node 1's connection is closed (its
// process reads the end and exits).
func TestProxyCutsOneDialler(t *testing.T) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("no bash to dial with /dev/tcp")
	}
	target, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer target.Close()
	go func() {
		for {
			conn, err := target.Accept()
			if err != nil {
				return
			}
			go io.Copy(io.Discard, conn)
		}
	}()
	c := &cluster{t: t}
	p := newProxyFrom(t, target.Addr().String(), c.dialler)
	_, port, _ := net.SplitHostPort(p.addr())
	n1, n2 := &node{c: c, id: 1}, &node{c: c, id: 2}
	c.nodesMu.Lock()
	c.nodes = []*node{n1, n2}
	c.nodesMu.Unlock()
	t.Cleanup(func() { n1.kill(); n2.kill() })
	// Connects, then reads until the proxy closes the connection.
	dial := func(n *node) {
		cmd := exec.Command(bash, "-c", "exec 3<>/dev/tcp/127.0.0.1/"+port+" && cat <&3")
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		done := make(chan struct{})
		n.mu.Lock()
		defer n.mu.Unlock()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go func() { cmd.Wait(); close(done) }()
		n.cmd, n.done = cmd, done
	}
	held := func(id int) bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		for _, from := range p.conns {
			if from == id {
				return true
			}
		}
		return false
	}
	// A process that connects before its node records it is refused
	// (source 0) and exits: it is started again.
	testtime.Eventually(t, waitFor, "both nodes connected through the proxy", func() error {
		for _, n := range c.nodes {
			if !n.up() {
				dial(n)
			}
		}
		if !held(1) || !held(2) {
			return fmt.Errorf("node 1 connected: %v, node 2: %v", held(1), held(2))
		}
		return nil
	})
	p.setCutFrom(1, true)
	n1.wait()
	if !n2.up() || !held(2) {
		t.Fatal("cutting node 1 closed node 2's connection too")
	}
	if held(1) {
		t.Fatal("node 1's connection is still held")
	}
}
