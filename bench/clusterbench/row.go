package clusterbench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"time"

	"slotd/bench/peers"
)

// Row is one row of the rush table as a backend: slotd's processes,
// started afresh for every rush. The rush table here and the HTTP table
// of package peers (bench/cmd/peers -cluster) run it alike, as a
// peers.ProcessBackend: start on fresh data, the office created and its
// dates released through the API; the rush at the row's addresses; every
// booking read back through the agenda of the node that runs the
// office's engine and handed to peers.Verify, the replicas of a cluster
// compared; the processes killed and their data removed. A Row is
// immutable and safe for concurrent use.
type Row struct {
	name     string
	slotd    string
	groups   int
	logLevel string
}

// NewRow returns the row named name (RowSingle, RowSpread or RowLeader)
// of slotd's binary at slotd. groups is a cluster's Raft groups (slotd
// -groups; 0 means 1), logLevel the processes' -log-level (empty means
// warn, as Config.LogLevel).
func NewRow(name, slotd string, groups int, logLevel string) (*Row, error) {
	if !slices.Contains([]string{RowSingle, RowSpread, RowLeader}, name) {
		return nil, fmt.Errorf("clusterbench: no row %q: want %s, %s or %s", name, RowSingle, RowSpread, RowLeader)
	}
	if slotd == "" {
		return nil, errors.New("clusterbench: a row needs the slotd binary")
	}
	if _, err := os.Stat(slotd); err != nil {
		return nil, fmt.Errorf("clusterbench: the slotd binary: %w", err)
	}
	if groups == 0 {
		groups = 1
	}
	if groups < 1 || groups > groupsMax {
		return nil, fmt.Errorf("clusterbench: %d groups must be in 1..%d; 0 means 1", groups, groupsMax)
	}
	if logLevel == "" {
		logLevel = "warn"
	}
	return &Row{name: name, slotd: slotd, groups: groups, logLevel: logLevel}, nil
}

// Name is the row's name.
func (b *Row) Name() string { return b.name }

// TimesPeerTarget is design §6's ratio of the cluster's rush to the
// PostgreSQL peer's; slotd alone behind its own edge has none (its
// targets are set behind the peers' edge).
func (b *Row) TimesPeerTarget(peer string) float64 {
	if b.name != RowSingle && peer == "postgres" {
		return targetTimesPostgres
	}
	return 0
}

// Start starts the row's processes on fresh data in a new directory
// under dir and sets up lay's office through the node that runs its
// engine.
func (b *Row) Start(ctx context.Context, dir string, lay *peers.Layout) (peers.Processes, error) {
	data, err := os.MkdirTemp(dir, "slotd-bench-cluster-*")
	if err != nil {
		return nil, err
	}
	p := &rowProcesses{row: b, dir: data, group: benchGroup, lay: *lay}
	if err := p.start(ctx); err != nil {
		p.Close()
		return nil, err
	}
	return p, nil
}

// rowProcesses are a Row's processes for one rush. Not safe for
// concurrent use.
type rowProcesses struct {
	row     *Row
	dir     string
	f       *fleet
	serving *server // the node that runs the office's engine
	group   uint64  // the office's group
	lay     peers.Layout
}

func (p *rowProcesses) start(ctx context.Context) error {
	var err error
	if p.row.name == RowSingle {
		p.f, err = startSingle(p.row.slotd, p.dir, p.row.logLevel)
	} else {
		p.f, err = startCluster(p.row.slotd, p.dir, p.row.logLevel, clusterLen, p.row.groups)
	}
	if err != nil {
		return err
	}
	p.serving = p.f.servers[0]
	if p.row.name != RowSingle {
		if p.serving, err = p.f.leader(readyWaitMax); err != nil {
			return err
		}
	}
	if err := setupOffice(ctx, p.serving.addr, &p.lay); err != nil {
		return err
	}
	if p.row.name != RowSingle && p.row.groups > 1 {
		// The office went to the group its id hashes to: the rush's
		// leader is that group's.
		if p.group, err = officeGroup(p.serving.addr, p.lay.Office); err != nil {
			return err
		}
		if p.serving, err = p.f.leaderOf(p.group, readyWaitMax); err != nil {
			return err
		}
	}
	return nil
}

// Target is every node's API address for the spread row, else the
// serving node's; the key is the portal key.
func (p *rowProcesses) Target() ([]string, string) {
	if p.row.name == RowSpread {
		return p.f.addrs(), "Bearer " + portalKey
	}
	return []string{p.serving.addr}, "Bearer " + portalKey
}

// CPUTime sums the CPU time of the row's processes.
func (p *rowProcesses) CPUTime() (time.Duration, bool) { return p.f.cpuTime() }

// Check reads every booking of the layout's dates back through the
// serving node's agenda for peers.Verify; for a cluster it then waits
// until every replica of the office's group stands at one applied index
// with one digest: each holds what the leader acknowledged, byte for
// byte. A process that stopped during the run fails the check.
func (p *rowProcesses) Check(ctx context.Context, acked []peers.Acked, hadErrors bool) (string, error) {
	var note string
	err := peers.Verify(ctx, agendaReader{p.serving.addr}, &p.lay, acked, hadErrors)
	if err == nil && p.row.name != RowSingle {
		var st groupStatus
		if st, err = p.f.converged(p.group, readyWaitMax); err == nil {
			note = fmt.Sprintf("the %d replicas agree at applied index %d, digest %s", len(p.f.servers), st.Applied, st.Digest)
		}
	}
	for _, s := range p.f.servers {
		if !s.up() {
			err = errors.Join(err, fmt.Errorf("%s stopped during the run:\n%s", s.name(), s.tail()))
		}
	}
	return note, err
}

// Close kills the processes and removes their data.
func (p *rowProcesses) Close() {
	if p.f != nil {
		p.f.kill()
	}
	_ = os.RemoveAll(p.dir)
}
