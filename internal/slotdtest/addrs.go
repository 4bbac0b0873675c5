package slotdtest

import (
	"net"
	"testing"
)

// FreeAddrs returns n loopback addresses whose ports were free a moment
// ago, all held open together so that no two are the same: for processes
// the test starts on addresses it must name in advance (a cluster's
// -peers and -edges).
func FreeAddrs(tb testing.TB, n int) []string {
	tb.Helper()
	out := make([]string, 0, n)
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			tb.Fatal(err)
		}
		lns = append(lns, ln)
		out = append(out, ln.Addr().String())
	}
	return out
}
