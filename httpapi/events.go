package httpapi

import (
	"context"
	"strconv"
	"time"

	"go.uber.org/zap"

	"slotd/allocator"
	"slotd/api"
	"slotd/internal/jsontime"
)

// The outbox: GET /v1/events?after=<cursor>&limit=&wait=<seconds>.
//
// Events come in cursor order, at least once: a consumer stores the
// next_cursor of each page and passes it as after= next time. A key sees
// the events of its offices only, and a key without the admin scope only
// those without an applicant (slots.released) or with an applicant of its
// namespace (principal.sees). The others are skipped: next_cursor moves
// past them, so a page may hold fewer than limit events, or none, while
// more follow. With wait= and nothing the key sees, the request waits up
// to wait seconds (at most Config.EventsWaitMax) for the next event it
// sees; next_cursor is then after= unchanged, or past the events it
// skipped. Cursors are decimal strings.
//
// Retention (the journal's sweep; 7 days by default) deletes the oldest
// events. A reader without after=, or with after=0, is new: it reads from
// the oldest event kept. A reader whose cursor is below the deletion mark
// has missed events: it is answered 410 cursor_expired rather than a page
// that skips them silently, and starts again as a new reader. The mark is
// loaded after each read (EventFeed.EventsDeletedThrough), so a sweep that
// runs between the two is seen.

const (
	eventsPageDefault = 100
	eventsPageMax     = 1000
	// eventsReadMin is the fewest events one read of the feed asks for,
	// so that a small limit does not cost a read per skipped event.
	eventsReadMin = 100
	// eventsScanMax bounds the events one request reads past while it
	// looks for ones the key sees; then it answers what it found, maybe
	// nothing, with next_cursor past them.
	eventsScanMax = 10 * eventsPageMax
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
	ctx, cancel := context.WithTimeout(s.base, time.Duration(wait)*time.Second)
	defer cancel()
	next := after
	var events []allocator.Event
	// woke: the last Wait returned and nothing has been read since. An
	// empty read right after a wake-up ends the request: the events the
	// wake-up announced are gone (swept by retention), and waiting again
	// would return at once.
	woke := false
	for scanned := 0; len(events) == 0 && scanned < eventsScanMax; {
		page, err := s.cfg.Events.ReadEvents(next, max(limit, eventsReadMin))
		if err != nil {
			s.log.Error("cannot read events", zap.String("request_id", r.id), zap.Error(err))
			s.storeFailed("event feed read", err)
			r.fail(problem{code: api.CodeDegraded, detail: "cannot read the event feed", retryAfterSeconds: retryAfterDegradedSeconds})
			return
		}
		if mark := s.cfg.Events.EventsDeletedThrough(); after != 0 && next < mark {
			r.fail(problem{code: api.CodeCursorExpired, detail: "the events after cursor " + strconv.FormatUint(after, 10) +
				" were deleted by retention through cursor " + strconv.FormatUint(mark, 10) +
				"; read again without after= (from the oldest event kept)"})
			return
		}
		for i := 0; i < len(page) && len(events) < limit; i++ {
			if r.key.sees(&page[i]) {
				events = append(events, page[i])
			}
			next = page[i].Cursor
		}
		scanned += len(page)
		if len(page) > 0 {
			woke = false
			continue
		}
		// Caught up with nothing to show: wait for the next event, until
		// the wait= deadline (none without wait=).
		if wait == 0 || woke || s.cfg.Events.Wait(ctx, next) != nil {
			break
		}
		woke = true
	}
	b := append(make([]byte, 0, 600*len(events)+64), `{"events":[`...)
	for i := range events {
		if i > 0 {
			b = append(b, ',')
		}
		b = s.appendEvent(b, &events[i])
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
