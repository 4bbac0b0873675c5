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

	"slotd/internal/jsontime"
)

// The edge: the routes and JSON of DESIGN §3 that the rush uses, the same
// for every Backend. It has no auth, idempotency or metrics — none of the
// three pays for them — so what differs between the runs is the Backend.

// requestBodyBytesMax bounds a request body; larger ones are refused with
// 400 before they are decoded.
const requestBodyBytesMax = 4 << 10

// Error codes of DESIGN §3 the edge answers with.
const (
	codeValidation  = "validation_failed"
	codeNotFound    = "not_found"
	codeSlotTaken   = "slot_taken"
	codeDuplicate   = "duplicate_booking"
	codeTransition  = "invalid_transition"
	codeNotReleased = "not_released"
	codeInternal    = "internal"
)

type bookingJSON struct {
	ID        string    `json:"id"`
	Number    string    `json:"number"`
	Office    string    `json:"office"`
	Service   string    `json:"service"`
	Applicant string    `json:"applicant"`
	Window    int       `json:"window"`
	Start     time.Time `json:"start"`
	End       time.Time `json:"end"`
	Status    string    `json:"status"`
}

type slotJSON struct {
	Start time.Time `json:"start"`
	Free  int       `json:"free"`
}

type slotsJSON struct {
	Slots []slotJSON `json:"slots"`
}

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

// member returns where the member called name is read to: a *string,
// *bool or *time.Time, or nil for a name the type does not have
// (flatFields).
func (h *holdJSON) member(name []byte) any {
	switch string(name) {
	case "office":
		return &h.Office
	case "service":
		return &h.Service
	case "applicant":
		return &h.Applicant
	case "start":
		return &h.Start
	case "confirm":
		return &h.Confirm
	}
	return nil
}

func (c *cancelJSON) member(name []byte) any {
	switch string(name) {
	case "applicant":
		return &c.Applicant
	case "reason":
		return &c.Reason
	}
	return nil
}

type problemJSON struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail"`
	Code   string `json:"code"`
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
	return func(ctx *fasthttp.RequestCtx) {
		path := string(ctx.Path())
		switch {
		case ctx.IsGet() && strings.HasPrefix(path, "/v1/offices/") && strings.HasSuffix(path, "/slots"):
			edgeSlots(ctx, b, &lay, path)
		case ctx.IsPost() && path == "/v1/bookings":
			edgeHold(ctx, b)
		case ctx.IsPost() && strings.HasPrefix(path, "/v1/bookings/") && strings.HasSuffix(path, "/cancel"):
			edgeCancel(ctx, b, path)
		default:
			problem(ctx, fasthttp.StatusNotFound, codeNotFound, "no route "+string(ctx.Method())+" "+path)
		}
	}
}

// freePool holds the edge's arrays of free counts, one per availability
// read in flight.
var freePool = sync.Pool{New: func() any { return new([stepsMax]int) }}

func edgeSlots(ctx *fasthttp.RequestCtx, b Backend, lay *Layout, path string) {
	// /v1/offices/{office}/days/{date}/slots
	parts := strings.Split(path, "/")
	if len(parts) != 7 || parts[4] != "days" {
		problem(ctx, fasthttp.StatusNotFound, codeNotFound, "no route GET "+path)
		return
	}
	date := parts[5]
	buf := freePool.Get().(*[stepsMax]int)
	defer freePool.Put(buf)
	free, err := b.Availability(ctx, parts[3], date, string(ctx.QueryArgs().Peek("service")), buf[:0])
	if err != nil {
		backendProblem(ctx, err)
		return
	}
	ctx.SetStatusCode(fasthttp.StatusOK)
	ctx.SetContentType("application/json")
	// Written into the response's own buffer, kept from one answer to the next.
	body := ctx.Response.SwapBody(nil)
	ctx.Response.SwapBody(appendSlotsJSON(body[:0], lay, date, free))
}

