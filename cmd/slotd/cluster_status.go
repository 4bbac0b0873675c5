package main

// slotd cluster status: every group's leader, members, term, indexes and
// the lag of each follower, from the admin listeners of the nodes named
// (GET /cluster/status on each), as a table or as JSON. The server's side
// is the admin route of a cluster node.

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// statusGroupTimeout bounds how long the route waits for the Raft loop
// to read one group's state.
const statusGroupTimeout = 2 * time.Second

// nodeStatus is GET /cluster/status on a node's admin listener: the
// node's view of every group.
type nodeStatus struct {
	Node uint64 `json:"node"`
	// Draining is true from SIGTERM on: the node is handing its
	// leaderships on and will stop.
	Draining bool          `json:"draining"`
	Groups   []groupStatus `json:"groups"`
}

// groupStatus is one group as one node sees it.
type groupStatus struct {
	Group  uint64 `json:"group"`
	Leader uint64 `json:"leader"` // 0: none known
	Term   uint64 `json:"term"`
	// Applied is the index of the last entry the node's replica applied
	// to its store; Commit the highest index it knows committed;
	// LastIndex the last of its Raft log; SnapshotIndex the index its
	// log starts after (the bootstrap's, 1, until logs are compacted).
	Applied       uint64   `json:"applied"`
	Commit        uint64   `json:"commit"`
	LastIndex     uint64   `json:"last_index"`
	SnapshotIndex uint64   `json:"snapshot_index"`
	Members       []uint64 `json:"members"`
	// Learners are members that receive the log but do not vote: a
	// node being added (slotd cluster add).
	Learners []uint64 `json:"learners,omitempty"`
	// Digest is the first 8 bytes of the store's state digest: replicas
	// at one applied index hold one digest.
	Digest string `json:"digest"`
	// Engine: the node runs the group's engine (it leads and serves it).
	Engine bool `json:"engine"`
	// Followers is, on the group's leader, each other member's
	// replication as the leader tracks it; absent elsewhere.
	Followers []followerStatus `json:"followers,omitempty"`
}

// followerStatus is a follower's replication as its leader tracks it.
type followerStatus struct {
	Node  uint64 `json:"node"`
	Match uint64 `json:"match"` // highest index known in its log
	Lag   uint64 `json:"lag"`   // entries of the leader's log it lacks
	State string `json:"state"` // probe, replicate or snapshot (raft's)
}

