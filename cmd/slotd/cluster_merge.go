package main

// Routes that span the cluster's groups: the front asks every group (its
// Server here, or the group's leader) and merges the answers.

import (
	"encoding/json"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/valyala/fasthttp"

	"slotd/api"
	"slotd/httpapi"
)

// answer is one group's answer to a request.
type answer struct {
	status int
	body   []byte
	// replayed: the group answered from its idempotency store (the
	// request's Idempotency-Key had been answered before).
	replayed bool
}

// ask sends a copy of ctx's request, with its query replaced by query, to
// group g: its Server here, or the group's leader. A group that cannot
// be reached answers no_leader.
func (f *front) ask(ctx *fasthttp.RequestCtx, g uint64, query string) answer {
	return f.askWith(ctx, g, query, nil)
}

// askWith is ask with the copy of the request changed by prepare, if set,
// before it is sent.
func (f *front) askWith(ctx *fasthttp.RequestCtx, g uint64, query string, prepare func(req *fasthttp.Request)) answer {
	req := fasthttp.AcquireRequest()
	defer fasthttp.ReleaseRequest(req)
	ctx.Request.CopyTo(req)
	req.URI().SetQueryString(query)
	if prepare != nil {
		prepare(req)
	}
	if srv := f.localServer(g); srv != nil {
		var sub fasthttp.RequestCtx
		sub.Init(req, ctx.RemoteAddr().(*net.TCPAddr), nil)
		srv.Handler()(&sub)
		return answer{status: sub.Response.StatusCode(), body: append([]byte(nil), sub.Response.Body()...), replayed: isReplayed(&sub.Response)}
	}
	leader := f.node.Leader(g)
	client := f.edge(leader)
	if leader == 0 || leader == f.self || client == nil {
		return f.noLeader(g)
	}
	req.Header.Set(headerForwarded, f.forwardToken)
	req.Header.Set(headerGroup, strconv.FormatUint(g, 10))
	setClient(req, ctx)
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseResponse(resp)
	if err := client.DoTimeout(req, resp, forwardTimeout); err != nil {
		f.metrics.forwarded.WithLabelValues("unreachable").Inc()
		return f.noLeader(g)
	}
	f.metrics.forwarded.WithLabelValues("answered").Inc()
	return answer{status: resp.StatusCode(), body: append([]byte(nil), resp.Body()...), replayed: isReplayed(resp)}
}

func (f *front) noLeader(g uint64) answer {
	var c fasthttp.RequestCtx
	httpapi.WriteProblem(&c, api.CodeNoLeader, fmt.Sprintf("group %d has no reachable leader", g), retryAfterNoLeaderSeconds)
	return answer{status: c.Response.StatusCode(), body: append([]byte(nil), c.Response.Body()...)}
}

// relay answers ctx with a (a group's refusal, passed on as it is).
func relay(ctx *fasthttp.RequestCtx, a answer) {
	ctx.SetStatusCode(a.status)
	if a.status >= 400 {
		ctx.SetContentType("application/problem+json")
		if a.status == fasthttp.StatusServiceUnavailable {
			ctx.Response.Header.Set(fasthttp.HeaderRetryAfter, strconv.Itoa(retryAfterNoLeaderSeconds))
		}
	} else {
		ctx.SetContentType("application/json")
	}
	ctx.SetBody(a.body)
}

// spanning answers a route that spans groups and reports whether it was
// one.
func (f *front) spanning(ctx *fasthttp.RequestCtx) bool {
	if !ctx.IsGet() {
		return false
	}
	switch string(ctx.Path()) {
	case "/v1/offices":
		f.mergeList(ctx, "offices", func(a, b json.RawMessage) int { return strings.Compare(field(a, "id"), field(b, "id")) }, 0)
	case "/v1/search":
		limit := queryInt(ctx, "limit", httpapi.SearchLimitDefault)
		f.mergeList(ctx, "results", func(a, b json.RawMessage) int { return instant(a, "start").Compare(instant(b, "start")) }, limit)
	case "/v1/bookings":
		if ctx.QueryArgs().Has("number") {
			return false
		}
		f.pageBookings(ctx)
	case "/v1/events":
		f.events(ctx)
	default:
		return false
	}
	return true
}

