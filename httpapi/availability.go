package httpapi

import (
	"slices"

	"slotd/allocator"
)

// Availability endpoints: reads, any key.

const (
	searchLimitDefault = 10
	searchLimitMax     = 100
	// daysSpanDefault is the range of GET …/days without to=: past any
	// horizon the engine allows.
	daysSpanDefault = 366
)

// listOffices: GET /v1/offices?region=&city=&service=&has_free=.
func (s *Server) listOffices(r *request) {
	q := newQuery(r, "region", "city", "service", "has_free")
	f := allocator.OfficeFilter{
		Region:  q.str("region", 512),
		City:    q.str("city", 512),
		Service: q.str("service", idBytesMax),
		HasFree: q.bool("has_free"),
	}
	if !q.ok() {
		return
	}
	list := s.engine.Offices(r.now, f)
	b := append(make([]byte, 0, 1024*len(list)+16), `{"offices":[`...)
	for i := range list {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendOfficeSummary(b, &list[i])
	}
	r.reply(200, append(b, "]}"...))
}

// days: GET /v1/offices/{office}/days?service=&from=&to=&has_free=.
// has_free=true leaves out the days whose starts are all taken, so a
// portal's calendar need not grey them out itself.
func (s *Server) days(r *request) {
	q := newQuery(r, "service", "from", "to", "has_free")
	service := q.str("service", idBytesMax)
	from, hasFrom := q.date("from")
	to, hasTo := q.date("to")
	hasFree := q.bool("has_free")
	if !q.ok() {
		return
	}
	if service == "" {
		r.invalid("service is required (?service=)")
		return
	}
	office, err := s.engine.Office(r.param(0))
	if err != nil {
		r.failErr(err)
		return
	}
	if !hasFrom {
		from = allocator.DateOf(r.now.In(s.location(office.Config.Timezone)))
	}
	if !hasTo {
		to = from + daysSpanDefault
	}
	list, err := s.engine.Days(r.now, r.param(0), service, from, to)
	if err != nil {
		r.failErr(err)
		return
	}
	if hasFree {
		list = slices.DeleteFunc(list, func(d allocator.DayFree) bool { return d.Free == 0 })
	}
	r.reply(200, appendDays(make([]byte, 0, 32*len(list)+16), list))
}

// slots: GET /v1/offices/{office}/days/{date}/slots?service=.
func (s *Server) slots(r *request) {
	q := newQuery(r, "service")
	service := q.str("service", idBytesMax)
	if !q.ok() {
		return
	}
	if service == "" {
		r.invalid("service is required (?service=)")
		return
	}
	date, err := parseDate("date", r.param(1))
	if err != nil {
		r.invalid("%v", err)
		return
	}
	// The starts stay on the stack, and the answer is written into the
	// response's own buffer.
	var steps [allocator.StepsMax]allocator.StepFree
	list, grid, err := s.engine.AppendSlotSteps(steps[:0], r.now, r.param(0), date, service)
	if err != nil {
		r.failErr(err)
		return
	}
	r.replyBody(200, appendSlots(r.body(), &grid, list))
}

// search: GET /v1/search?service=&region=&after=&limit= — the nearest free
// starts across offices, earliest first.
func (s *Server) search(r *request) {
	q := newQuery(r, "service", "region", "after", "limit")
	service := q.str("service", idBytesMax)
	region := q.str("region", 512)
	after, hasAfter := q.time("after")
	limit := q.int("limit", searchLimitDefault, 1, searchLimitMax)
	if !q.ok() {
		return
	}
	if service == "" {
		r.invalid("service is required (?service=)")
		return
	}
	if !hasAfter {
		after = r.now
	}
	list := s.engine.Search(r.now, region, service, after, limit)
	b := append(make([]byte, 0, 96*len(list)+16), `{"results":`...)
	b = appendOpenings(b, list)
	r.reply(200, append(b, '}'))
}