// status serves GET /cluster/status: every group as this node sees it.
func (f *front) status(w http.ResponseWriter, r *http.Request) {
	out := nodeStatus{Node: f.self, Draining: f.draining.Load()}
	for _, g := range f.groups {
		leader, term := f.node.Status(g)
		d, applied, err := f.stores[g].StateDigest()
		st := groupStatus{Group: g, Leader: leader, Term: term, Applied: applied, Engine: f.servers[g].Load() != nil}
		if err == nil {
			st.Digest = fmt.Sprintf("%x", d[:8])
		}
		ctx, cancel := context.WithTimeout(r.Context(), statusGroupTimeout)
		rs, err := f.node.GroupStatus(ctx, g)
		cancel()
		if err == nil {
			st.Commit, st.LastIndex, st.SnapshotIndex, st.Members, st.Learners = rs.Commit, rs.LastIndex, rs.SnapshotIndex, rs.Members, rs.Learners
			for id, p := range rs.Progress {
				if id != f.self {
					st.Followers = append(st.Followers, followerStatus{Node: id, Match: p.Match, Lag: p.Lag, State: p.State})
				}
			}
			slices.SortFunc(st.Followers, func(a, b followerStatus) int { return cmp.Compare(a.Node, b.Node) })
		}
		out.Groups = append(out.Groups, st)
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(out)
}

// clusterSubcommands are `slotd cluster NAME`.
var clusterSubcommands = map[string]func(args []string, getenv func(string) string, stdout, stderr io.Writer) int{
	"status":  runClusterStatus,
	"add":     runClusterAdd,     // cluster_members.go
	"remove":  runClusterRemove,  // cluster_members.go
	"restore": runClusterRestore, // cluster_restore.go

	"move-office": runClusterMoveOffice, // cluster_move.go
}

// runCluster is `slotd cluster SUBCOMMAND [flags]`.
func runCluster(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	if len(args) == 0 || clusterSubcommands[args[0]] == nil {
		fmt.Fprintln(stderr, "usage: slotd cluster status|add|remove|restore|move-office [flags] (-h for its flags)")
		if len(args) > 0 && (args[0] == "-h" || args[0] == "-help" || args[0] == "--help") {
			return 0
		}
		return 2
	}
	return clusterSubcommands[args[0]](args[1:], getenv, stdout, stderr)
}

// statusAnswerBytesMax bounds what the CLI reads of one node's answer.
const statusAnswerBytesMax = 1 << 20

// clusterView is what `slotd cluster status -json` prints: every group,
// assembled from the nodes asked.
type clusterView struct {
	Groups []groupView `json:"groups"`
	// Unreachable lists the admin addresses that did not answer, each
	// with why.
	Unreachable []string `json:"unreachable"`
	// Draining lists the nodes asked that are stopping (SIGTERM):
	// handing their leaderships on, answering until they exit.
	Draining []uint64 `json:"draining"`
	// Problems are what makes the exit status 1, one line each.
	Problems []string `json:"problems"`
}

// groupView is one group: its leader's view where the leader was asked,
// and each member's own.
type groupView struct {
	Group         uint64     `json:"group"`
	Leader        uint64     `json:"leader"`
	Term          uint64     `json:"term"`
	Commit        uint64     `json:"commit"`
	SnapshotIndex uint64     `json:"snapshot_index"`
	Members       []uint64   `json:"members"`
	Nodes         []nodeView `json:"nodes"`
}

// nodeView is one member of a group. Asked is false for a member whose
// own admin listener was not asked (or did not answer): only what its
// leader tracks of it is known.
type nodeView struct {
	Node    uint64 `json:"node"`
	Asked   bool   `json:"asked"`
	Role    string `json:"role"` // leader, follower, or unknown
	Term    uint64 `json:"term,omitempty"`
	Applied uint64 `json:"applied,omitempty"`
	Commit  uint64 `json:"commit,omitempty"`
	Engine  bool   `json:"engine"`
	Digest  string `json:"digest,omitempty"`
	// Match and Lag are from the leader's tracking; absent where the
	// leader was not asked. The leader's own lag is 0.
	Match *uint64 `json:"match,omitempty"`
	Lag   *uint64 `json:"lag,omitempty"`
}

// runClusterStatus is `slotd cluster status [-admin-addr A,B,…] [-json]
// [-max-lag N]`.
func runClusterStatus(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("slotd cluster status", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addrs := fs.String("admin-addr", envOr(getenv, "SLOTD_ADMIN_ADDR", "127.0.0.1:9090"), "the nodes' admin listener `addresses`, comma-separated: ask every node for the whole picture (default: SLOTD_ADMIN_ADDR, else 127.0.0.1:9090)")
	asJSON := fs.Bool("json", false, "print JSON instead of a table")
	maxLag := fs.Int64("max-lag", -1, "exit 1 if a follower lacks more than this many `entries` of its leader's log, or its leader was not asked (-1: no check)")
	timeout := fs.Duration("timeout", 5*time.Second, "how long to wait for each node")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: slotd cluster status [-admin-addr ADDR,ADDR,...] [-json] [-max-lag N]\n"+
			"Shows every replica group: its leader, members, term, commit and snapshot index, and each node's\n"+
			"applied index, digest and lag behind the leader. Exits 1 when a node did not answer, a group has no\n"+
			"leader, or (with -max-lag) a follower lags; 0 otherwise.")
		fs.PrintDefaults()
	}
	if code, ok := parseSub(fs, args, stderr); !ok {
		return code
	}
	if *timeout <= 0 {
		fmt.Fprintf(stderr, "slotd cluster status: -timeout %s must be positive\n", *timeout)
		return 2
	}
	var list []string
	for a := range strings.SplitSeq(*addrs, ",") {
		if a = strings.TrimSpace(a); a != "" {
			list = append(list, a)
		}
	}
	if len(list) == 0 {
		fmt.Fprintln(stderr, "slotd cluster status: -admin-addr names no address")
		return 2
	}
	client := &http.Client{Timeout: *timeout}
	var reports []nodeStatus
	var unreachable []string
	for _, a := range list {
		st, err := fetchNodeStatus(client, a)
		if err != nil {
			unreachable = append(unreachable, fmt.Sprintf("%s: %v", a, err))
			continue
		}
		reports = append(reports, st)
	}
	view := assembleView(reports, *maxLag)
	view.Unreachable = unreachable
	for _, r := range reports {
		if r.Draining {
			view.Draining = append(view.Draining, r.Node)
		}
	}
	if unreachable != nil {
		view.Problems = append(view.Problems, fmt.Sprintf("%d of %d nodes asked did not answer", len(unreachable), len(list)))
	}
	if *asJSON {
		if view.Unreachable == nil {
			view.Unreachable = []string{}
		}
		if view.Problems == nil {
			view.Problems = []string{}
		}
		if view.Draining == nil {
			view.Draining = []uint64{}
		}
		e := json.NewEncoder(stdout)
		e.SetIndent("", "  ")
		_ = e.Encode(view)
	} else {
		printView(stdout, view)
	}
	if len(view.Problems) > 0 {
		return 1
	}
	return 0
}

