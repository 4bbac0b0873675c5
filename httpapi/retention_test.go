package httpapi

import (
	"encoding/json"
	"strconv"
	"testing"
	"time"

	"slotd/api"
	"slotd/wal"
)

// eventsPage decodes a GET /v1/events answer into its cursors and
// next_cursor.
func eventsPage(t *testing.T, r resp) (cursors []uint64, next string) {
	t.Helper()
	want(t, r, 200, "")
	var page struct {
		Events []struct {
			Cursor string `json:"cursor"`
		} `json:"events"`
		NextCursor string `json:"next_cursor"`
	}
	if err := json.Unmarshal(r.body, &page); err != nil {
		t.Fatalf("events %s: %v", r.body, err)
	}
	for _, ev := range page.Events {
		c, err := strconv.ParseUint(ev.Cursor, 10, 64)
		if err != nil {
			t.Fatalf("cursor %q: %v", ev.Cursor, err)
		}
		cursors = append(cursors, c)
	}
	return cursors, page.NextCursor
}

// TestEventsCursorExpired: on the real journal, a sweep deletes the events
// past retention. A reader whose cursor is below the sweep's mark has
// missed events: it is answered 410 cursor_expired, at once (with wait=
// too) and after a restart, instead of a page that silently skips them.
// The mark itself and any cursor above it read on; no cursor, or 0, reads
// from the oldest event kept (wal W10).
func TestEventsCursorExpired(t *testing.T) {
	dir := t.TempDir()
	e, stop := walEnv(t, dir, t0, true)
	e.mustHold("office-a", "patent", "a-1", at(1, 9, 0), true) // events at t0
	e.clock.Add(48 * time.Hour)
	e.mustHold("office-a", "patent", "a-2", at(3, 9, 0), true) // events at t0+48h
	all, _ := eventsPage(t, e.get("/v1/events?limit=1000", keyAdmin))
	if len(all) < 4 {
		t.Fatalf("cursors before the sweep: %v", all)
	}
	// Retention is 7 days: at t0+8d+1h the events of t0 go, those of t0+48h stay.
	st, err := e.db.Sweep(t0.Add(wal.DefaultEventRetention + 25*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	kept := all[len(all)-2:] // a-2's held and confirmed
	mark := e.db.EventsDeletedThrough()
	if st.EventsDeleted != len(all)-2 || mark != kept[0]-1 {
		t.Fatalf("sweep %+v, mark %d; cursors %v", st, mark, all)
	}
	check := func(e *env) {
		t.Helper()
		for _, after := range []uint64{1, mark - 1} {
			q := "/v1/events?after=" + strconv.FormatUint(after, 10)
			want(t, e.get(q, keyPortal), 410, api.CodeCursorExpired)
			want(t, e.get(q+"&wait=5", keyPortal), 410, api.CodeCursorExpired)
			want(t, e.get(q, keyAdmin), 410, api.CodeCursorExpired)
		}
		for _, q := range []string{"", "?after=0", "?after=" + strconv.FormatUint(mark, 10)} {
			got, next := eventsPage(t, e.get("/v1/events"+q, keyAdmin))
			if len(got) != 2 || got[0] != kept[0] || got[1] != kept[1] || next != strconv.FormatUint(kept[1], 10) {
				t.Fatalf("GET /v1/events%s after the sweep: %v next %s, want %v", q, got, next, kept)
			}
		}
		got, _ := eventsPage(t, e.get("/v1/events?after="+strconv.FormatUint(kept[0], 10), keyAdmin))
		if len(got) != 1 || got[0] != kept[1] {
			t.Fatalf("events after %d: %v", kept[0], got)
		}
	}
	check(e)
	// The mark is stored: a restarted server refuses the same cursors.
	stop()
	e, _ = walEnv(t, dir, t0.Add(48*time.Hour), false)
	if got := e.db.EventsDeletedThrough(); got != mark {
		t.Fatalf("mark after a restart: %d, want %d", got, mark)
	}
	check(e)
}
