package main

// Membership changes (package cluster, M1–M6): the admin routes
// POST /cluster/members, POST /cluster/members/{id}/promote and
// DELETE /cluster/members/{id} change a node in every group, each group
// through its leader (here, or over the leader's API listener with the
// forward token); `slotd cluster add` and `slotd cluster remove` call
// them. A node is added as a learner in every group, and promoted to
// voter in a group once its leader sees it within -max-lag entries.

import (
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
	"time"

	"github.com/valyala/fasthttp"

	"slotd/api"
	"slotd/cluster"
	"slotd/httpapi"
)

// pathMembers is the internal route of one group's membership change:
// POST of a memberChange, answered by the group's leader only to a
// request with the forward token.
const pathMembers = "/internal/members"

// memberChange is one change of one group, as the admin route hands it
// to the group's leader.
type memberChange struct {
	Group    uint64 `json:"group"`
	Op       string `json:"op"` // add, promote, remove
	Node     uint64 `json:"node"`
	RaftAddr string `json:"raft_addr,omitempty"`
	APIAddr  string `json:"api_addr,omitempty"`
	// MaxLag, for promote: the most entries of the leader's log the
	// learner may lack.
	MaxLag uint64 `json:"max_lag,omitempty"`
}

// memberResult is what became of a change in one group.
type memberResult struct {
	Group  uint64 `json:"group"`
	Leader uint64 `json:"leader,omitempty"`
	// Result is "done", "already" (the group had the change), or the
	// problem's code.
	Result string `json:"result"`
	Detail string `json:"detail,omitempty"`
}

// membersAnswer is the admin routes' answer: every group's result; on a
// failure, the first failed group's code and detail too.
type membersAnswer struct {
	// Type, Title and Status are a problem's (RFC 9457), on a failure.
	Type   string         `json:"type,omitempty"`
	Title  string         `json:"title,omitempty"`
	Status int            `json:"status,omitempty"`
	Node   uint64         `json:"node"`
	Op     string         `json:"op"`
	Code   string         `json:"code,omitempty"`
	Detail string         `json:"detail,omitempty"`
	Groups []memberResult `json:"groups"`
}

// The admin routes' own problem codes, beside the API's (api.Codes):
// the admin listener is not part of the API.
const (
	codeMemberChangeRefused = "member_change_refused" // 409: the group's membership does not allow the change
	codeNotCaughtUp         = "not_caught_up"         // 409: the learner lags more than max_lag
)

// adminCodes are the admin codes' statuses and titles.
var adminCodes = map[string]api.CodeInfo{
	codeMemberChangeRefused: {Status: http.StatusConflict, Title: "The group's membership does not allow this change"},
	codeNotCaughtUp:         {Status: http.StatusConflict, Title: "The node has not caught up with the group's log yet"},
}

// codeInfo is code's status and title, an admin code's or the API's.
func codeInfo(code string) api.CodeInfo {
	if info, ok := adminCodes[code]; ok {
		return info
	}
	return api.Codes[code]
}

// errNotCaughtUp refuses a promotion of a learner that lags.
var errNotCaughtUp = errors.New("not caught up")

// memberChangeTimeout bounds one group's change, retries included.
const memberChangeTimeout = 10 * time.Second

