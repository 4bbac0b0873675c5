package httpapi

import (
	"encoding/json"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"slotd/api"
	"slotd/internal/slotdtest/testtime"
)

// Daylight-saving days over HTTP: an office in Europe/Berlin open across
// 02:00–03:00 on the two transition days of 2027.

// putNightOffice creates an office open on Sundays from 00:00 to closes in
// Berlin, one window, on a grid of slotMinutes.
func putNightOffice(t *testing.T, e *env, id string, slotMinutes int, closes string) {
	t.Helper()
	body, _ := json.Marshal(map[string]any{
		"id": id, "name": "Bürgeramt " + id, "region": "berlin", "city": "Berlin", "timezone": "Europe/Berlin",
		"slot_minutes": slotMinutes, "windows": 1, "hours": map[string][]string{"sun": {"00:00-" + closes}},
		"services": []map[string]any{{"id": "patent", "name": "Patent", "slots": 1, "reschedulable": true}},
	})
	want(t, e.call("PUT", "/v1/offices/"+id, keyAdmin, string(body)), 201, "")
}

// bookingJSON is the part of a booking answer the tests read.
type bookingJSON struct {
	ID, Number, Start, End string
	Window                 int
}

func (e *env) holdNight(t *testing.T, body string) (bookingJSON, resp) {
	t.Helper()
	r := e.post("/v1/bookings", keyPortal, body)
	var b bookingJSON
	if r.status == 201 {
		if err := json.Unmarshal(r.body, &b); err != nil {
			t.Fatal(err)
		}
	}
	return b, r
}

// bookWholeNight books the night of date through earliest_after until it
// is full and returns the bookings (made before included), failing on any
// desk sold twice.
func (e *env) bookWholeNight(t *testing.T, office, date, midnight string, before ...bookingJSON) []bookingJSON {
	t.Helper()
	got := before
	seats := map[string]string{}
	for _, b := range before {
		seats[b.Start] = b.Number
	}
	for i := 1; i <= 40; i++ {
		b, r := e.holdNight(t, `{"office":"`+office+`","service":"patent","applicant":"night-`+strings.Repeat("x", i)+`","earliest_after":"`+midnight+`"}`)
		if r.status == 409 {
			want(t, r, 409, api.CodeSlotTaken)
			break
		}
		want(t, r, 201, "")
		if !strings.HasPrefix(b.Start, date) {
			break // the night is full: the next Sunday
		}
		if other, dup := seats[b.Start]; dup {
			t.Fatalf("one desk, two people: %s and %s both have window %d at %s–%s", other, b.Number, b.Window, b.Start, b.End)
		}
		seats[b.Start] = b.Number
		got = append(got, b)
	}
	return got
}

func slotStarts(t *testing.T, e *env, office, date string) []string {
	t.Helper()
	r := e.get("/v1/offices/"+office+"/days/"+date+"/slots?service=patent", keyPortal)
	want(t, r, 200, "")
	var out []string
	for _, s := range decodeSlots(t, r) {
		out = append(out, s.Start)
	}
	return out
}

// TestDefectDSTDoubleBookingSpringForward: on 2027-03-28 the slots list
// showed 03:00+02:00 twice and two bookings got window 1 at
// 03:00–03:30+02:00. The night has eight seats, none in the skipped hour,
// each sold once.
func TestDefectDSTDoubleBookingSpringForward(t *testing.T) {
	e := newEnv(t, nil)
	e.setNow(time.Date(2027, 3, 27, 12, 0, 0, 0, testtime.Berlin))
	putNightOffice(t, e, "office-ber", 30, "05:00")
	night := []string{
		"2027-03-28T00:00:00+01:00", "2027-03-28T00:30:00+01:00", "2027-03-28T01:00:00+01:00", "2027-03-28T01:30:00+01:00",
		"2027-03-28T03:00:00+02:00", "2027-03-28T03:30:00+02:00", "2027-03-28T04:00:00+02:00", "2027-03-28T04:30:00+02:00",
	}
	if got := slotStarts(t, e, "office-ber", "2027-03-28"); !slices.Equal(got, night) {
		t.Errorf("slots:\n got %q\nwant %q", got, night) // and go on to what is sold
	}
	r := e.get("/v1/offices/office-ber/days?service=patent&from=2027-03-28&to=2027-03-28", keyPortal)
	want(t, r, 200, "")
	if string(r.body) != `{"days":[{"date":"2027-03-28","free":8}]}` {
		t.Errorf("days: %s", r.body)
	}
	// The first hold takes 03:00+02:00 exactly; earliest_after then fills
	// the night.
	b, r := e.holdNight(t, holdJSON("office-ber", "patent", "first", time.Date(2027, 3, 28, 3, 0, 0, 0, testtime.Berlin)))
	want(t, r, 201, "")
	if b.Start != "2027-03-28T03:00:00+02:00" || b.End != "2027-03-28T03:30:00+02:00" || b.Window != 1 {
		t.Fatalf("hold 03:00+02:00: %s", r.body)
	}
	got := e.bookWholeNight(t, "office-ber", "2027-03-28", "2027-03-28T00:00:00+01:00", b)
	var starts []string
	for _, b := range got {
		starts = append(starts, b.Start)
	}
	slices.Sort(starts)
	sorted := slices.Clone(night)
	slices.Sort(sorted)
	if !slices.Equal(starts, sorted) {
		t.Fatalf("booked %q, want each of %q once", starts, sorted)
	}
	// 02:30 in the skipped hour, written with the winter offset, is the
	// instant 03:30+02:00: a seat, taken by now. Its alternatives are
	// later starts, each once.
	r = e.post("/v1/bookings", keyPortal, `{"office":"office-ber","service":"patent","applicant":"late","start":"2027-03-28T02:30:00+01:00"}`)
	want(t, r, 409, api.CodeSlotTaken)
	if strings.Contains(string(r.body), "2027-03-28T0") {
		t.Fatalf("alternatives on the full night: %s", r.body)
	}
}

