package clusterbench

import (
	"bytes"
	crand "crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Processes: slotd started from its binary, alone or as the nodes of a
// cluster on loopback, with one keys file and one ticket secret.

// Keys the bench gives its slotd processes: the rush's portal key and an
// admin key (admin, operator and portal scopes) that creates the office
// and reads the agenda back.
const (
	portalKey = "bench-cluster-portal-key-0123456789abcdef"
	adminKey  = "bench-cluster-admin-key-0123456789abcdef"
)

// readyWaitMax bounds the wait for a started process to answer; a bound
// for a loaded machine, not a measurement.
const readyWaitMax = 60 * time.Second

// logTailBytes is how much of a process's standard error is kept, for
// the error that reports it stopped.
const logTailBytes = 8 << 10

// server is one slotd process: a single node or a node of a cluster.
// Its methods are safe for concurrent use.
type server struct {
	bin               string
	id                int    // node id in a cluster; 0 alone
	addr, admin, raft string // raft is "" alone
	data              string
	args              []string // every flag but the addresses and data

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited
	log  *tailBuffer
}

// fleet is the processes of one run: one alone, or a cluster's nodes.
type fleet struct {
	servers []*server
	dir     string
}

// prepare writes the keys file and a ticket secret shared by every data
// directory of dir/node1..n, and returns the keys file's path.
func prepare(dir string, n int) (keys string, err error) {
	keys = filepath.Join(dir, "keys.json")
	body := fmt.Sprintf(`[{"key":%q,"name":"bench-portal","scopes":["portal"],"offices":["*"]},`+
		`{"key":%q,"name":"bench-admin","scopes":["admin","operator","portal"],"offices":["*"]}]`, portalKey, adminKey)
	if err := os.WriteFile(keys, []byte(body), 0o600); err != nil {
		return "", err
	}
	secret := make([]byte, 32)
	if _, err := crand.Read(secret); err != nil {
		return "", err
	}
	for i := 1; i <= n; i++ {
		data := filepath.Join(dir, fmt.Sprintf("node%d", i))
		if err := os.MkdirAll(data, 0o700); err != nil {
			return "", err
		}
		if err := os.WriteFile(filepath.Join(data, "ticket-secret"), secret, 0o600); err != nil {
			return "", err
		}
	}
	return keys, nil
}

// baseArgs are the flags every process of the bench gets: no key or
// applicant rate limit (the rush is one key and would be refused, not
// measured), and the log level.
func baseArgs(keys, logLevel string) []string {
	return []string{"-keys", keys, "-rate-per-key", "10000000", "-rate-per-applicant", "0", "-log-level", logLevel}
}

// startSingle starts one slotd alone on fresh data under dir.
func startSingle(bin, dir, logLevel string) (*fleet, error) {
	keys, err := prepare(dir, 1)
	if err != nil {
		return nil, err
	}
	addrs, err := freeAddrs(2)
	if err != nil {
		return nil, err
	}
	s := &server{bin: bin, addr: addrs[0], admin: addrs[1], data: filepath.Join(dir, "node1"), args: baseArgs(keys, logLevel)}
	f := &fleet{servers: []*server{s}, dir: dir}
	if err := s.start(); err != nil {
		f.kill()
		return nil, err
	}
	return f, nil
}

// startCluster starts size slotd nodes of a cluster of groups Raft
// groups on fresh data under dir.
func startCluster(bin, dir, logLevel string, size, groups int) (*fleet, error) {
	keys, err := prepare(dir, size)
	if err != nil {
		return nil, err
	}
	addrs, err := freeAddrs(3 * size)
	if err != nil {
		return nil, err
	}
	f := &fleet{dir: dir}
	var peers, edges []string
	for i := range size {
		s := &server{bin: bin, id: i + 1, raft: addrs[3*i], addr: addrs[3*i+1], admin: addrs[3*i+2],
			data: filepath.Join(dir, fmt.Sprintf("node%d", i+1))}
		peers = append(peers, fmt.Sprintf("%d=%s", s.id, s.raft))
		edges = append(edges, fmt.Sprintf("%d=%s", s.id, s.addr))
		f.servers = append(f.servers, s)
	}
	for _, s := range f.servers {
		s.args = append(baseArgs(keys, logLevel), "-node-id", fmt.Sprint(s.id), "-peers", strings.Join(peers, ","),
			"-edges", strings.Join(edges, ","), "-groups", fmt.Sprint(groups))
	}
	// Start them all, then wait: a node answers /readyz before its peers
	// are up, but starting one after the other's wait costs seconds.
	for _, s := range f.servers {
		if err := s.spawn(); err != nil {
			f.kill()
			return nil, err
		}
	}
	for _, s := range f.servers {
		if err := s.waitReady(); err != nil {
			f.kill()
			return nil, err
		}
	}
	return f, nil
}

// addrs returns the API addresses of the fleet's servers.
func (f *fleet) addrs() []string {
	out := make([]string, len(f.servers))
	for i, s := range f.servers {
		out[i] = s.addr
	}
	return out
}

// kill ends every process with SIGKILL and waits for each.
func (f *fleet) kill() {
	for _, s := range f.servers {
		s.kill()
	}
}

// freeAddrs returns n loopback addresses whose ports were free a moment
// ago.
func freeAddrs(n int) ([]string, error) {
	var out []string
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		lns = append(lns, ln)
		out = append(out, ln.Addr().String())
	}
	return out, nil
}

