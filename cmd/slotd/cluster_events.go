package main

// GET /v1/events with more than one group: one feed merged from the
// groups' feeds, resumable from any node.
//
// Each group's feed is in its own cursor order, and a group's cursors are
// assigned in its Raft log order (wal.DB.ApplyStaged): every replica of
// the group gives an event the same cursor. A position in the merged feed
// is therefore a position in every group's feed: the groups' cursors
// joined with dots in group order, "c1.c2.….cK". It means the same on
// every node, before and after a change of leader, and across restarts.
// With one group the front never comes here and the cursor stays the
// group's plain decimal one.
//
// A request asks every group (front.ask: its Server here, or its leader)
// for a page from that group's cursor, and merges the pages:
//
//	F1. Each group's events keep their feed's order; between groups the
//	    merge takes the earliest event time first, ties by group. A group
//	    whose page was full may have more that sort before the others'
//	    remaining events, so the merge stops where such a group's page
//	    ends. Order across groups is by time as far as one page sees.
//	F2. The merged next_cursor holds, for a group whose page was
//	    delivered whole, that page's next_cursor (which skips the events
//	    the key does not see); for a group whose page the limit cut, the
//	    cursor of its last event delivered (or its cursor as asked). So
//	    each group's cursor only rises, and no event the key sees is
//	    skipped or, under one cursor, delivered twice.
//	F3. An event's own cursor in the merged feed is the merged position
//	    just after it (F2's vector as it stood once the event was taken):
//	    a consumer that stores the cursor of each event it handled
//	    resumes after that event, as with one group.
//	F4. Any group's refusal is the answer, as that group gave it:
//	    410 cursor_expired for a cursor below a group's retention mark,
//	    503 no_leader while a group elects, 400 for a bad limit= or an
//	    unknown parameter.
//
// wait= long-polls without holding a long-poll on any group's Server:
// the groups are asked without wait, and if no group had an event the key
// sees, the request waits on this node's own replicas of the groups
// (wal.DB.Wait; every node applies every group's committed entries) for
// an event past the group's cursor, then asks those groups again. A
// replica here may lag its leader, or run ahead of it for a moment: the
// wait is rechecked against every group each feedRecheck, and a wake-up
// that finds nothing new at the leader pauses feedRetryPause before it
// waits again.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/valyala/fasthttp"

	"slotd/api"
	"slotd/httpapi"
)

const (
	// feedRecheck bounds one wait on the replicas here before every
	// group is asked again: the latency of an event whose replica here
	// lags or is stuck.
	feedRecheck = time.Second
	// feedRetryPause is the pause after a wake-up whose groups had
	// nothing new yet (their leader had not applied what the replica
	// here had).
	feedRetryPause = 50 * time.Millisecond
	// feedPageDefault is GET /v1/events' limit= when absent, as the
	// groups' Servers take it.
	feedPageDefault = 100
	// feedCursorPartBytesMax is the digits of one group's cursor.
	feedCursorPartBytesMax = 20
)

// feedPollers bounds the merged long-polls waiting at once on this
// node, as httpapi.Config.PollersMax bounds a Server's; beyond them a
// long-poll is refused with 503 overloaded. A process runs one front.
var feedPollers = make(chan struct{}, httpapi.DefaultPollersMax)

// feedEvent is one event of a group's page.
type feedEvent struct {
	raw    json.RawMessage
	cursor uint64
	at     time.Time
}

// feedPage is one group's page, parsed.
type feedPage struct {
	events []feedEvent
	next   uint64
	full   bool // as many events as limit=: the group may have more
}

// mergedEvent is an event of the merged page with its merged cursor (F3).
type mergedEvent struct {
	raw    json.RawMessage
	cursor string
}