// adminMembers serves the admin routes.
func (f *front) adminMembers(w http.ResponseWriter, r *http.Request) {
	rest := strings.Trim(strings.TrimPrefix(r.URL.Path, "/cluster/members"), "/")
	var ch memberChange
	var bad string
	switch {
	case rest == "" && r.Method == http.MethodPost:
		err := json.NewDecoder(io.LimitReader(r.Body, 4096)).Decode(&ch)
		ch.Op, ch.Group, ch.MaxLag = "add", 0, 0
		if err != nil {
			bad = "the body is JSON: {\"node\": N, \"raft_addr\": \"host:port\", \"api_addr\": \"host:port\"}"
		} else if ch.Node == 0 || ch.RaftAddr == "" || ch.APIAddr == "" {
			bad = "node, raft_addr and api_addr are required"
		}
	case strings.HasSuffix(rest, "/promote") && r.Method == http.MethodPost:
		ch.Op = "promote"
		ch.Node, bad = parseNodeID(strings.TrimSuffix(rest, "/promote"))
		if v := r.URL.Query().Get("max_lag"); v != "" && bad == "" {
			n, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				bad = "max_lag is a count of entries"
			}
			ch.MaxLag = n
		}
	case rest != "" && !strings.Contains(rest, "/") && r.Method == http.MethodDelete:
		ch.Op = "remove"
		ch.Node, bad = parseNodeID(rest)
	default:
		writeMembersAnswer(w, http.StatusMethodNotAllowed, membersAnswer{Code: api.CodeMethodNotAllowed,
			Detail: "POST /cluster/members, POST /cluster/members/{id}/promote, DELETE /cluster/members/{id}", Groups: []memberResult{}})
		return
	}
	if bad != "" {
		writeMembersAnswer(w, http.StatusBadRequest, membersAnswer{Node: ch.Node, Op: ch.Op, Code: api.CodeValidationFailed, Detail: bad, Groups: []memberResult{}})
		return
	}
	out := membersAnswer{Node: ch.Node, Op: ch.Op}
	status := http.StatusOK
	for _, g := range f.groups {
		c := ch
		c.Group = g
		res := f.changeGroup(r.Context(), c)
		out.Groups = append(out.Groups, res)
		if res.Result != "done" && res.Result != "already" && out.Code == "" {
			out.Code, out.Detail = res.Result, fmt.Sprintf("group %d: %s", g, res.Detail)
			status = codeInfo(res.Result).Status
			if status == 0 {
				status = http.StatusInternalServerError
			}
		}
	}
	writeMembersAnswer(w, status, out)
}

func parseNodeID(s string) (uint64, string) {
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil || n == 0 {
		return 0, fmt.Sprintf("%q is not a node id", s)
	}
	return n, ""
}

func writeMembersAnswer(w http.ResponseWriter, status int, a membersAnswer) {
	writeAdminAnswer(w, status, a.Code, &a.Type, &a.Title, &a.Status, &a)
}

// writeAdminAnswer writes a, an admin route's JSON answer: on a failure
// (code set) as problem+json, its type, title and status filled in.
func writeAdminAnswer(w http.ResponseWriter, status int, code string, typ, title *string, problemStatus *int, a any) {
	if code != "" {
		*typ, *title, *problemStatus = api.ProblemTypePrefix+code, codeInfo(code).Title, status
		w.Header().Set("Content-Type", "application/problem+json")
	} else {
		w.Header().Set("Content-Type", "application/json")
	}
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(a)
}