// fetchNodeStatus asks one admin listener for its /cluster/status.
func fetchNodeStatus(client *http.Client, addr string) (nodeStatus, error) {
	var st nodeStatus
	resp, err := client.Get("http://" + addr + "/cluster/status")
	if err != nil {
		return st, rootCause(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		return st, errors.New("no /cluster/status: not a cluster node's admin listener (-node-id), or of an older release")
	}
	if resp.StatusCode != http.StatusOK {
		return st, fmt.Errorf("/cluster/status answered %s", resp.Status)
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, statusAnswerBytesMax)).Decode(&st); err != nil {
		return st, fmt.Errorf("/cluster/status: %w", err)
	}
	return st, nil
}

// assembleView puts the nodes' reports together, group by group; a
// maxLag of 0 or more checks every follower's lag against it.
func assembleView(reports []nodeStatus, maxLag int64) clusterView {
	var view clusterView
	type seen struct {
		node uint64
		st   groupStatus
	}
	byGroup := map[uint64][]seen{}
	for _, r := range reports {
		for _, g := range r.Groups {
			byGroup[g.Group] = append(byGroup[g.Group], seen{r.Node, g})
		}
	}
	for _, gid := range slices.Sorted(func(yield func(uint64) bool) {
		for g := range byGroup {
			if !yield(g) {
				return
			}
		}
	}) {
		views := byGroup[gid]
		gv := groupView{Group: gid}
		// The group's own values: its leader's report if asked, else the
		// report of the highest term.
		var lead *groupStatus
		for i := range views {
			s := &views[i].st
			if s.Leader == views[i].node && (lead == nil || s.Term > lead.Term) {
				lead = s
			}
			if s.Term > gv.Term || (s.Term == gv.Term && gv.Leader == 0) {
				gv.Leader, gv.Term = s.Leader, s.Term
			}
			gv.Commit = max(gv.Commit, s.Commit)
			gv.SnapshotIndex = max(gv.SnapshotIndex, s.SnapshotIndex)
			if len(s.Members) > len(gv.Members) {
				gv.Members = s.Members
			}
		}
		if lead != nil {
			gv.Leader, gv.Term, gv.Commit, gv.Members = lead.Leader, lead.Term, lead.Commit, lead.Members
		}
		members := slices.Clone(gv.Members)
		if lead != nil {
			members = append(members, lead.Learners...)
		}
		for _, v := range views {
			if !slices.Contains(members, v.node) {
				members = append(members, v.node)
			}
		}
		slices.Sort(members)
		for _, m := range members {
			nv := nodeView{Node: m, Role: "unknown"}
			for _, v := range views {
				if v.node != m {
					continue
				}
				s := v.st
				nv.Asked, nv.Term, nv.Applied, nv.Commit, nv.Engine, nv.Digest = true, s.Term, s.Applied, s.Commit, s.Engine, s.Digest
				nv.Role = "follower"
				if s.Leader == m {
					nv.Role = "leader"
				}
			}
			if lead != nil {
				if m == gv.Leader {
					nv.Match, nv.Lag = new(uint64), new(uint64)
					*nv.Match = lead.LastIndex
				}
				for _, f := range lead.Followers {
					if f.Node == m {
						nv.Match, nv.Lag = new(uint64), new(uint64)
						*nv.Match, *nv.Lag = f.Match, f.Lag
						if maxLag >= 0 && f.Lag > uint64(maxLag) {
							view.Problems = append(view.Problems, fmt.Sprintf("group %d: node %d lacks %d entries of its leader's log (-max-lag %d)", gid, m, f.Lag, maxLag))
						}
					}
				}
			}
			gv.Nodes = append(gv.Nodes, nv)
		}
		switch {
		case gv.Leader == 0:
			view.Problems = append(view.Problems, fmt.Sprintf("group %d has no leader that the nodes asked know of", gid))
		case lead == nil && maxLag >= 0:
			view.Problems = append(view.Problems, fmt.Sprintf("group %d: its leader, node %d, was not asked: the followers' lag is unknown", gid, gv.Leader))
		}
		for _, v := range views {
			if v.st.Leader == 0 && gv.Leader != 0 {
				view.Problems = append(view.Problems, fmt.Sprintf("group %d: node %d knows no leader", gid, v.node))
			}
		}
		view.Groups = append(view.Groups, gv)
	}
	return view
}