// mergeList asks every group and answers the concatenation of their
// lists under key, sorted by cmp and cut at limit (0: no cut). Any
// group's refusal is the answer.
func (f *front) mergeList(ctx *fasthttp.RequestCtx, key string, cmp func(a, b json.RawMessage) int, limit int) {
	var all []json.RawMessage
	for _, g := range f.groups {
		a := f.ask(ctx, g, string(ctx.URI().QueryString()))
		if a.status != fasthttp.StatusOK {
			relay(ctx, a)
			return
		}
		var page map[string][]json.RawMessage
		if err := json.Unmarshal(a.body, &page); err != nil {
			httpapi.WriteProblem(ctx, api.CodeInternal, fmt.Sprintf("group %d answered what is not a list: %v", g, err), 0)
			return
		}
		all = append(all, page[key]...)
	}
	slices.SortStableFunc(all, cmp)
	if limit > 0 && len(all) > limit {
		all = all[:limit]
	}
	if all == nil {
		all = []json.RawMessage{}
	}
	b, _ := json.Marshal(map[string][]json.RawMessage{key: all})
	ctx.SetContentType("application/json")
	ctx.SetBody(b)
}

// pageBookings answers an applicant's list across groups: the groups'
// lists one after another, in group order. Its cursor "G.N" is the group
// and that group's own cursor.
func (f *front) pageBookings(ctx *fasthttp.RequestCtx) {
	limit := queryInt(ctx, "limit", httpapi.BookingsPageDefault)
	start, inner := 0, ""
	if c := string(ctx.QueryArgs().Peek("cursor")); c != "" {
		gs, n, ok := strings.Cut(c, ".")
		g, err := strconv.Atoi(gs)
		if !ok || err != nil || g < 1 || g > len(f.groups) {
			httpapi.WriteProblem(ctx, api.CodeValidationFailed, fmt.Sprintf("cursor %q is not one this list gave", c), 0)
			return
		}
		start, inner = g-1, n
	}
	var all []json.RawMessage
	next := ""
	for i := start; i < len(f.groups) && len(all) < limit; i++ {
		args := fasthttp.AcquireArgs()
		ctx.QueryArgs().CopyTo(args)
		args.Del("cursor")
		if inner != "" {
			args.Set("cursor", inner)
		}
		args.Set("limit", strconv.Itoa(limit-len(all)))
		a := f.ask(ctx, f.groups[i], args.String())
		fasthttp.ReleaseArgs(args)
		inner = ""
		if a.status != fasthttp.StatusOK {
			relay(ctx, a)
			return
		}
		var page struct {
			Bookings   []json.RawMessage `json:"bookings"`
			NextCursor string            `json:"next_cursor"`
		}
		if err := json.Unmarshal(a.body, &page); err != nil {
			httpapi.WriteProblem(ctx, api.CodeInternal, fmt.Sprintf("group %d answered what is not a list: %v", f.groups[i], err), 0)
			return
		}
		all = append(all, page.Bookings...)
		if page.NextCursor != "" {
			next = fmt.Sprintf("%d.%s", i+1, page.NextCursor)
			break
		}
		if len(all) >= limit && i+1 < len(f.groups) {
			next = fmt.Sprintf("%d.", i+2)
		}
	}
	if all == nil {
		all = []json.RawMessage{}
	}
	b, _ := json.Marshal(struct {
		Bookings   []json.RawMessage `json:"bookings"`
		NextCursor string            `json:"next_cursor"`
	}{all, next})
	ctx.SetContentType("application/json")
	ctx.SetBody(b)
}

func queryInt(ctx *fasthttp.RequestCtx, name string, def int) int {
	if n, err := strconv.Atoi(string(ctx.QueryArgs().Peek(name))); err == nil && n > 0 {
		return n
	}
	return def
}

// field reads a string field of a JSON object.
func field(obj json.RawMessage, name string) string {
	var m map[string]json.RawMessage
	_ = json.Unmarshal(obj, &m)
	var s string
	_ = json.Unmarshal(m[name], &s)
	return s
}

// instant reads an RFC 3339 field of a JSON object.
func instant(obj json.RawMessage, name string) time.Time {
	t, _ := time.Parse(time.RFC3339, field(obj, name))
	return t
}