// changeGroup has c done in its group by the group's leader, here or
// over the leader's API listener, retrying while the group elects a
// leader or raft holds another change.
func (f *front) changeGroup(ctx context.Context, c memberChange) memberResult {
	ctx, cancel := context.WithTimeout(ctx, memberChangeTimeout)
	defer cancel()
	res := memberResult{Group: c.Group}
	for {
		leader := f.node.Leader(c.Group)
		res.Leader = leader
		var code, detail string
		switch {
		case leader == 0:
			code, detail = api.CodeNoLeader, "the group has no leader"
		case leader == f.self:
			r, err := f.changeHere(ctx, c)
			if err == nil {
				res.Result = r
				return res
			}
			code, detail = memberCode(err), err.Error()
		default:
			r, err := f.changeThere(ctx, leader, c)
			if err == nil {
				return r
			}
			code, detail = api.CodeNoLeader, err.Error()
			var p *memberProblem
			if errors.As(err, &p) {
				code, detail = p.Code, p.Detail
			}
		}
		if code != api.CodeNoLeader {
			res.Result, res.Detail = code, detail
			return res
		}
		select {
		case <-ctx.Done():
			res.Result, res.Detail = code, detail
			return res
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// memberCode is the problem code of a change's error.
func memberCode(err error) string {
	switch {
	case errors.Is(err, cluster.ErrMemberChange):
		return codeMemberChangeRefused
	case errors.Is(err, errNotCaughtUp):
		return codeNotCaughtUp
	}
	// Not the leader (any more), the change dropped for another one
	// pending, the node stopping: worth a retry.
	return api.CodeNoLeader
}

// changeHere does c on this node, which leads c's group: "already" if the
// group has it, "done" once applied.
func (f *front) changeHere(ctx context.Context, c memberChange) (string, error) {
	var have *cluster.Member
	for _, m := range f.node.Members(c.Group) {
		if m.ID == c.Node {
			have = &m
		}
	}
	mc := cluster.MemberChange{Node: c.Node, RaftAddr: c.RaftAddr, APIAddr: c.APIAddr}
	switch c.Op {
	case "add":
		if have != nil {
			return "already", nil
		}
		mc.Op = cluster.AddLearner
	case "promote":
		if have != nil && !have.Learner {
			return "already", nil
		}
		gs, err := f.node.GroupStatus(ctx, c.Group)
		if err != nil {
			return "", err
		}
		p, ok := gs.Progress[c.Node]
		if have != nil && (!ok || p.Lag > c.MaxLag) {
			return "", fmt.Errorf("%w: node %d lacks %d entries of group %d's log (at most %d)", errNotCaughtUp, c.Node, p.Lag, c.Group, c.MaxLag)
		}
		mc.Op = cluster.Promote
	case "remove":
		if have == nil {
			return "already", nil
		}
		mc.Op = cluster.Remove
	default:
		return "", fmt.Errorf("%w: unknown op %q", cluster.ErrMemberChange, c.Op)
	}
	if err := f.node.ChangeMembers(ctx, c.Group, mc); err != nil {
		return "", err
	}
	return "done", nil
}

// memberProblem is the leader's refusal of a change, from its answer.
type memberProblem struct{ Code, Detail string }

func (p *memberProblem) Error() string { return p.Code + ": " + p.Detail }

// changeThere hands c to leader over its API listener.
func (f *front) changeThere(ctx context.Context, leader uint64, c memberChange) (memberResult, error) {
	client := f.edge(leader)
	if client == nil {
		return memberResult{}, fmt.Errorf("node %d has no API address", leader)
	}
	body, _ := json.Marshal(c)
	req := fasthttp.AcquireRequest()
	defer fasthttp.ReleaseRequest(req)
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI("http://" + client.Addr + pathMembers)
	req.Header.SetMethod(fasthttp.MethodPost)
	req.Header.Set(headerForwarded, f.forwardToken)
	req.SetBody(body)
	deadline, _ := ctx.Deadline()
	if err := client.DoDeadline(req, resp, deadline); err != nil {
		return memberResult{}, fmt.Errorf("node %d: %w", leader, err)
	}
	if resp.StatusCode() != fasthttp.StatusOK {
		var p api.Problem
		if json.Unmarshal(resp.Body(), &p) == nil && p.Code != "" {
			return memberResult{}, &memberProblem{Code: p.Code, Detail: p.Detail}
		}
		return memberResult{}, fmt.Errorf("node %d answered %d: %.200s", leader, resp.StatusCode(), resp.Body())
	}
	var r memberResult
	if err := json.Unmarshal(resp.Body(), &r); err != nil {
		return memberResult{}, fmt.Errorf("node %d: %w", leader, err)
	}
	return r, nil
}

// serveMembers answers the internal route, forwarded by a node: it does
// the change if this node leads the group.
func (f *front) serveMembers(ctx *fasthttp.RequestCtx, forwarded bool) {
	if !forwarded {
		httpapi.WriteProblem(ctx, api.CodeNotFound, "no such route", 0)
		return
	}
	var c memberChange
	if !ctx.IsPost() || json.Unmarshal(ctx.PostBody(), &c) != nil || f.servers[c.Group] == nil {
		httpapi.WriteProblem(ctx, api.CodeValidationFailed, "a membership change is a POST of its JSON naming a group of this cluster", 0)
		return
	}
	if f.node.Leader(c.Group) != f.self {
		httpapi.WriteProblem(ctx, api.CodeNoLeader, fmt.Sprintf("node %d does not lead group %d (any more)", f.self, c.Group), retryAfterNoLeaderSeconds)
		return
	}
	pctx, cancel := context.WithTimeout(context.Background(), forwardTimeout)
	defer cancel()
	r, err := f.changeHere(pctx, c)
	if err != nil {
		code := memberCode(err)
		retry := 0
		if code == api.CodeNoLeader {
			retry = retryAfterNoLeaderSeconds
		}
		writeMemberProblem(ctx, code, fmt.Sprintf("node %d: group %d: %v", f.self, c.Group, err), retry)
		return
	}
	body, _ := json.Marshal(memberResult{Group: c.Group, Leader: f.self, Result: r})
	ctx.SetContentType("application/json")
	ctx.SetBody(body)
}

// writeMemberProblem answers the internal route's problem: an admin
// code's as the API's problems are written, the API's by httpapi.
func writeMemberProblem(ctx *fasthttp.RequestCtx, code, detail string, retryAfterSeconds int) {
	info, ok := adminCodes[code]
	if !ok {
		httpapi.WriteProblem(ctx, code, detail, retryAfterSeconds)
		return
	}
	body, _ := json.Marshal(api.Problem{Type: api.ProblemTypePrefix + code, Title: info.Title, Status: info.Status, Detail: detail, Code: code})
	ctx.SetStatusCode(info.Status)
	ctx.SetContentType("application/problem+json")
	ctx.SetBody(body)
}

// nodeIDs are the voters of every group as this node applied them, this
// node among them if it is one, sorted: the nodes the balancer and the
// SIGTERM hand-off may give a leadership to. A node added since the
// start is among them, one removed is not. fallback (the -peers) if no
// group names a voter yet.
func (f *front) nodeIDs(fallback []uint64) []uint64 {
	var ids []uint64
	for _, g := range f.groups {
		for _, m := range f.node.Members(g) {
			if !m.Learner && !slices.Contains(ids, m.ID) {
				ids = append(ids, m.ID)
			}
		}
	}
	if len(ids) == 0 {
		return fallback
	}
	slices.Sort(ids)
	return ids
}

// edge is the API client of node id: from -edges, or from the address a
// membership change gave the node; nil if none is known.
func (f *front) edge(id uint64) *fasthttp.HostClient {
	f.edgesMu.Lock()
	defer f.edgesMu.Unlock()
	if c := f.edges[id]; c != nil {
		return c
	}
	addr := f.node.MemberAPIAddr(id)
	if addr == "" {
		return nil
	}
	c := &fasthttp.HostClient{Addr: addr, MaxConns: 4096, MaxConnWaitTimeout: time.Second, ReadTimeout: forwardTimeout + httpapi.DefaultEventsWaitMax, WriteTimeout: forwardTimeout, NoDefaultUserAgentHeader: true}
	f.edges[id] = c
	return c
}

// runClusterAdd is `slotd cluster add -node N -raft-addr A -api-addr A`:
// the node is added as a learner to every group, then promoted in each
// once it lags at most -max-lag entries.
func runClusterAdd(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("slotd cluster add", flag.ContinueOnError)
	fs.SetOutput(stderr)
	admin := fs.String("admin-addr", envOr(getenv, "SLOTD_ADMIN_ADDR", "127.0.0.1:9090"), "admin listener `addresses` of running nodes, comma-separated: the first that answers is asked")
	node := fs.Uint64("node", 0, "the new node's `id`: never one the cluster had before")
	raftAddr := fs.String("raft-addr", "", "the new node's Raft listener, `host:port` (its -peers entry)")
	apiAddr := fs.String("api-addr", "", "the new node's API listener, `host:port` (its -edges entry)")
	maxLag := fs.Uint64("max-lag", 100, "promote the node to voter in a group once it lacks at most this many `entries` of the leader's log")
	timeout := fs.Duration("timeout", 10*time.Minute, "how long to wait for the node to catch up")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: slotd cluster add -node N -raft-addr HOST:PORT -api-addr HOST:PORT [-admin-addr ADDR,...] [-max-lag N]\n"+
			"Adds a node started with -join to every group: as a learner first, then as a voter once it caught up.")
		fs.PrintDefaults()
	}
	if code, ok := parseSub(fs, args, stderr); !ok {
		return code
	}
	if *node == 0 || *raftAddr == "" || *apiAddr == "" {
		fmt.Fprintln(stderr, "slotd cluster add: -node, -raft-addr and -api-addr are required")
		return 2
	}
	body, _ := json.Marshal(memberChange{Node: *node, RaftAddr: *raftAddr, APIAddr: *apiAddr})
	if code := membersCall(stderr, *admin, http.MethodPost, "/cluster/members", body, false); code != 0 {
		return code
	}
	fmt.Fprintf(stdout, "node %d added as a learner to every group\n", *node)
	deadline := time.Now().Add(*timeout)
	for {
		last := time.Now().After(deadline)
		code := membersCall(stderr, *admin, http.MethodPost, fmt.Sprintf("/cluster/members/%d/promote?max_lag=%d", *node, *maxLag), nil, !last)
		if code == 0 {
			fmt.Fprintf(stdout, "node %d is a voter of every group\n", *node)
			return 0
		}
		if code != -1 {
			return code
		}
		time.Sleep(time.Second)
	}
}

// runClusterRemove is `slotd cluster remove -node N`.
func runClusterRemove(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("slotd cluster remove", flag.ContinueOnError)
	fs.SetOutput(stderr)
	admin := fs.String("admin-addr", envOr(getenv, "SLOTD_ADMIN_ADDR", "127.0.0.1:9090"), "admin listener `addresses` of running nodes, comma-separated: the first that answers is asked")
	node := fs.Uint64("node", 0, "the `id` of the node to remove from every group; it may be dead")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: slotd cluster remove -node N [-admin-addr ADDR,...]\nRemoves a node from every group. Its id is never used again.")
		fs.PrintDefaults()
	}
	if code, ok := parseSub(fs, args, stderr); !ok {
		return code
	}
	if *node == 0 {
		fmt.Fprintln(stderr, "slotd cluster remove: -node is required")
		return 2
	}
	if code := membersCall(stderr, *admin, http.MethodDelete, fmt.Sprintf("/cluster/members/%d", *node), nil, false); code != 0 {
		return code
	}
	fmt.Fprintf(stdout, "node %d removed from every group\n", *node)
	return 0
}