// printView prints view as a table: a row per group and member.
func printView(w io.Writer, view clusterView) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "GROUP\tLEADER\tTERM\tCOMMIT\tSNAPSHOT\tNODE\tROLE\tENGINE\tAPPLIED\tMATCH\tLAG\tDIGEST")
	dash := func(asked bool, v uint64) string {
		if !asked {
			return "-"
		}
		return strconv.FormatUint(v, 10)
	}
	ptr := func(p *uint64) string {
		if p == nil {
			return "-"
		}
		return strconv.FormatUint(*p, 10)
	}
	for _, g := range view.Groups {
		for i, n := range g.Nodes {
			head := fmt.Sprintf("%d\t%d\t%d\t%d\t%d", g.Group, g.Leader, g.Term, g.Commit, g.SnapshotIndex)
			if i > 0 {
				head = "\t\t\t\t"
			}
			engine := "-"
			if n.Asked {
				engine = map[bool]string{true: "yes", false: "no"}[n.Engine]
			}
			digest := n.Digest
			if digest == "" {
				digest = "-"
			}
			fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\n", head, n.Node, n.Role, engine, dash(n.Asked, n.Applied), ptr(n.Match), ptr(n.Lag), digest)
		}
	}
	tw.Flush()
	for _, d := range view.Draining {
		fmt.Fprintf(w, "draining: node %d is stopping\n", d)
	}
	for _, u := range view.Unreachable {
		fmt.Fprintln(w, "unreachable:", u)
	}
	for _, p := range view.Problems {
		fmt.Fprintln(w, "problem:", p)
	}
}
