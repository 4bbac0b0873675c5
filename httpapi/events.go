package httpapi

import (
	"context"
	"strconv"
	"time"

	"go.uber.org/zap"

	"slotd/allocator"
	"slotd/internal/jsontime"
)

// The outbox: GET /v1/events?after=<cursor>&limit=&wait=<seconds>.
//
// Events come in cursor order, at least once: a consumer stores the
// next_cursor of each page and passes it as after= next time. With wait=
// and nothing to read, the request waits up to wait seconds (at most
// Config.EventsWaitMax) for the next event; next_cursor is then after=
// unchanged. Cursors are decimal strings.

const (
	eventsPageDefault = 100
	eventsPageMax     = 1000
)

func (s *Server) listEvents(r *request) {
	waitMax := int(s.cfg.EventsWaitMax / time.Second)
	q := newQuery(r, "after", "limit", "wait")
	after := q.uint64("after", 0)
	limit := q.int("limit", eventsPageDefault, 1, eventsPageMax)
	wait := q.int("wait", 0, 0, waitMax)
	if !q.ok() {
		return
	}
	events, err := s.cfg.Events.ReadEvents(after, limit)
	if err == nil && len(events) == 0 && wait > 0 {
		ctx, cancel := context.WithTimeout(s.base, time.Duration(wait)*time.Second)
		if werr := s.cfg.Events.Wait(ctx, after); werr == nil {
			events, err = s.cfg.Events.ReadEvents(after, limit)
		}
		cancel()
	}
	if err != nil {
		s.log.Error("cannot read events", zap.String("request_id", r.id), zap.Error(err))
		s.storeFailed("event feed read", err)
		r.fail(problem{code: CodeDegraded, detail: "cannot read the event feed", retryAfterSeconds: retryAfterDegradedSeconds})
		return
	}
	next := after
	b := append(make([]byte, 0, 600*len(events)+64), `{"events":[`...)
	for i := range events {
		if i > 0 {
			b = append(b, ',')
		}
		b = s.appendEvent(b, &events[i])
		next = events[i].Cursor
	}
	b = append(b, `],"next_cursor":"`...)
	b = strconv.AppendUint(b, next, 10)
	r.reply(200, append(b, `"}`...))
}

// appendEvent renders {"cursor","type","at","office","booking","through",
// "reason"}; booking and through appear for the events that have them,
// watch and start for watch.matched. Times are in the office's offset.
func (s *Server) appendEvent(b []byte, e *allocator.Event) []byte {
	loc := time.UTC
	if rec, err := s.engine.Office(e.Office); err == nil {
		loc = s.location(rec.Config.Timezone)
	}
	b = append(b, `{"cursor":"`...)
	b = strconv.AppendUint(b, e.Cursor, 10)
	b = append(b, `","type":`...)
	b = appendString(b, e.Type)
	b = append(b, `,"at":`...)
	b = jsontime.Append(b, time.Unix(0, e.AtUnixNano).In(loc))
	b = append(b, `,"office":`...)
	b = appendString(b, e.Office)
	if e.Booking != nil {
		if v, ok := s.engine.View(e.Booking); ok {
			b = append(b, `,"booking":`...)
			b = appendBooking(b, &v)
		}
	}
	if e.Through != 0 {
		b = append(b, `,"through":"`...)
		b = append(b, e.Through.String()...)
		b = append(b, '"')
	}
	if e.Watch != nil {
		b = append(b, `,"watch":"`...)
		b = append(b, e.Watch.ID.String()...)
		b = append(b, '"')
	}
	if e.StartUnixNano != 0 {
		b = append(b, `,"start":`...)
		b = jsontime.Append(b, time.Unix(0, e.StartUnixNano).In(loc))
	}
	b = append(b, `,"reason":`...)
	b = appendString(b, e.Reason)
	return append(b, '}')
}
