package cluster

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"slotd/raftlog"
	"slotd/wal"
)

// TestConfigValidate: each mistake in a Config is refused with a message
// that names it.
func TestConfigValidate(t *testing.T) {
	base := func() Config {
		return Config{ID: 1, Peers: []Peer{{1, "a:1"}, {2, "b:1"}, {3, "c:1"}}, Groups: []uint64{1, 2}}
	}
	if err := new(base()).validate(); err != nil {
		t.Fatalf("a valid config: %v", err)
	}
	f := func(change func(*Config), want string) {
		t.Helper()
		c := base()
		change(&c)
		err := c.validate()
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("config %+v: %v, want an error naming %q", c, err, want)
		}
	}
	f(func(c *Config) { c.ID = 0 }, "ID is 0")
	f(func(c *Config) { c.ID = 4 }, "not among the 3 peers")
	f(func(c *Config) { c.Peers[1].ID = 0 }, "has id 0")
	f(func(c *Config) { c.Peers[1].ID = 1 }, "listed twice")
	f(func(c *Config) { c.Peers[2].Addr = "" }, "no address")
	f(func(c *Config) { c.Peers[2].Addr = "a:1" }, "listed for two peers")
	f(func(c *Config) { c.Groups = nil }, "no groups")
	f(func(c *Config) { c.Groups = []uint64{0, 1} }, "group id 0")
	f(func(c *Config) { c.Groups = []uint64{2, 1, 2} }, "group 2 is listed twice")
	f(func(c *Config) { c.TickInterval = -1 }, "TickInterval")
	f(func(c *Config) { c.ElectionTicks = 1 }, "HeartbeatTicks 1 must be less than ElectionTicks 1")
	f(func(c *Config) { c.ProposalBytesMax = proposalBytesLimit + 1 }, "ProposalBytesMax")
	f(func(c *Config) { c.ProposalsPendingMax = -1 }, "ProposalsPendingMax")
	f(func(c *Config) { c.InboxFramesMax = -1 }, "InboxFramesMax")
	f(func(c *Config) { c.Transport.QueueMessagesMax = -1 }, "QueueMessagesMax")
	f(func(c *Config) { c.Transport.BackoffMin = DefaultBackoffMax + 1 }, "exceeds BackoffMax")
}

// failingSM applies like toySM but fails at the data "fail".
type failingSM struct{ *toySM }

var errApply = errors.New("the state machine cannot go on")

func (s *failingSM) Apply(group uint64, entries []Entry) error {
	for _, e := range entries {
		if string(e.Data) == "fail" {
			return errApply
		}
	}
	return s.toySM.Apply(group, entries)
}

// TestNodeOfOneStopsWhenApplyFails: a single node is a cluster of one: it
// elects itself and applies its proposals. When the state machine fails,
// the node stops (N3's rule for a failed write, applied to apply): the
// proposal fails with ErrStopped wrapping the cause, later ones are
// refused, and Close reports the cause.
func TestNodeOfOneStopsWhenApplyFails(t *testing.T) {
	db, err := wal.Open(t.TempDir(), wal.Options{CacheBytes: 1 << 20, MemTableBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = db.Close() }()
	store, err := raftlog.Open(db.RaftRegion(), raftlog.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ln := listen(t)
	sm := &failingSM{toySM: newToySM()}
	n, err := NewNode(Config{ID: 1, Peers: []Peer{{1, ln.Addr().String()}}, Groups: []uint64{1}, Listener: ln, TickInterval: tickEvery}, store, sm)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "the node applies a proposal", func() error {
		res, err := n.Propose(context.Background(), 1, []byte("a"))
		if err != nil {
			return err
		}
		if i, _ := sm.state(1); res != i {
			return fmt.Errorf("result %v, applied through %d", res, i)
		}
		return nil
	})
	if _, err := n.Propose(context.Background(), 1, []byte("fail")); !errors.Is(err, ErrStopped) || !errors.Is(err, errApply) {
		t.Fatalf("the proposal that fails the state machine: %v, want ErrStopped and its cause", err)
	}
	if _, err := n.Propose(context.Background(), 1, []byte("b")); !errors.Is(err, ErrStopped) {
		t.Fatalf("a proposal after the failure: %v, want ErrStopped", err)
	}
	if err := n.Err(); !errors.Is(err, errApply) {
		t.Fatalf("Err: %v, want the cause", err)
	}
	if err := n.Close(); !errors.Is(err, errApply) {
		t.Fatalf("Close: %v, want the cause", err)
	}
}
