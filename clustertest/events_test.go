package clustertest

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"slotd/internal/slotdtest"
	"slotd/internal/slotdtest/testtime"
)

// The event feed of a cluster with several groups: one feed, merged from
// the groups' feeds, whose cursor names a position in each of them.

// mergedEvent is an event of the merged feed as the tests read it.
type mergedEvent struct {
	Cursor  string `json:"cursor"`
	Type    string `json:"type"`
	At      string `json:"at"`
	Office  string `json:"office"`
	Booking struct {
		ID string `json:"id"`
	} `json:"booking"`
}

type feedPage struct {
	Events     []mergedEvent `json:"events"`
	NextCursor string        `json:"next_cursor"`
}

// getFeed asks node n for GET /v1/events?query with the admin key.
func (n *node) getFeed(query string) (int, feedPage, map[string]any, error) {
	req, _ := http.NewRequest("GET", "http://"+n.addr+"/v1/events?"+query, nil)
	req.Header.Set("Authorization", "Bearer "+adminKey)
	resp, err := client.Do(req)
	if err != nil {
		return 0, feedPage{}, nil, err
	}
	defer resp.Body.Close()
	var page feedPage
	var problem map[string]any
	if resp.StatusCode == 200 {
		err = json.NewDecoder(resp.Body).Decode(&page)
	} else {
		_ = json.NewDecoder(resp.Body).Decode(&problem)
	}
	return resp.StatusCode, page, problem, err
}

// parseCursor reads a merged cursor of groups parts.
func parseCursor(s string, groups int) ([]uint64, error) {
	parts := strings.Split(s, ".")
	if len(parts) != groups {
		return nil, fmt.Errorf("cursor %q has %d parts, want %d", s, len(parts), groups)
	}
	out := make([]uint64, groups)
	for i, p := range parts {
		n, err := strconv.ParseUint(p, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("cursor %q: %v", s, err)
		}
		out[i] = n
	}
	return out, nil
}

// feedItem is what one group's event at one cursor was.
type feedItem struct{ typ, booking string }

// consumer reads the merged feed as a portal's notifier would, page
// after page from next_cursor, and checks each page against its cursor:
// each event moves exactly one group's cursor, upwards, and no group's
// cursor ever goes back, so no event comes twice.
type consumer struct {
	groups int
	limit  int
	cursor string
	pos    []uint64
	seen   map[[2]uint64]feedItem // (group, group's cursor) → the event
	held   map[string]int         // booking id → its booking.held events
	pages  int
}

func newConsumer(groups, limit int) *consumer {
	return &consumer{groups: groups, limit: limit, cursor: "0", pos: make([]uint64, groups),
		seen: map[[2]uint64]feedItem{}, held: map[string]int{}}
}

// take checks a page read from c.cursor and moves on past it.
func (c *consumer) take(page feedPage) error {
	if len(page.Events) > c.limit {
		return fmt.Errorf("a page of %d events for limit=%d", len(page.Events), c.limit)
	}
	prev := c.pos
	for _, e := range page.Events {
		p, err := parseCursor(e.Cursor, c.groups)
		if err != nil {
			return err
		}
		moved := -1
		for i := range p {
			switch {
			case p[i] == prev[i]:
			case p[i] > prev[i] && moved < 0:
				moved = i
			default:
				return fmt.Errorf("event %s %s: cursor %q after %v: not one group's cursor moved up", e.Type, e.Booking.ID, e.Cursor, prev)
			}
		}
		if moved < 0 {
			return fmt.Errorf("event %s: cursor %q does not move from %v", e.Type, e.Cursor, prev)
		}
		key := [2]uint64{uint64(moved + 1), p[moved]}
		if old, dup := c.seen[key]; dup {
			return fmt.Errorf("group %d's event at cursor %d delivered twice (%v, now %s %s)", key[0], key[1], old, e.Type, e.Booking.ID)
		}
		c.seen[key] = feedItem{e.Type, e.Booking.ID}
		if e.Type == "booking.held" {
			c.held[e.Booking.ID]++
		}
		prev = p
	}
	next, err := parseCursor(page.NextCursor, c.groups)
	if err != nil {
		return err
	}
	for i := range next {
		if next[i] < prev[i] {
			return fmt.Errorf("next_cursor %q is behind the page's last event, %v", page.NextCursor, prev)
		}
	}
	c.pos, c.cursor = next, page.NextCursor
	c.pages++
	return nil
}