// TestDefectDSTDoubleBookingFallBack: on 2027-10-31 a hold for
// 02:30+02:00 was answered 201 with a booking at 02:30+01:00, and the
// first 02:00–02:59 could not be booked. The night has twelve seats, the
// repeated hour twice, and each start is booked as asked.
func TestDefectDSTDoubleBookingFallBack(t *testing.T) {
	e := newEnv(t, nil)
	e.setNow(time.Date(2027, 10, 30, 12, 0, 0, 0, testtime.Berlin))
	putNightOffice(t, e, "office-ber", 30, "05:00")
	night := []string{
		"2027-10-31T00:00:00+02:00", "2027-10-31T00:30:00+02:00", "2027-10-31T01:00:00+02:00", "2027-10-31T01:30:00+02:00",
		"2027-10-31T02:00:00+02:00", "2027-10-31T02:30:00+02:00", "2027-10-31T02:00:00+01:00", "2027-10-31T02:30:00+01:00",
		"2027-10-31T03:00:00+01:00", "2027-10-31T03:30:00+01:00", "2027-10-31T04:00:00+01:00", "2027-10-31T04:30:00+01:00",
	}
	if got := slotStarts(t, e, "office-ber", "2027-10-31"); !slices.Equal(got, night) {
		t.Errorf("slots:\n got %q\nwant %q", got, night) // and go on to what is sold
	}
	hold := func(applicant, start, end string) bookingJSON {
		t.Helper()
		b, r := e.holdNight(t, `{"office":"office-ber","service":"patent","applicant":"`+applicant+`","start":"`+start+`","confirm":true}`)
		want(t, r, 201, "")
		if b.Start != start || b.End != end || b.Window != 1 {
			t.Fatalf("hold for %s: %s", start, r.body)
		}
		return b
	}
	first := hold("a-1", "2027-10-31T02:30:00+02:00", "2027-10-31T02:00:00+01:00")
	second := hold("a-2", "2027-10-31T02:00:00+02:00", "2027-10-31T02:30:00+02:00")
	third := hold("a-3", "2027-10-31T02:30:00+01:00", "2027-10-31T03:00:00+01:00")
	r := e.post("/v1/bookings", keyPortal, `{"office":"office-ber","service":"patent","applicant":"a-4","start":"2027-10-31T00:30:00Z"}`)
	want(t, r, 409, api.CodeSlotTaken) // 02:30+02:00 written in UTC
	if got := e.bookWholeNight(t, "office-ber", "2027-10-31", "2027-10-31T00:00:00+02:00", first, second, third); len(got) != len(night) {
		t.Fatalf("%d bookings filled the night, want %d", len(got), len(night))
	}

	// The ticket and the calendar carry the instant that was booked.
	r = e.get("/v1/bookings/"+first.ID+"/ticket?applicant=a-1", keyPortal)
	want(t, r, 200, "")
	if r.str(t, "start") != "2027-10-31T02:30:00+02:00" || r.str(t, "number") != "OFFICE-BER-20271031-0001" {
		t.Fatalf("ticket: %s", r.body)
	}
	r = e.get("/v1/bookings/"+first.ID+"/calendar.ics?applicant=a-1", keyPortal)
	want(t, r, 200, "")
	for _, line := range []string{"DTSTART:20271031T003000Z", "DTEND:20271031T010000Z"} {
		if !strings.Contains(string(r.body), line) {
			t.Fatalf("calendar.ics lacks %q:\n%s", line, r.body)
		}
	}
	// search lists the repeated hour's seats in order of time.
	r = e.get("/v1/search?service=patent&region=berlin&limit=12&after="+url.QueryEscape("2027-10-31T00:00:00+02:00"), keyPortal)
	want(t, r, 200, "")
	if strings.Contains(string(r.body), "2027-10-31") {
		t.Fatalf("search on the full night: %s", r.body)
	}
}

// TestDefectDSTDoubleBookingStartNotASeat: on a 2-hour grid the repeated
// hour has no second 02:00 seat (the first one still runs then); a hold
// for it answers 422 not_released, and 02:00+02:00 is booked as asked.
func TestDefectDSTDoubleBookingStartNotASeat(t *testing.T) {
	e := newEnv(t, nil)
	e.setNow(time.Date(2027, 10, 30, 12, 0, 0, 0, testtime.Berlin))
	putNightOffice(t, e, "office-two", 120, "06:00")
	r := e.post("/v1/bookings", keyPortal, `{"office":"office-two","service":"patent","applicant":"a-1","start":"2027-10-31T02:00:00+01:00"}`)
	want(t, r, 422, api.CodeNotReleased)
	r = e.post("/v1/bookings", keyPortal, `{"office":"office-two","service":"patent","applicant":"a-1","start":"2027-10-31T02:00:00+02:00"}`)
	want(t, r, 201, "")
	if r.str(t, "start") != "2027-10-31T02:00:00+02:00" || r.str(t, "end") != "2027-10-31T03:00:00+01:00" {
		t.Fatalf("hold 02:00+02:00: %s", r.body)
	}
}