func edgeHold(ctx *fasthttp.RequestCtx, b Backend) {
	var req holdJSON
	if !decode(ctx, &req) {
		return
	}
	if req.Office == "" || req.Service == "" || req.Applicant == "" || req.Start.IsZero() {
		problem(ctx, fasthttp.StatusBadRequest, codeValidation, "office, service, applicant and start are required")
		return
	}
	bk, err := b.Hold(ctx, HoldRequest{Office: req.Office, Service: req.Service, Applicant: req.Applicant, Start: req.Start})
	if err != nil {
		backendProblem(ctx, err)
		return
	}
	ctx.SetStatusCode(fasthttp.StatusCreated)
	ctx.SetContentType("application/json")
	ctx.SetBody(appendBookingJSON(make([]byte, 0, 320), &bk))
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

// appendSlotsJSON writes {"slots": [{start, free}, …]} for the free
// counts of date's starts in lay, as json.Marshal would (the encoder by
// hand: the availability answer is the largest the rush reads, once per
// applicant, and reflection on it would dominate the edge's CPU for every
// backend alike). A layout is in UTC, so every start is its step's
// distance from the first.
func appendSlotsJSON(b []byte, lay *Layout, date string, free []int) []byte {
	b = append(b, `{"slots":[`...)
	var day jsontime.DayClock
	day.Init(lay.Start(date, 0))
	for s, n := range free {
		if s > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"start":`...)
		b = day.AppendAfter(b, s*lay.StepMinutes*60)
		b = append(b, `,"free":`...)
		b = strconv.AppendInt(b, int64(n), 10)
		b = append(b, '}')
	}
	return append(b, "]}"...)
}

// appendBookingJSON writes the booking as json.Marshal of bookingJSON would.
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
		problem(ctx, fasthttp.StatusBadRequest, codeValidation, "request body too large")
		return false
	}
	if err := decodeJSON(body, v); err != nil {
		problem(ctx, fasthttp.StatusBadRequest, codeValidation, "malformed JSON: "+err.Error())
		return false
	}
	return true
}

// decodeJSON reads body into v, a pointer to a zero value, as a
// json.Decoder that refuses unknown fields reads it. A request type that
// is flatFields is read by decodeFlat first, and by encoding/json only
// when decodeFlat declines.
func decodeJSON(body []byte, v any) error {
	if f, ok := v.(flatFields); ok {
		if decodeFlat(body, f) {
			return nil
		}
		reflect.ValueOf(v).Elem().SetZero() // forget what decodeFlat set
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

// flatFields is a request type of string, boolean and time members; see
// holdJSON.member.
type flatFields interface{ member(name []byte) any }

// decodeFlat reads the plain bodies the rush sends — one object, every
// member named exactly as a field, strings of printable ASCII without
// escapes, booleans as true or false, nothing but white space around —
// into f, as encoding/json would; the JSON decoder's reflection took about
// a tenth of the edge's CPU in the rush, for every backend alike. It
// reports false for anything else, possibly having set some fields, and
// the caller then decodes with encoding/json, which decides (FuzzDecodeFlat
// holds the two to the same result).
func decodeFlat(body []byte, f flatFields) bool {
	i := skipSpace(body, 0)
	if i == len(body) || body[i] != '{' {
		return false
	}
	i = skipSpace(body, i+1)
	if i < len(body) && body[i] == '}' {
		return skipSpace(body, i+1) == len(body)
	}
	for {
		name, next, ok := plainString(body, i)
		if !ok {
			return false
		}
		i = skipSpace(body, next)
		if i == len(body) || body[i] != ':' {
			return false
		}
		i = skipSpace(body, i+1)
		switch p := f.member(name).(type) {
		case *string:
			s, next, ok := plainString(body, i)
			if !ok {
				return false
			}
			*p, i = string(s), next
		case *time.Time:
			_, next, ok := plainString(body, i)
			if !ok || p.UnmarshalJSON(body[i:next]) != nil {
				return false
			}
			i = next
		case *bool:
			switch {
			case bytes.HasPrefix(body[i:], []byte("true")):
				*p, i = true, i+len("true")
			case bytes.HasPrefix(body[i:], []byte("false")):
				*p, i = false, i+len("false")
			default:
				return false
			}
		default:
			return false
		}
		i = skipSpace(body, i)
		if i == len(body) {
			return false
		}
		switch body[i] {
		case ',':
			i = skipSpace(body, i+1)
		case '}':
			return skipSpace(body, i+1) == len(body)
		default:
			return false
		}
	}
}

// skipSpace returns the index of the first byte at or after i that is not
// JSON white space.
func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// plainString reads the JSON string at b[i] if it holds only printable
// ASCII and no escape: its content and the index after its closing quote.
func plainString(b []byte, i int) (s []byte, next int, ok bool) {
	if i == len(b) || b[i] != '"' {
		return nil, i, false
	}
	for j := i + 1; j < len(b); j++ {
		switch c := b[j]; {
		case c == '"':
			return b[i+1 : j], j + 1, true
		case c < 0x20 || c > 0x7e || c == '\\':
			return nil, i, false
		}
	}
	return nil, i, false
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
		problem(ctx, fasthttp.StatusConflict, codeSlotTaken, err.Error())
	case errors.Is(err, ErrDuplicate):
		problem(ctx, fasthttp.StatusConflict, codeDuplicate, err.Error())
	case errors.Is(err, ErrTransition):
		problem(ctx, fasthttp.StatusConflict, codeTransition, err.Error())
	case errors.Is(err, ErrNotFound):
		problem(ctx, fasthttp.StatusNotFound, codeNotFound, err.Error())
	case errors.Is(err, ErrNotBookable):
		problem(ctx, fasthttp.StatusUnprocessableEntity, codeNotReleased, err.Error())
	case errors.Is(err, ErrValidation):
		problem(ctx, fasthttp.StatusBadRequest, codeValidation, err.Error())
	default:
		problem(ctx, fasthttp.StatusInternalServerError, codeInternal, err.Error())
	}
}

func problem(ctx *fasthttp.RequestCtx, status int, code, detail string) {
	body, _ := json.Marshal(problemJSON{Type: "about:blank", Title: fasthttp.StatusMessage(status), Status: status, Detail: detail, Code: code})
	ctx.SetStatusCode(status)
	ctx.SetContentType("application/problem+json")
	ctx.SetBody(body)
}