// start runs the process and waits until its admin listener says ready.
func (s *server) start() error {
	if err := s.spawn(); err != nil {
		return err
	}
	return s.waitReady()
}

// spawn runs the process without waiting for it to answer.
func (s *server) spawn() error {
	args := append([]string{"-data", s.data, "-addr", s.addr, "-admin-addr", s.admin}, s.args...)
	cmd := exec.Command(s.bin, args...)
	log := &tailBuffer{max: logTailBytes}
	cmd.Stdout = io.Discard
	cmd.Stderr = log
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("cannot start %s: %w", s.bin, err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	s.mu.Lock()
	s.cmd, s.done, s.log = cmd, done, log
	s.mu.Unlock()
	return nil
}

// httpClient is the bench's client for everything but the rush: setup,
// status, verification, the failover's writes.
var httpClient = &http.Client{Timeout: 10 * time.Second}

// waitReady polls /readyz until it answers 200, the process exits, or
// readyWaitMax passes.
func (s *server) waitReady() error {
	s.mu.Lock()
	done := s.done
	s.mu.Unlock()
	return poll(readyWaitMax, func() error {
		select {
		case <-done:
			return errStop{fmt.Errorf("%s exited before it was ready:\n%s", s.name(), s.tail())}
		default:
		}
		resp, err := httpClient.Get("http://" + s.admin + "/readyz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s: readyz answered %d", s.name(), resp.StatusCode)
		}
		return nil
	})
}

func (s *server) name() string {
	if s.id == 0 {
		return "slotd"
	}
	return fmt.Sprintf("node %d", s.id)
}

// up reports whether the process runs.
func (s *server) up() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done == nil {
		return false
	}
	select {
	case <-s.done:
		return false
	default:
		return true
	}
}

// kill ends the process with SIGKILL and waits until it has exited.
func (s *server) kill() {
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	<-done
}

// cpuTime returns the CPU time the process has used so far (user and
// system, from /proc/<pid>/stat); false where it cannot be read (not
// Linux, or the process has exited). Unlike the machine's busy time it
// leaves out the work of everything else on the machine.
func (s *server) cpuTime() (time.Duration, bool) {
	s.mu.Lock()
	cmd := s.cmd
	s.mu.Unlock()
	if cmd == nil || cmd.Process == nil {
		return 0, false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", cmd.Process.Pid))
	if err != nil {
		return 0, false
	}
	return parseProcStatCPU(b)
}

// parseProcStatCPU reads utime and stime, the 14th and 15th fields of
// /proc/<pid>/stat, in clock ticks (USER_HZ, 100 on every Linux
// architecture). The second field, the command in parentheses, may hold
// spaces, so the fields are counted after its closing parenthesis.
func parseProcStatCPU(b []byte) (time.Duration, bool) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, false
	}
	fields := strings.Fields(string(b[i+1:]))
	// fields[0] is the 3rd field (state): utime is fields[11], stime fields[12].
	if len(fields) < 13 {
		return 0, false
	}
	var ticks uint64
	for _, f := range fields[11:13] {
		n, err := strconv.ParseUint(f, 10, 64)
		if err != nil {
			return 0, false
		}
		ticks += n
	}
	const ticksPerSecond = 100
	return time.Duration(ticks) * time.Second / ticksPerSecond, true
}

// cpuTime sums the CPU time of the fleet's running processes; false if
// one cannot be read.
func (f *fleet) cpuTime() (time.Duration, bool) {
	var sum time.Duration
	for _, s := range f.servers {
		d, ok := s.cpuTime()
		if !ok {
			return 0, false
		}
		sum += d
	}
	return sum, true
}

// tail returns the end of the process's standard error.
func (s *server) tail() string {
	s.mu.Lock()
	log := s.log
	s.mu.Unlock()
	if log == nil {
		return ""
	}
	return log.String()
}

// tailBuffer keeps the last max bytes written to it. Safe for concurrent
// use.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   bytes.Buffer
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b.Write(p)
	if over := t.b.Len() - t.max; over > 0 {
		t.b.Next(over)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.b.String()
}

// errStop ends a poll at once with its error.
type errStop struct{ err error }

func (e errStop) Error() string { return e.err.Error() }

// pollInterval is the wait between two tries of poll.
const pollInterval = 20 * time.Millisecond

// poll calls cond until it returns nil or an errStop, or timeout passes;
// it returns the last error then.
func poll(timeout time.Duration, cond func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return nil
		}
		var stop errStop
		if errors.As(err, &stop) {
			return stop.err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("after %s: %w", timeout, err)
		}
		time.Sleep(pollInterval)
	}
}