// read reads one page from node n with wait= seconds; false for an
// answer to retry (a node down, a group electing).
func (c *consumer) read(n *node, wait int) (got int, ok bool, err error) {
	status, page, problem, err := n.getFeed(fmt.Sprintf("after=%s&limit=%d&wait=%d", url.QueryEscape(c.cursor), c.limit, wait))
	switch {
	case err != nil || status == 503:
		return 0, false, nil
	case status != 200:
		return 0, false, fmt.Errorf("node %d: events after %q: %d %v", n.id, c.cursor, status, problem)
	}
	return len(page.Events), true, c.take(page)
}

// drain reads through node n until a page comes back empty.
func (c *consumer) drain(t *testing.T, n *node) {
	t.Helper()
	for {
		var got int
		var failed error
		err := testtime.Poll(waitFor, func() error {
			var ok bool
			got, ok, failed = c.read(n, 0)
			if !ok && failed == nil {
				return errors.New("no answer but 503 or a broken connection")
			}
			return nil
		})
		if err = errors.Join(failed, err); err != nil {
			t.Fatalf("node %d: %v", n.id, err)
		}
		if got == 0 {
			return
		}
	}
}

// checkHeld asserts every acknowledged booking has exactly one
// booking.held event in what the consumer read.
func (c *consumer) checkHeld(t *testing.T, who string, acks []booked) {
	t.Helper()
	for _, a := range acks {
		if n := c.held[a.id]; n != 1 {
			t.Fatalf("%s: acknowledged booking %s (by node %d) has %d booking.held events in the feed (%d events read)", who, a.id, a.node, n, len(c.seen))
		}
	}
}

// Three nodes, three groups, a rush at an office of each group; the node
// leading the third group is killed with SIGKILL. A consumer long-polls
// the merged feed from random nodes all along, and another took its
// cursor from the killed node just before it died. Both go on after the
// failover on other nodes: every acknowledged booking's booking.held
// event arrives exactly once, every group's cursor only rises, and a
// reader from the start on the restarted node reads the same events
// under the same cursors.
func TestFeedAcrossGroupsThroughFailover(t *testing.T) {
	const groups = 3
	c := startCluster(t, slotdtest.Build(t), 3, groups)
	date := nextWeekday(3)
	for g := uint64(1); g <= groups; g++ {
		c.leader(g)
	}
	// The demo offices' groups with three groups: spb-mmc 1,
	// msk-mfc-tverskoy 2, msk-sakharovo 3.
	var rushes []*rush
	for _, office := range []string{"spb-mmc", "msk-mfc-tverskoy", "msk-sakharovo"} {
		rushes = append(rushes, c.startRush(office, date, 4))
	}
	// A consumer long-polls small pages from any node until stopped.
	live := newConsumer(groups, 7)
	stop := make(chan struct{})
	var liveErr error
	var liveWG sync.WaitGroup
	liveWG.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			_, ok, err := live.read(c.randomUp(), 1)
			if err != nil {
				liveErr = err
				return
			}
			if !ok {
				time.Sleep(20 * time.Millisecond)
			}
		}
	})
	time.Sleep(700 * time.Millisecond)
	victim := c.leader(3)
	// The second consumer reads what there is from the leader about to
	// die, and keeps its cursor.
	kept := newConsumer(groups, 100)
	kept.drain(t, victim)
	cursorBefore := kept.cursor
	rushes[2].armed.Store(true)
	victim.kill()
	select {
	case <-rushes[2].firstOK:
	case <-time.After(waitFor):
		t.Fatalf("no write at group 3 acknowledged within %v of its leader's death", waitFor)
	}
	time.Sleep(500 * time.Millisecond)
	var acks []booked
	for _, r := range rushes {
		acks = append(acks, r.end()...)
	}
	close(stop)
	liveWG.Wait()
	if liveErr != nil {
		t.Fatal(liveErr)
	}
	t.Logf("%d acknowledged; the live consumer read %d pages, %d events before the rush ended", len(acks), live.pages, len(live.seen))
	if len(acks) == 0 {
		t.Fatal("nothing acknowledged")
	}
	for g := uint64(1); g <= groups; g++ {
		c.converged(g)
	}
	var other *node
	for _, n := range c.nodes {
		if n.up() {
			other = n
		}
	}
	// Both consumers go on from their cursors on a surviving node.
	live.drain(t, other)
	live.checkHeld(t, "live consumer", acks)
	kept.drain(t, other)
	kept.checkHeld(t, fmt.Sprintf("consumer with cursor %s from the killed node", cursorBefore), acks)
	// The killed node comes back; a reader from the start there reads
	// the same events under the same group cursors.
	victim.start()
	for g := uint64(1); g <= groups; g++ {
		c.converged(g)
	}
	fresh := newConsumer(groups, 1000)
	fresh.drain(t, victim)
	// (Both read everything; the restarted node's reader may see more
	// should a release minute pass meanwhile.)
	for key, item := range live.seen {
		if got, ok := fresh.seen[key]; !ok || got != item {
			t.Fatalf("group %d's event at cursor %d: %v for the live consumer, %v (present %v) on the restarted node", key[0], key[1], item, got, ok)
		}
	}
}