// events answers GET /v1/events across the groups.
func (f *front) events(ctx *fasthttp.RequestCtx) {
	pos, err := f.parseFeedCursor(ctx.QueryArgs().Peek("after"))
	if err != nil {
		httpapi.WriteProblem(ctx, api.CodeValidationFailed, err.Error(), 0)
		return
	}
	waitMax := int(httpapi.DefaultEventsWaitMax / time.Second)
	wait := 0
	if v := ctx.QueryArgs().Peek("wait"); v != nil {
		if wait, err = strconv.Atoi(string(v)); err != nil || wait < 0 || wait > waitMax {
			httpapi.WriteProblem(ctx, api.CodeValidationFailed, fmt.Sprintf("wait %q must be an integer in 0..%d", v, waitMax), 0)
			return
		}
	}
	limit := queryInt(ctx, "limit", feedPageDefault)

	all := make([]int, len(f.groups))
	for i := range all {
		all[i] = i
	}
	merged, ok := f.feedRound(ctx, all, pos, limit)
	if !ok || len(merged) > 0 || wait == 0 {
		if ok {
			writeFeed(ctx, merged, pos)
		}
		return
	}
	select {
	case feedPollers <- struct{}{}:
		defer func() { <-feedPollers }()
	default:
		httpapi.WriteProblem(ctx, api.CodeOverloaded, "too many event long-polls wait on this node; poll again", 1)
		return
	}
	// ctx is done when the API listener shuts down.
	pollCtx, cancel := context.WithTimeout(ctx, time.Duration(wait)*time.Second)
	defer cancel()
	for pollCtx.Err() == nil {
		woken := f.feedWake(pollCtx, pos)
		if pollCtx.Err() != nil {
			break
		}
		if woken == nil {
			woken = all // the recheck: ask every group
		}
		before := slices.Clone(pos)
		merged, ok = f.feedRound(ctx, woken, pos, limit)
		if !ok {
			return
		}
		if len(merged) > 0 {
			break
		}
		if slices.Equal(pos, before) {
			pause := time.NewTimer(feedRetryPause)
			select {
			case <-pause.C:
			case <-pollCtx.Done():
				pause.Stop()
			}
		}
	}
	writeFeed(ctx, merged, pos)
}

// parseFeedCursor reads after=: absent or "0" is a new reader (every
// group from its oldest event kept), else one decimal cursor per group
// joined by dots.
func (f *front) parseFeedCursor(after []byte) ([]uint64, error) {
	pos := make([]uint64, len(f.groups))
	if after == nil || string(after) == "0" {
		return pos, nil
	}
	bad := func() error {
		return fmt.Errorf("after %q is not a cursor of this cluster's feed: with %d groups a cursor is %d decimal cursors joined by dots, as next_cursor gives them",
			truncate(after, 64), len(f.groups), len(f.groups))
	}
	if len(after) > len(f.groups)*(feedCursorPartBytesMax+1) {
		return nil, bad()
	}
	parts := bytes.Split(after, []byte("."))
	if len(parts) != len(f.groups) {
		return nil, bad()
	}
	for i, p := range parts {
		if len(p) == 0 || len(p) > feedCursorPartBytesMax {
			return nil, bad()
		}
		n, err := strconv.ParseUint(string(p), 10, 64)
		if err != nil {
			return nil, bad()
		}
		pos[i] = n
	}
	return pos, nil
}

func truncate(b []byte, n int) string {
	if len(b) > n {
		return string(b[:n]) + "…"
	}
	return string(b)
}

func formatCursors(pos []uint64) []string {
	out := make([]string, len(pos))
	for i, c := range pos {
		out[i] = strconv.FormatUint(c, 10)
	}
	return out
}

// feedRound asks the groups at indexes which (in parallel), each from its
// cursor in pos, and merges their pages; pos moves to the merged page's
// next_cursor (F2). On a group's refusal it answers ctx with it (F4) and
// returns false.
func (f *front) feedRound(ctx *fasthttp.RequestCtx, which []int, pos []uint64, limit int) ([]mergedEvent, bool) {
	args := fasthttp.AcquireArgs()
	defer fasthttp.ReleaseArgs(args)
	ctx.QueryArgs().CopyTo(args)
	args.Del("after")
	args.Del("wait")
	// Each ask gets a request of its own: fasthttp's Request is not safe
	// to copy from several goroutines at once.
	subs := make([]*fasthttp.RequestCtx, len(which))
	queries := make([]string, len(which))
	for j, i := range which {
		subs[j] = new(fasthttp.RequestCtx)
		subs[j].Init(&ctx.Request, ctx.RemoteAddr(), nil)
		args.Set("after", strconv.FormatUint(pos[i], 10))
		queries[j] = args.String()
	}
	answers := make([]answer, len(which))
	var wg sync.WaitGroup
	for j, i := range which {
		wg.Go(func() { answers[j] = f.ask(subs[j], f.groups[i], queries[j]) })
	}
	wg.Wait()
	pages := make([]*feedPage, len(f.groups))
	for j, i := range which {
		a := answers[j]
		if a.status != fasthttp.StatusOK {
			relay(ctx, a)
			if a.status == fasthttp.StatusTooManyRequests {
				ctx.Response.Header.Set(fasthttp.HeaderRetryAfter, "1")
			}
			return nil, false
		}
		p, err := parseFeedPage(a.body, limit, pos[i])
		if err != nil {
			httpapi.WriteProblem(ctx, api.CodeInternal, fmt.Sprintf("group %d answered what is not a page of events: %v", f.groups[i], err), 0)
			return nil, false
		}
		pages[i] = p
	}
	return mergeFeed(pages, pos, limit), true
}

