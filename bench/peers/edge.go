package peers

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/valyala/fasthttp"

	"slotd/api"
	"slotd/internal/flatjson"
	"slotd/internal/jsontime"
)

// The edge: the routes and JSON of DESIGN §3 that the rush uses, the same
// for every Backend. It has no auth, idempotency, metrics or server-side
// timeouts — none of the three pays for them — so what differs between
// the runs is the Backend.

// requestBodyBytesMax bounds a request body; larger ones are refused with
// 400 before they are decoded.
const requestBodyBytesMax = 4 << 10

type holdJSON struct {
	Office    string    `json:"office"`
	Service   string    `json:"service"`
	Applicant string    `json:"applicant"`
	Start     time.Time `json:"start"`
	Confirm   bool      `json:"confirm"`
}

type cancelJSON struct {
	Applicant string `json:"applicant"`
	Reason    string `json:"reason"`
}

// NewEdge returns the HTTP handler serving b:
//
//	GET  /v1/offices/{office}/days/{date}/slots?service=  → 200 {"slots": [{start, free}]}
//	POST /v1/bookings {office, service, applicant, start} → 201 booking (confirmed), 409 slot_taken
//	POST /v1/bookings/{id}/cancel {applicant, reason}     → 200 booking id and status
//
// Every booking is held and confirmed in one step, as with confirm:true.
// Safe for concurrent use if b is.
func NewEdge(b Backend, lay Layout) fasthttp.RequestHandler {
	slots := map[string]*slotsTemplate{}
	for _, d := range lay.Dates {
		slots[d] = newSlotsTemplate(&lay, d)
	}
	return func(ctx *fasthttp.RequestCtx) {
		path := string(ctx.Path())
		switch {
		case ctx.IsGet() && strings.HasPrefix(path, "/v1/offices/") && strings.HasSuffix(path, "/slots"):
			edgeSlots(ctx, b, slots, path)
		case ctx.IsPost() && path == "/v1/bookings":
			edgeHold(ctx, b)
		case ctx.IsPost() && strings.HasPrefix(path, "/v1/bookings/") && strings.HasSuffix(path, "/cancel"):
			edgeCancel(ctx, b, path)
		default:
			problem(ctx, fasthttp.StatusNotFound, api.CodeNotFound, "no route "+string(ctx.Method())+" "+path)
		}
	}
}

// freePool holds the edge's slices of free counts, one per availability
// read in flight.
var freePool = sync.Pool{New: func() any { return new([]int) }}

func edgeSlots(ctx *fasthttp.RequestCtx, b Backend, slots map[string]*slotsTemplate, path string) {
	// /v1/offices/{office}/days/{date}/slots
	parts := strings.Split(path, "/")
	if len(parts) != 7 || parts[4] != "days" {
		problem(ctx, fasthttp.StatusNotFound, api.CodeNotFound, "no route GET "+path)
		return
	}
	date := parts[5]
	buf := freePool.Get().(*[]int)
	defer freePool.Put(buf)
	free, err := b.Availability(ctx, parts[3], date, string(ctx.QueryArgs().Peek("service")), (*buf)[:0])
	*buf = free
	if err != nil {
		backendProblem(ctx, err)
		return
	}
	t := slots[date]
	if t == nil || len(free) != len(t.ends) {
		problem(ctx, fasthttp.StatusInternalServerError, api.CodeInternal,
			"the backend's starts of "+date+" are not the layout's")
		return
	}
	ctx.SetStatusCode(fasthttp.StatusOK)
	ctx.SetContentType("application/json")
	ctx.Response.SwapBody(appendSlotsJSON(bodyBuffer(ctx), t, free))
}

// bodyBuffer takes the response's body buffer, emptied, to append an
// answer to and swap back: the buffer is kept from one answer to the
// next, so writing one allocates nothing.
func bodyBuffer(ctx *fasthttp.RequestCtx) []byte {
	return ctx.Response.SwapBody(nil)[:0]
}

