//go:build unix

package httpapi

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"slotd/internal/slotdtest/testtime"
)

// The file descriptor test runs the server in a child process (this test
// binary again, told so by envFDChild), because it lowers the process's
// RLIMIT_NOFILE; the parent is the client, with descriptors to spare.
const (
	envFDChild = "SLOTD_TEST_FD_CHILD"
	// fdLimitChild is the child's RLIMIT_NOFILE: low, so that a few
	// hundred connections exhaust it.
	fdLimitChild = 256
	// fdSpareChild is how many descriptors the child leaves free in the
	// "exhausted" mode, where something else holds all the others.
	fdSpareChild = 8
)

// TestDefectFDExhaustionStopsServing: more connections than the process
// may open file descriptors. accept then fails with EMFILE, which fasthttp
// took for a permanent error: Serve returned and the server never
// answered again, though the connections went away. Now the connection
// cap is derived from the limit, so the descriptors do not run out
// ("cap"), and when something else has taken them ("exhausted") accept
// pauses, counts it, and carries on once descriptors are free again.
func TestDefectFDExhaustionStopsServing(t *testing.T) {
	if mode := os.Getenv(envFDChild); mode != "" {
		fdChild(t, mode)
		return
	}
	for _, mode := range []string{"cap", "exhausted"} {
		t.Run(mode, func(t *testing.T) { fdParent(t, mode) })
	}
}

// fdChild serves with RLIMIT_NOFILE lowered to fdLimitChild and reports
// on stdout: its address and cap, then, once stdin closes, the accept
// errors it counted.
func fdChild(t *testing.T, mode string) {
	lim := syscall.Rlimit{Cur: fdLimitChild, Max: fdLimitChild}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatalf("setrlimit: %v", err)
	}
	e := newEnv(t, nil)
	var held []*os.File
	if mode == "exhausted" {
		// Something else in the process (a store's files, say) takes
		// every descriptor but fdSpareChild.
		for {
			f, err := os.Open(os.DevNull)
			if err != nil {
				if !errors.Is(err, syscall.EMFILE) {
					t.Fatal(err)
				}
				break
			}
			held = append(held, f)
		}
		for _, f := range held[len(held)-fdSpareChild:] {
			f.Close()
		}
		held = held[:len(held)-fdSpareChild]
	}
	fmt.Printf("fdchild addr %s conns_max %d\n", strings.TrimPrefix(e.url, "http://"), e.srv.cfg.ConnsMax)
	io.Copy(io.Discard, os.Stdin) // until the parent is done
	fmt.Printf("fdchild accept_errors %g\n", gatherSum(t, e, metricAcceptErrors))
	runtime.KeepAlive(held)
}

// gatherSum adds up the samples of a counter family.
func gatherSum(t *testing.T, e *env, name string) float64 {
	mfs, err := e.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}

func fdParent(t *testing.T, mode string) {
	cmd := exec.Command(os.Args[0], "-test.run=^TestDefectFDExhaustionStopsServing$", "-test.count=1")
	cmd.Env = append(os.Environ(), envFDChild+"="+mode)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	t.Cleanup(func() {
		stdin.Close()
		cmd.Process.Kill()
		cmd.Wait()
	})
	report := func(key string) string {
		t.Helper()
		deadline := time.After(30 * time.Second)
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatalf("the child ended before it reported %s", key)
				}
				f := strings.Fields(l)
				for i := 0; i+2 < len(f); i++ {
					if f[0] == "fdchild" && f[i+1] == key {
						return f[i+2]
					}
				}
			case <-deadline:
				t.Fatalf("no %s from the child", key)
			}
		}
	}
	// The child reports its address and cap on one line.
	var addr, connsMax string
	for addr == "" {
		l, ok := <-lines
		if !ok {
			t.Fatal("the child ended before it reported its address")
		}
		if f := strings.Fields(l); len(f) == 5 && f[0] == "fdchild" && f[1] == "addr" {
			addr, connsMax = f[2], f[4]
		}
	}
	if mode == "cap" {
		if n, _ := strconv.Atoi(connsMax); n <= 0 || n >= fdLimitChild {
			t.Errorf("ConnsMax %s with RLIMIT_NOFILE %d: the cap leaves no room for the process's other files", connsMax, fdLimitChild)
		}
	}

	// More connections than the child has descriptors, each sending a
	// request; the parent holds them for a while, then closes them.
	const conns = fdLimitChild + 64
	hold := 10 * time.Second // "cap": every connection is answered or closed well before
	if mode == "exhausted" {
		hold = 2 * time.Second // most connections wait in the listen queue
	}
	var mu sync.Mutex
	outcomes := map[string]int{}
	var wg sync.WaitGroup
	var open []net.Conn
	for range conns {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatalf("dial: %v", err)
		}
		open = append(open, c)
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.SetDeadline(time.Now().Add(hold))
			outcome := "answered"
			if _, err := io.WriteString(c, "GET /v1/offices HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "+keyPortal+"\r\n\r\n"); err != nil {
				outcome = "closed"
			} else if _, err := bufio.NewReader(c).ReadString('\n'); err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					outcome = "waiting"
				} else {
					outcome = "closed"
				}
			}
			mu.Lock()
			outcomes[outcome]++
			mu.Unlock()
		}()
	}
	wg.Wait()
	for _, c := range open {
		c.Close()
	}
	t.Logf("%s: %d connections: %v", mode, conns, outcomes)
	if mode == "cap" && outcomes["waiting"] > 0 {
		t.Errorf("%d connections were neither answered nor closed: the server stopped accepting", outcomes["waiting"])
	}

	// The connections are gone: the server answers again.
	testtime.Eventually(t, 20*time.Second, mode+": the server to answer after the connections closed", func() error {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(time.Second))
		io.WriteString(c, "GET /v1/offices HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "+keyPortal+"\r\nConnection: close\r\n\r\n")
		if status, err := bufio.NewReader(c).ReadString('\n'); !strings.HasPrefix(status, "HTTP/1.1 200") {
			return fmt.Errorf("answered %q (%v)", status, err)
		}
		return nil
	})

	stdin.Close()
	errs, _ := strconv.ParseFloat(report("accept_errors"), 64)
	switch {
	case mode == "cap" && errs != 0:
		t.Errorf("cap: %g accepts failed: the derived cap should have kept descriptors free", errs)
	case mode == "exhausted" && errs == 0:
		t.Errorf("exhausted: no accept error counted in %s", metricAcceptErrors)
	}
}