// parseFeedPage reads a group's page asked from cursor after, and holds
// it to the feed's promise: cursors above after, rising, next_cursor at
// or past them.
func parseFeedPage(body []byte, limit int, after uint64) (*feedPage, error) {
	var page struct {
		Events     []json.RawMessage `json:"events"`
		NextCursor string            `json:"next_cursor"`
	}
	if err := json.Unmarshal(body, &page); err != nil {
		return nil, err
	}
	next, err := strconv.ParseUint(page.NextCursor, 10, 64)
	if err != nil {
		return nil, fmt.Errorf("next_cursor %q", page.NextCursor)
	}
	p := &feedPage{next: next, full: len(page.Events) >= limit}
	for _, raw := range page.Events {
		var e struct {
			Cursor string    `json:"cursor"`
			At     time.Time `json:"at"`
		}
		if err := json.Unmarshal(raw, &e); err != nil {
			return nil, err
		}
		c, err := strconv.ParseUint(e.Cursor, 10, 64)
		if err != nil || !bytes.HasPrefix(raw, []byte(`{"cursor":"`+e.Cursor+`"`)) {
			return nil, fmt.Errorf("an event does not begin with its cursor: %.64s", raw)
		}
		if c <= after {
			return nil, fmt.Errorf("cursor %d is not past %d", c, after)
		}
		after = c
		p.events = append(p.events, feedEvent{raw: raw, cursor: c, at: e.At})
	}
	if next < after {
		return nil, fmt.Errorf("next_cursor %d is below cursor %d", next, after)
	}
	return p, nil
}

// mergeFeed merges the groups' pages (nil: a group not asked) into at
// most limit events (F1), moving pos to the merged page's next_cursor
// (F2) and giving each event the position just after it (F3).
func mergeFeed(pages []*feedPage, pos []uint64, limit int) []mergedEvent {
	taken := make([]int, len(pages))
	var out []mergedEvent
	for len(out) < limit {
		best := -1
		for i, p := range pages {
			if p == nil || taken[i] == len(p.events) {
				continue
			}
			if best < 0 || p.events[taken[i]].at.Before(pages[best].events[taken[best]].at) {
				best = i // ties keep the lower group
			}
		}
		if best < 0 {
			break
		}
		e := pages[best].events[taken[best]]
		taken[best]++
		pos[best] = e.cursor
		out = append(out, mergedEvent{raw: e.raw, cursor: strings.Join(formatCursors(pos), ".")})
		if pages[best].full && taken[best] == len(pages[best].events) {
			break // F1: the group may have more before the others' rest
		}
	}
	for i, p := range pages {
		if p != nil && taken[i] == len(p.events) {
			pos[i] = p.next
		}
	}
	return out
}

// feedWake waits until a replica here holds an event past its group's
// cursor in pos, at most feedRecheck, and returns the indexes of the
// groups that do; nil when the wait ran out (or ctx is done).
func (f *front) feedWake(ctx context.Context, pos []uint64) []int {
	ahead := func() []int {
		var out []int
		for i, g := range f.groups {
			if f.stores[g].PublishedCursor() > pos[i] {
				out = append(out, i)
			}
		}
		return out
	}
	if woken := ahead(); woken != nil {
		return woken
	}
	wctx, cancel := context.WithTimeout(ctx, feedRecheck)
	defer cancel()
	woke := make(chan struct{}, len(f.groups))
	var wg sync.WaitGroup
	for i, g := range f.groups {
		wg.Go(func() {
			if f.stores[g].Wait(wctx, pos[i]) == nil {
				woke <- struct{}{}
			}
		})
	}
	select {
	case <-woke:
	case <-wctx.Done():
	}
	cancel()
	wg.Wait()
	return ahead()
}

// writeFeed answers {"events":[…],"next_cursor":"c1.….cK"}.
func writeFeed(ctx *fasthttp.RequestCtx, events []mergedEvent, pos []uint64) {
	b := append(make([]byte, 0, 64+len(events)*640), `{"events":[`...)
	prefix := len(`{"cursor":"`)
	for i, e := range events {
		if i > 0 {
			b = append(b, ',')
		}
		// The group's cursor is replaced by the merged one (F3); the
		// event begins with it (parseFeedPage checked).
		end := prefix + bytes.IndexByte(e.raw[prefix:], '"')
		b = append(b, `{"cursor":"`...)
		b = append(b, e.cursor...)
		b = append(b, e.raw[end:]...)
	}
	b = append(b, `],"next_cursor":"`...)
	b = append(b, strings.Join(formatCursors(pos), ".")...)
	b = append(b, `"}`...)
	ctx.SetStatusCode(fasthttp.StatusOK)
	ctx.SetContentType("application/json")
	ctx.SetBody(b)
}
