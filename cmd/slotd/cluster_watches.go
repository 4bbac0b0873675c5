package main

// Region watches over several groups. A watch over a region asks for a
// seat at any office of the region, and a region's offices may lie in
// several groups, each with its own engine. The front makes such a watch
// of parts, one in each group that has an office of the region offering
// the service, all under one id that the front chooses; the id's first
// byte, which names a booking's or a watch's group, is 0, which no group
// has, and marks a watch of parts. Each part is an ordinary region watch
// of its group's engine, served by that engine's freed and released
// seats (allocator W1–W5). Deleting the id deletes every part. A part
// served ends the others: every node reads the groups' feeds on its own
// replicas and, for a watch.matched of a watch of parts, ends the watch's
// part in each group it leads (endServedParts). Until then, a fraction of
// a second, a seat freed in another group may serve that group's part
// too: the watch is served once but for that moment.
//
// Rejected: one part in a "home" group that asks the other groups for
// their freed seats. The seat would have to be offered across groups
// before its bits are released (allocator W1), which is a transaction
// over two groups' logs that the cluster does not have.

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/valyala/fasthttp"
	"go.uber.org/zap"

	"slotd/allocator"
)

// headerWatchID names, on the front's request to a group for one part of
// a region watch, the id the part takes (httpapi.Config.WatchID). It is
// honoured only from the front itself or under the forward token: from
// anyone else fromPeer drops it, so no client chooses a watch's id.
const headerWatchID = "X-Slotd-Watch-Id"

// watchIDOf is the groups' httpapi.Config.WatchID.
func watchIDOf(ctx *fasthttp.RequestCtx) (allocator.ID, bool) {
	h := ctx.Request.Header.Peek(headerWatchID)
	if len(h) == 0 {
		return allocator.ID{}, false
	}
	id, err := allocator.ParseID(string(h))
	return id, err == nil
}

// regionWatch answers POST /v1/watches for a region, and DELETE of a
// watch of parts, with more than one group, and reports whether ctx was
// one of them.
func (f *front) regionWatch(ctx *fasthttp.RequestCtx) bool {
	switch {
	case ctx.IsPost() && string(ctx.Path()) == "/v1/watches":
		var body struct {
			Applicant string `json:"applicant"`
			Office    string `json:"office"`
			Region    string `json:"region"`
		}
		if json.Unmarshal(ctx.PostBody(), &body) != nil || body.Office != "" || body.Region == "" {
			return false // the group's Server says what is wrong with it
		}
		f.createRegionWatch(ctx, body.Applicant)
		return true
	case ctx.IsDelete() && strings.HasPrefix(string(ctx.Path()), "/v1/watches/"):
		// groupOf found an id of a watch of parts here.
		f.deleteRegionWatch(ctx)
		return true
	}
	return false
}

// createRegionWatch creates a part in every group whose Server takes it,
// each under one id. A group with no office of the region offering the
// service answers 404 and has no part. The first other refusal (a bad
// key, a limit, a group without a leader) is the answer, and the parts
// created before it are deleted again, so that a refused watch leaves
// none behind to hold seats for nobody.
func (f *front) createRegionWatch(ctx *fasthttp.RequestCtx, bodyApplicant string) {
	id := f.regionWatchID(ctx)
	query := string(ctx.URI().QueryString())
	named := func(req *fasthttp.Request) { req.Header.Set(headerWatchID, id.String()) }
	var made []uint64 // the parts this request made, not replays
	var first, notFound *answer
	for _, g := range f.groups {
		a := f.askWith(ctx, g, query, named)
		switch {
		case a.status == fasthttp.StatusCreated:
			if !a.replayed {
				made = append(made, g)
			}
			if first == nil {
				first = &a
			}
			continue
		case a.status == fasthttp.StatusNotFound:
			if notFound == nil {
				notFound = &a
			}
			continue
		}
		f.undoRegionWatch(ctx, id, bodyApplicant, made)
		relay(ctx, a)
		return
	}
	if first == nil {
		relay(ctx, *notFound)
		return
	}
	if first.replayed {
		ctx.Response.Header.Set("Idempotent-Replayed", "true")
	}
	relay(ctx, *first)
}

// undoRegionWatch deletes the parts of watch id that this request made
// in groups. A part a group answered from its idempotency store belongs
// to an earlier request and is not among them.
func (f *front) undoRegionWatch(ctx *fasthttp.RequestCtx, id allocator.ID, bodyApplicant string, groups []uint64) {
	applicant := bodyApplicant
	if applicant == "" {
		applicant = string(ctx.QueryArgs().Peek("applicant"))
	}
	query := ""
	if applicant != "" {
		query = "applicant=" + url.QueryEscape(applicant)
	}
	del := func(req *fasthttp.Request) {
		req.Header.SetMethod(fasthttp.MethodDelete)
		req.URI().SetPath("/v1/watches/" + id.String())
		req.Header.Del("Idempotency-Key")
		req.Header.Del(headerWatchID)
		req.SetBody(nil)
	}
	for _, g := range groups {
		if a := f.askWith(ctx, g, query, del); a.status != fasthttp.StatusNoContent {
			f.log.Warn("a part of a refused region watch was not deleted", zap.Uint64("group", g), zap.String("watch", id.String()), zap.Int("status", a.status))
		}
	}
}

