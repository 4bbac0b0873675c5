package main

// Region watches over several groups. A watch over a region asks for a
// seat at any office of the region, and a region's offices may lie in
// several groups, each with its own engine. The front makes such a watch
// of parts, one in each group that has an office of the region offering
// the service, all under one id that the front chooses; the id's first
// byte, which names a booking's or a watch's group, is 0, which no group
// has, and marks a watch of parts. Each part is an ordinary region watch
// of its group's engine, served by that engine's freed and released
// seats (allocator W1–W5). Deleting the id deletes every part.
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
	"net/url"

	"github.com/valyala/fasthttp"

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
	case ctx.IsDelete():
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
			f.log.Warn("a part of a refused region watch was not deleted; its applicant can delete the watch by its id")
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