// membersCall calls an admin route on the first of addrs that answers: 0
// on success; -1 when quietLag and the answer is not_caught_up (the
// caller waits and asks again); else 1 with one line on stderr.
func membersCall(stderr io.Writer, addrs, method, path string, body []byte, quietLag bool) int {
	client := &http.Client{Timeout: time.Minute}
	var errs []string
	for a := range strings.SplitSeq(addrs, ",") {
		if a = strings.TrimSpace(a); a == "" {
			continue
		}
		req, err := http.NewRequest(method, "http://"+a+path, strings.NewReader(string(body)))
		if err != nil {
			fmt.Fprintf(stderr, "slotd cluster: %v\n", err)
			return 2
		}
		resp, err := client.Do(req)
		if err != nil {
			errs = append(errs, fmt.Sprintf("%s: %v", a, rootCause(err)))
			continue
		}
		var ans membersAnswer
		err = json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&ans)
		resp.Body.Close()
		switch {
		case resp.StatusCode == http.StatusNotFound:
			errs = append(errs, a+": no "+path+": not a cluster node's admin listener, or of an older release")
			continue
		case err != nil:
			errs = append(errs, fmt.Sprintf("%s answered %s", a, resp.Status))
			continue
		case resp.StatusCode == http.StatusOK:
			return 0
		case quietLag && ans.Code == codeNotCaughtUp:
			return -1
		}
		fmt.Fprintf(stderr, "slotd cluster: %s %s: %s: %s\n", method, path, ans.Code, ans.Detail)
		return 1
	}
	fmt.Fprintf(stderr, "slotd cluster: no admin listener answered: %s\n", strings.Join(errs, "; "))
	return 1
}