// regionWatchID returns the id of a new watch of parts: first byte 0.
// With an Idempotency-Key it is derived from the key and the request's
// credentials, so that a retry names the parts it finds in each group's
// idempotency store, and makes the missing ones, under the same id.
func (f *front) regionWatchID(ctx *fasthttp.RequestCtx) allocator.ID {
	var id allocator.ID
	if key := ctx.Request.Header.Peek("Idempotency-Key"); len(key) > 0 {
		m := hmac.New(sha256.New, []byte(f.forwardToken))
		m.Write([]byte("slotd region watch\x00"))
		m.Write(ctx.Request.Header.Peek(fasthttp.HeaderAuthorization))
		m.Write([]byte{0})
		m.Write(key)
		copy(id[:], m.Sum(nil))
	} else {
		_, _ = rand.Read(id[:])
	}
	id[0] = 0
	return id
}

// deleteRegionWatch deletes the parts of a watch of parts in every group.
// 204 if a group deleted one; a refusal other than 404 (a group without a
// leader) is the answer, so that the client retries until no part is
// left; 404 if no group has one.
func (f *front) deleteRegionWatch(ctx *fasthttp.RequestCtx) {
	query := string(ctx.URI().QueryString())
	var refusal, notFound *answer
	deleted := false
	for _, g := range f.groups {
		a := f.ask(ctx, g, query)
		switch a.status {
		case fasthttp.StatusNoContent:
			deleted = true
		case fasthttp.StatusNotFound:
			if notFound == nil {
				notFound = &a
			}
		default:
			if refusal == nil {
				refusal = &a
			}
		}
	}
	switch {
	case refusal != nil:
		relay(ctx, *refusal)
	case deleted:
		ctx.SetStatusCode(fasthttp.StatusNoContent)
	default:
		relay(ctx, *notFound)
	}
}

// isReplayed reports whether a group answered resp from its idempotency
// store.
func isReplayed(resp *fasthttp.Response) bool {
	return string(resp.Header.Peek("Idempotent-Replayed")) == "true"
}

// Ending the parts of a served region watch: how often a node reads the
// groups' feeds, the most events one read takes, how long a served part
// is retried for groups that have no engine here yet (an election), and
// the most served parts waiting so.
const (
	servedPartsPollInterval = 200 * time.Millisecond
	servedPartsPageMax      = 1000
	servedPartsRetry        = time.Minute
	servedPartsPendingMax   = 4096
)

// servedPart is a part of a region watch that was served, whose siblings
// are being ended.
type servedPart struct {
	id     allocator.ID
	served uint64          // the group that served it
	seen   time.Time       // when this node read its watch.matched
	done   map[uint64]bool // the groups whose part this node ended or found gone
	warned bool            // a failure to end one was logged
}

// endServedParts reads every group's feed on this node's replicas, from
// where it stood at the start, and for each watch.matched of a watch of
// parts ends the watch's part in every other group whose engine runs
// here. A group with no engine here is tried again on each read for
// servedPartsRetry, so a group electing a leader when the part was served
// has its part ended by the new leader. Every node does the same, so the
// node that leads a group then ends the group's part. Left active: a part
// whose group had no leader for servedPartsRetry, or whose leader
// restarted before it read the event.
func (f *front) endServedParts(stop <-chan struct{}) {
	pos := make(map[uint64]uint64, len(f.groups))
	for _, g := range f.groups {
		pos[g] = f.stores[g].PublishedCursor()
	}
	var pending []*servedPart
	t := time.NewTicker(servedPartsPollInterval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		now := time.Now()
		for _, g := range f.groups {
			for {
				evs, err := f.stores[g].ReadEvents(pos[g], servedPartsPageMax)
				if err != nil {
					break // a closing or degraded store; the node's own checks report it
				}
				for i := range evs {
					ev := &evs[i]
					pos[g] = ev.Cursor
					if ev.Type == allocator.EventWatchMatched && ev.Watch != nil && ev.Watch.ID[0] == 0 {
						if len(pending) == servedPartsPendingMax {
							f.log.Warn("too many served region watches waiting for their other parts to end; the oldest is left", zap.String("watch", pending[0].id.String()))
							pending = pending[1:]
						}
						pending = append(pending, &servedPart{id: ev.Watch.ID, served: g, seen: now, done: map[uint64]bool{}})
					}
				}
				if len(evs) < servedPartsPageMax {
					break
				}
			}
		}
		pending = slices.DeleteFunc(pending, func(p *servedPart) bool {
			return f.endParts(p) || now.Sub(p.seen) > servedPartsRetry
		})
	}
}

// endParts ends p's siblings in the groups this node runs the engine of,
// and reports whether every other group's is ended or gone.
func (f *front) endParts(p *servedPart) bool {
	for _, h := range f.groups {
		if h == p.served || p.done[h] {
			continue
		}
		e := f.rep.Engine(h)
		if e == nil {
			continue
		}
		err := e.Unwatch(time.Now(), p.id, "", allocator.Meta{Actor: "cluster", Reason: "another part of the region watch was served"})
		switch {
		case err == nil || errors.Is(err, allocator.ErrWatchNotFound):
			p.done[h] = true
		case !p.warned:
			p.warned = true
			f.log.Warn("cannot end a part of a served region watch; trying again", zap.Uint64("group", h), zap.String("watch", p.id.String()), zap.Error(err))
		}
	}
	return len(p.done) == len(f.groups)-1
}
