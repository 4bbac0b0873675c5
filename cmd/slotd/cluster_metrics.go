package main

// A cluster node's metrics: its groups' Raft state, its forwarding, and
// the metrics of the Server of each group it leads, labelled with the
// group. Served with its status on the admin listener.

import (
	"fmt"
	"net/http"
	"net/http/pprof"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/protobuf/proto"

	"slotd/cluster"
	"slotd/httpapi"
)

// leaderSampleInterval is how often the node looks at its groups'
// leaders to count changes.
const leaderSampleInterval = 50 * time.Millisecond

type clusterMetrics struct {
	reg           *prometheus.Registry
	leaderChanges *prometheus.CounterVec
	forwarded     *prometheus.CounterVec
}

func newClusterMetrics(f *front) (*clusterMetrics, error) {
	m := &clusterMetrics{
		reg: prometheus.NewRegistry(),
		leaderChanges: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "slotd_cluster_leader_changes_total", Help: "Changes of a group's leader as this node saw them (to none counts too).",
		}, []string{"group"}),
		forwarded: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "slotd_cluster_forwarded_requests_total", Help: "Requests this node passed to the leader of their group, by result: answered, or unreachable (answered 503 no_leader).",
		}, []string{"result"}),
	}
	for _, r := range []string{"answered", "unreachable"} {
		m.forwarded.WithLabelValues(r)
	}
	for _, g := range f.groups {
		m.leaderChanges.WithLabelValues(strconv.FormatUint(g, 10)) // exported from the start, at 0
	}
	group := func(name, help string, value func(g uint64) float64) []prometheus.Collector {
		var cs []prometheus.Collector
		for _, g := range f.groups {
			cs = append(cs, prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help, ConstLabels: prometheus.Labels{"group": strconv.FormatUint(g, 10)}},
				func() float64 { return value(g) }))
		}
		return cs
	}
	var cs []prometheus.Collector
	cs = append(cs, group("slotd_cluster_group_leader", "1 while this node leads the group and runs its engine, else 0.", func(g uint64) float64 {
		return b2f(f.servers[g].Load() != nil)
	})...)
	cs = append(cs, group("slotd_cluster_group_has_leader", "1 while this node knows a leader of the group, else 0.", func(g uint64) float64 {
		l, _ := f.node.Status(g)
		return b2f(l != 0)
	})...)
	cs = append(cs, group("slotd_cluster_group_term", "The group's Raft term as this node stored it.", func(g uint64) float64 {
		_, t := f.node.Status(g)
		return float64(t)
	})...)
	cs = append(cs, group("slotd_cluster_group_applied_index", "The index of the group's last entry this node's replica applied.", func(g uint64) float64 {
		i, _, _ := f.stores[g].Applied()
		return float64(i)
	})...)
	cs = append(cs, group("slotd_cluster_group_log_first_index", "The first entry this node's Raft log of the group keeps: entries before it were compacted away.", func(g uint64) float64 {
		return float64(f.node.LogStatus(g).FirstIndex)
	})...)
	cs = append(cs, group("slotd_cluster_group_snapshot_index", "The index of the last snapshot of the group this node sent or installed since it started, 0 if none.", func(g uint64) float64 {
		return float64(f.node.LogStatus(g).SnapshotIndex)
	})...)
	stat := func(name, help string, v func(s cluster.Stats) uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, func() float64 { return float64(v(f.node.Stats())) })
	}
	cs = append(cs,
		stat("slotd_cluster_appends_total", "Raft Ready batches stored, one fsync each.", func(s cluster.Stats) uint64 { return s.Appends }),
		stat("slotd_cluster_entries_applied_total", "Committed entries applied, all groups.", func(s cluster.Stats) uint64 { return s.EntriesApplied }),
		stat("slotd_cluster_proposals_applied_total", "This node's proposals committed and applied.", func(s cluster.Stats) uint64 { return s.ProposalsApplied }),
		stat("slotd_cluster_proposals_failed_total", "This node's proposals that failed: not the leader, dropped, too many, caller gone.", func(s cluster.Stats) uint64 { return s.ProposalsFailed }),
		stat("slotd_cluster_log_compactions_total", "Compactions of a group's Raft log, all groups.", func(s cluster.Stats) uint64 { return s.Compactions }),
		stat("slotd_cluster_snapshots_sent_total", "Snapshots of a group's state streamed to a peer and staged there.", func(s cluster.Stats) uint64 { return s.SnapshotsSent }),
		stat("slotd_cluster_snapshots_installed_total", "Snapshots of a group's state installed on this node.", func(s cluster.Stats) uint64 { return s.SnapshotsInstalled }),
		stat("slotd_cluster_inbox_dropped_total", "Frames from peers dropped because the inbox was full.", func(s cluster.Stats) uint64 { return s.InboxDropped }),
		stat("slotd_cluster_refusals_sent_total", "Raft connections of nodes that are no member of this node's groups answered with a refusal (removed, or never added) and closed.", func(s cluster.Stats) uint64 { return s.Transport.RefusalsSent }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "slotd_cluster_up", Help: "1 while this node's Raft loop runs."}, func() float64 { return b2f(f.node.Err() == nil) }),
		m.leaderChanges, m.forwarded,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		httpapi.NewBuildInfoCollector(buildInfo()), httpapi.NewStoreCollector(nodeStoreStats(f.allStores())),
	)
	for _, c := range cs {
		if err := m.reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// countLeaderChanges samples the groups' leaders until stop is closed.
func (m *clusterMetrics) countLeaderChanges(f *front, stop <-chan struct{}) {
	last := map[uint64]uint64{}
	t := time.NewTicker(leaderSampleInterval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		for _, g := range f.groups {
			l, _ := f.node.Status(g)
			if prev, seen := last[g]; seen && prev != l {
				m.leaderChanges.WithLabelValues(strconv.FormatUint(g, 10)).Inc()
			}
			last[g] = l
		}
	}
}

// groupGatherer gathers the registries of the Servers this node runs,
// each metric labelled with its group.
type groupGatherer struct {
	mu   sync.Mutex
	regs map[uint64]*prometheus.Registry
}

func (gg *groupGatherer) set(group uint64, reg *prometheus.Registry) {
	gg.mu.Lock()
	defer gg.mu.Unlock()
	if gg.regs == nil {
		gg.regs = map[uint64]*prometheus.Registry{}
	}
	if reg == nil {
		delete(gg.regs, group)
		return
	}
	gg.regs[group] = reg
}

func (gg *groupGatherer) Gather() ([]*dto.MetricFamily, error) {
	gg.mu.Lock()
	regs := make(map[uint64]*prometheus.Registry, len(gg.regs))
	for g, r := range gg.regs {
		regs[g] = r
	}
	gg.mu.Unlock()
	byName := map[string]*dto.MetricFamily{}
	var out []*dto.MetricFamily
	for g, reg := range regs {
		mfs, err := reg.Gather()
		if err != nil {
			return nil, fmt.Errorf("group %d: %w", g, err)
		}
		label := &dto.LabelPair{Name: proto.String("group"), Value: proto.String(strconv.FormatUint(g, 10))}
		for _, mf := range mfs {
			if strings.HasPrefix(mf.GetName(), "go_") || strings.HasPrefix(mf.GetName(), "process_") {
				continue // the process's own, once, from the node's registry
			}
			for _, m := range mf.Metric {
				m.Label = append(m.Label, label)
			}
			if have := byName[mf.GetName()]; have != nil {
				have.Metric = append(have.Metric, mf.Metric...)
				continue
			}
			byName[mf.GetName()] = mf
			out = append(out, mf)
		}
	}
	return out, nil
}

// adminHandler serves the node's health, status, metrics and pprof.
func (f *front) adminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !f.ready() {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, "not ready: a group has no known leader, or the Raft loop stopped")
			return
		}
		if f.draining.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, "draining")
			return
		}
		fmt.Fprintln(w, "ready")
	})
	mux.HandleFunc("/cluster/status", f.status)
	mux.Handle("/admin/backup", httpapi.BackupHandler(f.backup, f.log)) // cluster_backup.go
	mux.HandleFunc("/cluster/members", f.adminMembers)                  // cluster_members.go
	mux.HandleFunc("/cluster/members/", f.adminMembers)                 // …/{id}, …/{id}/promote
	mux.HandleFunc("/cluster/offices/", f.adminMoveOffice)              // …/{id}/move: cluster_move.go
	mux.Handle("/metrics", promhttp.HandlerFor(prometheus.Gatherers{f.metrics.reg, &f.gatherer}, promhttp.HandlerOpts{}))
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}