func edgeHold(ctx *fasthttp.RequestCtx, b Backend) {
	var req holdJSON
	if !decode(ctx, &req) {
		return
	}
	if req.Office == "" || req.Service == "" || req.Applicant == "" || req.Start.IsZero() {
		problem(ctx, fasthttp.StatusBadRequest, api.CodeValidationFailed, "office, service, applicant and start are required")
		return
	}
	bk, err := b.Hold(ctx, HoldRequest{Office: req.Office, Service: req.Service, Applicant: req.Applicant, Start: req.Start})
	if err != nil {
		backendProblem(ctx, err)
		return
	}
	ctx.SetStatusCode(fasthttp.StatusCreated)
	ctx.SetContentType("application/json")
	ctx.Response.SwapBody(appendBookingJSON(bodyBuffer(ctx), &bk))
}

func edgeCancel(ctx *fasthttp.RequestCtx, b Backend, path string) {
	id := strings.TrimSuffix(strings.TrimPrefix(path, "/v1/bookings/"), "/cancel")
	var req cancelJSON
	if !decode(ctx, &req) {
		return
	}
	if err := b.Cancel(ctx, id, req.Applicant); err != nil {
		backendProblem(ctx, err)
		return
	}
	reply(ctx, fasthttp.StatusOK, struct {
		ID     string `json:"id"`
		Status string `json:"status"`
	}{id, statusCancelled})
}

// slotsHead and slotsTail enclose the entries of an availability answer.
const slotsHead, slotsTail = `{"slots":[`, `]}`

// slotsTemplate is the availability answer of one date without its free
// counts: every start is in every answer, in order, so the entries up to
// each count, `{"start":"…","free":`, are written once per date (by the
// edge's encoder, jsontime) and an answer copies them and writes the
// counts. Read-only once made.
type slotsTemplate struct {
	entries []byte // each start's entry up to its count, a ',' before all but the first
	ends    []int  // the end of each entry in entries
}

// newSlotsTemplate writes the entries of date's starts in lay. A layout
// is in UTC, so every start is its step's distance from the first.
func newSlotsTemplate(lay *Layout, date string) *slotsTemplate {
	t := &slotsTemplate{}
	var day jsontime.DayClock
	day.Init(lay.Start(date, 0))
	for s := range lay.Steps() {
		if s > 0 {
			t.entries = append(t.entries, ',')
		}
		t.entries = append(t.entries, `{"start":`...)
		t.entries = day.AppendAfter(t.entries, s*lay.StepMinutes*60)
		t.entries = append(t.entries, `,"free":`...)
		t.ends = append(t.ends, len(t.entries))
	}
	return t
}

// appendSlotsJSON writes {"slots": [{start, free}, …]} with t's starts
// and free's counts (one per start of t), as json.Marshal would: the
// availability answer is the largest the rush reads, once per applicant,
// and what the edge spends on it counts for every backend alike.
func appendSlotsJSON(b []byte, t *slotsTemplate, free []int) []byte {
	b = append(b, slotsHead...)
	from := 0
	for s, end := range t.ends {
		b = append(b, t.entries[from:end]...)
		from = end
		b = strconv.AppendInt(b, int64(free[s]), 10)
		b = append(b, '}')
	}
	return append(b, slotsTail...)
}

// appendBookingJSON writes the members of the API's booking JSON
// (api.Booking) that the rush reads, in its order; the peers keep no
// history, hold expiry or namespace.
func appendBookingJSON(b []byte, bk *Booking) []byte {
	field := func(b []byte, name, v string) []byte {
		b = append(b, '"')
		b = append(b, name...)
		b = append(b, `":`...)
		return appendJSONString(b, v)
	}
	b = field(append(b, '{'), "id", bk.ID)
	b = field(append(b, ','), "number", bk.Number)
	b = field(append(b, ','), "office", bk.Office)
	b = field(append(b, ','), "service", bk.Service)
	b = field(append(b, ','), "applicant", bk.Applicant)
	b = append(b, `,"window":`...)
	b = strconv.AppendInt(b, int64(bk.Window), 10)
	b = append(b, `,"start":`...)
	b = jsontime.Append(b, bk.Start)
	b = append(b, `,"end":`...)
	b = jsontime.Append(b, bk.End)
	b = field(append(b, ','), "status", bk.Status)
	return append(b, '}')
}