// Four groups (the fourth holds no demo office): the cursor names each
// group, the forms that are not a cursor of this feed answer 400, a
// group's refusal is the answer, and wait= long-polls until any group
// has an event.
func TestFeedAcrossGroupsCursorsAndLongPoll(t *testing.T) {
	const groups = 4
	c := startCluster(t, slotdtest.Build(t), 3, groups)
	for g := uint64(1); g <= groups; g++ {
		c.leader(g)
	}
	n := c.nodes[0]
	feed := newConsumer(groups, 1000)
	feed.drain(t, n)
	if feed.pos[3] != 0 {
		t.Fatalf("group 4 holds no office, yet its cursor is %d (%s)", feed.pos[3], feed.cursor)
	}
	for _, bad := range []string{"5", "1.2.3", "1.2.3.4.5", "1..2.3", "a.1.2.3", "-1.0.0.0", "1.2.3.4.", strings.Repeat("9", 30) + ".0.0.0"} {
		status, _, problem, err := n.getFeed("after=" + url.QueryEscape(bad))
		if err != nil || status != 400 || problem["code"] != "validation_failed" {
			t.Fatalf("after=%s: %d %v %v, want 400 validation_failed", bad, status, problem, err)
		}
	}
	for _, q := range []string{"after=0&wait=31", "after=0&wait=x", "after=0&limit=0", "after=0&limit=1001", "after=0&colour=red"} {
		status, _, problem, err := n.getFeed(q)
		if err != nil || status != 400 || problem["code"] != "validation_failed" {
			t.Fatalf("%s: %d %v %v, want 400 validation_failed", q, status, problem, err)
		}
	}
	// Caught up, a long-poll answers an empty page after its wait, its
	// cursor unchanged.
	status, page, problem, err := n.getFeed("wait=1&after=" + feed.cursor)
	if err != nil || status != 200 || len(page.Events) != 0 || page.NextCursor != feed.cursor {
		t.Fatalf("caught-up long-poll: %d %v %v %v", status, page, problem, err)
	}
	// A long-poll through one node wakes for a booking made through
	// another at an office of group 2, and the booking's event comes
	// with group 2's cursor moved.
	// It is answered once, with the event: a long-poll that returned
	// before the booking would need a second request.
	polled := make(chan error, 1)
	go func() {
		for answered := 0; ; {
			got, ok, err := feed.read(c.nodes[1], 10)
			if ok {
				answered++
			}
			switch {
			case err != nil:
				polled <- err
				return
			case ok && got > 0 && answered > 1:
				polled <- fmt.Errorf("the long-poll was answered %d times before the event came", answered-1)
				return
			case ok && got > 0:
				polled <- nil
				return
			case !ok:
				time.Sleep(20 * time.Millisecond)
			}
		}
	}()
	time.Sleep(300 * time.Millisecond) // let the long-poll start waiting; it answers either way
	date := nextWeekday(5)
	status, out, err := c.nodes[2].call("POST", "/v1/bookings",
		fmt.Sprintf(`{"office":"msk-mfc-tverskoy","service":"patent","applicant":"a-poll","earliest_after":"%sT09:00:00+03:00"}`, date), "")
	if err != nil || status != 201 {
		t.Fatalf("hold: %d %v %v", status, out, err)
	}
	if err := <-polled; err != nil {
		t.Fatal(err)
	}
	feed.drain(t, c.nodes[2])
	feed.checkHeld(t, "long-poll", []booked{{id: str(out["id"]), node: 3}})
	if feed.pos[1] == 0 || feed.pos[3] != 0 {
		t.Fatalf("after a booking in group 2 the cursor is %s", feed.cursor)
	}
}