// appendJSONString quotes v as encoding/json does: plain printable ASCII
// directly, anything else through json.Marshal.
func appendJSONString(b []byte, v string) []byte {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(v)
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, v...)
	return append(b, '"')
}

// decode reads the JSON body into v, refusing unknown fields, and answers
// 400 itself when it cannot.
func decode(ctx *fasthttp.RequestCtx, v any) bool {
	body := ctx.PostBody()
	if len(body) > requestBodyBytesMax {
		problem(ctx, fasthttp.StatusBadRequest, api.CodeValidationFailed, "request body too large")
		return false
	}
	if err := decodeJSON(body, v); err != nil {
		problem(ctx, fasthttp.StatusBadRequest, api.CodeValidationFailed, "malformed JSON: "+err.Error())
		return false
	}
	return true
}

// decodeJSON reads body into v, a pointer to a zero value, as a
// json.Decoder that refuses unknown fields reads it: by flatjson.Decode
// first, and by encoding/json only when that declines. The rush's plain
// bodies skip encoding/json's decoder, which took about a tenth of the
// edge's CPU at 256 connections, for every backend alike.
func decodeJSON(body []byte, v any) error {
	if flatjson.Decode(body, v) {
		return nil
	}
	reflect.ValueOf(v).Elem().SetZero() // forget what Decode set
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

func reply(ctx *fasthttp.RequestCtx, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		panic("BUG: peers: cannot encode a reply: " + err.Error())
	}
	ctx.SetStatusCode(status)
	ctx.SetContentType("application/json")
	ctx.SetBody(body)
}

func backendProblem(ctx *fasthttp.RequestCtx, err error) {
	switch {
	case errors.Is(err, ErrSlotTaken):
		// The rush's most frequent answer, the same for every backend.
		ctx.SetStatusCode(fasthttp.StatusConflict)
		ctx.SetContentType("application/problem+json")
		ctx.SetBody(slotTakenBody)
	case errors.Is(err, ErrDuplicate):
		problem(ctx, fasthttp.StatusConflict, api.CodeDuplicateBooking, err.Error())
	case errors.Is(err, ErrTransition):
		problem(ctx, fasthttp.StatusConflict, api.CodeInvalidTransition, err.Error())
	case errors.Is(err, ErrNotFound):
		problem(ctx, fasthttp.StatusNotFound, api.CodeNotFound, err.Error())
	case errors.Is(err, ErrNotBookable):
		problem(ctx, fasthttp.StatusUnprocessableEntity, api.CodeNotReleased, err.Error())
	case errors.Is(err, ErrValidation):
		problem(ctx, fasthttp.StatusBadRequest, api.CodeValidationFailed, err.Error())
	default:
		problem(ctx, fasthttp.StatusInternalServerError, api.CodeInternal, err.Error())
	}
}

// slotTakenBody is the answer to a hold whose start has no free window.
var slotTakenBody = problemBody(fasthttp.StatusConflict, api.CodeSlotTaken, "no free window at this start")

func problem(ctx *fasthttp.RequestCtx, status int, code, detail string) {
	body := problemBody(status, code, detail)
	ctx.SetStatusCode(status)
	ctx.SetContentType("application/problem+json")
	ctx.SetBody(body)
}

func problemBody(status int, code, detail string) []byte {
	body, _ := json.Marshal(api.Problem{Type: "about:blank", Title: fasthttp.StatusMessage(status), Status: status, Detail: detail, Code: code})
	return body
}
