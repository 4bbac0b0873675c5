package clustertest

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"slotd/internal/slotdtest"
	"slotd/internal/slotdtest/testtime"
)

// groupOf returns the group that answers for office through node n
// (X-Slotd-Group), retrying a 503.
func (n *node) groupOf(t *testing.T, office string) uint64 {
	t.Helper()
	var g uint64
	testtime.Eventually(t, waitFor, "office "+office+" answers", func() error {
		req, err := http.NewRequest("GET", "http://"+n.addr+"/v1/offices/"+office, nil)
		if err != nil {
			return err
		}
		req.Header.Set("Authorization", "Bearer "+portalKey)
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("GET /v1/offices/%s: %d", office, resp.StatusCode)
		}
		g, err = strconv.ParseUint(resp.Header.Get("X-Slotd-Group"), 10, 64)
		return err
	})
	return g
}

// An office moves from its group to the other under a booking rush
// through every node, with `slotd cluster move-office` (replica O1–O4):
// the move ends, the office answers from the new group on every node,
// every booking acknowledged before, during and after the move is read
// by its id on every node with its seat and no seat twice, the replicas
// of both groups agree, and bookings made before the move are cancelled
// by their ids, which still name the old group.
func TestMoveOfficeUnderRush(t *testing.T) {
	c := startCluster(t, slotdtest.Build(t), 3, 2)
	c.leader(1)
	c.leader(2)
	const office = "msk-mfc-tverskoy"
	from := c.nodes[0].groupOf(t, office)
	to := 3 - from
	// Bad input: a problem with a stable code, never a 5xx.
	for _, bad := range []struct {
		method, path string
		status       int
		code         string
	}{
		{"POST", "/cluster/offices/" + office + "/move?to=9", 400, "validation_failed"},
		{"POST", "/cluster/offices/" + office + "/move", 400, "validation_failed"},
		{"GET", "/cluster/offices/" + office + "/move?to=1", 405, "method_not_allowed"},
		{"POST", "/cluster/offices/no-such-office/move?to=1", 409, "move_refused"},
		{"POST", "/cluster/offices/" + office + "/move?to=" + strconv.FormatUint(from, 10), 409, "move_refused"},
	} {
		req, err := http.NewRequest(bad.method, "http://"+c.nodes[2].admin+bad.path, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var p struct{ Code string }
		_ = json.NewDecoder(resp.Body).Decode(&p)
		resp.Body.Close()
		if resp.StatusCode != bad.status || p.Code != bad.code || resp.Header.Get("Content-Type") != "application/problem+json" {
			t.Fatalf("%s %s: %d %q (%s), want %d %q", bad.method, bad.path, resp.StatusCode, p.Code, resp.Header.Get("Content-Type"), bad.status, bad.code)
		}
	}
	moveUnderRush(t, c, office, from, to)
}

// The move of TestMoveOfficeUnderRush, in parts (replica O8): each node
// imports an office in entries of 4 KiB, so the office's bookings and
// stored answers take many.
func TestMoveOfficeInPartsUnderRush(t *testing.T) {
	c := startClusterWith(t, slotdtest.Build(t), 3, 2, false, []string{"SLOTD_TEST_MOVE_PART_BYTES=4096"})
	c.leader(1)
	c.leader(2)
	const office = "msk-mfc-tverskoy"
	from := c.nodes[0].groupOf(t, office)
	moveUnderRush(t, c, office, from, 3-from)
	for _, n := range c.nodes {
		for line := range strings.Lines(n.tail(1 << 20)) {
			if strings.Contains(line, "office imported in parts") {
				t.Logf("node %d: %s", n.id, line)
				return
			}
		}
	}
	t.Fatal("no node logged an import in parts")
}

// moveUnderRush moves office from group from to group to under a booking
// rush through every node and checks the bookings and replicas after it.
func moveUnderRush(t *testing.T, c *cluster, office string, from, to uint64) {
	date := nextWeekday(3)
	r := c.startRush(office, date, 8)
	testtime.EventuallyTrue(t, waitFor, "bookings before the move", func() bool { r.mu.Lock(); defer r.mu.Unlock(); return len(r.acks) >= 20 })
	r.mu.Lock()
	before := append([]booked(nil), r.acks...)
	r.mu.Unlock()
	// A prober reads the office through every node during the move and
	// after it, and counts the codes of its refusals: all of them must be
	// retryable.
	probeStop := make(chan struct{})
	probeDone := make(chan map[string]int)
	go func() {
		codes := map[string]int{}
		for i := 0; ; i++ {
			select {
			case <-probeStop:
				probeDone <- codes
				return
			default:
			}
			status, body, err := c.nodes[i%len(c.nodes)].call("GET", "/v1/offices/"+office, "", "")
			switch {
			case err != nil:
				codes["error"]++
			case status != 200:
				codes[fmt.Sprintf("%d %s", status, str(body["code"]))]++
			}
		}
	}()
	start := time.Now()
	code, out := c.clusterCmd("move-office", "-office", office, "-to", strconv.FormatUint(to, 10), "-admin-addr", c.nodes[1].admin)
	if code != 0 {
		t.Fatalf("slotd cluster move-office: exit %d: %s", code, out)
	}
	t.Logf("%s(the command took %v)", out, time.Since(start).Round(time.Millisecond))
	r.mu.Lock()
	atMove := len(r.acks)
	r.mu.Unlock()
	testtime.EventuallyTrue(t, waitFor, "bookings after the move", func() bool { r.mu.Lock(); defer r.mu.Unlock(); return len(r.acks) >= atMove+20 })
	close(probeStop)
	codes := <-probeDone
	t.Logf("refusals of the office's reads during and after the move: %v", codes)
	for code := range codes {
		if !strings.HasPrefix(code, "503 ") {
			t.Errorf("a read of the office during or after its move answered %s", code)
		}
	}
	acks := r.end()
	t.Logf("%d acknowledged (%d before the move, %d when it ended), %d refused, %d retryable failures", len(acks), len(before), atMove, r.refused.Load(), r.failed.Load())
	for g := uint64(1); g <= 2; g++ {
		c.converged(g)
	}
	for _, n := range c.nodes {
		if g := n.groupOf(t, office); g != to {
			t.Fatalf("node %d: %s answers from group %d after its move to %d", n.id, office, g, to)
		}
		checkBooked(t, n, office, acks)
	}
	// Moving it again to where it is refuses; the bookings made before
	// the move are cancelled by their ids through every node.
	if code, out := c.clusterCmd("move-office", "-office", office, "-to", strconv.FormatUint(to, 10), "-admin-addr", c.nodes[0].admin); code == 0 || !strings.Contains(out, "move_refused") {
		t.Fatalf("a move to the office's own group: exit %d: %s", code, out)
	}
	for i, a := range before[:10] {
		n := c.nodes[i%len(c.nodes)]
		var status int
		var body map[string]any
		_ = testtime.Poll(waitFor, func() error {
			var err error
			status, body, err = n.call("POST", "/v1/bookings/"+a.id+"/cancel", fmt.Sprintf(`{"applicant":%q}`, a.applicant), "")
			if err == nil && status == 503 {
				return errors.New("503")
			}
			return err
		})
		if status != 200 || str(body["status"]) != "cancelled" {
			t.Fatalf("node %d: cancel %s after the move: %d %v", n.id, a.id, status, body)
		}
	}
	for g := uint64(1); g <= 2; g++ {
		c.converged(g)
	}
}

// rawCall sends an API request with the portal key and an
// Idempotency-Key and returns the answer's status, body and
// Idempotent-Replayed header.
func (n *node) rawCall(method, path, body, idem string) (int, string, string, error) {
	req, err := http.NewRequest(method, "http://"+n.addr+path, strings.NewReader(body))
	if err != nil {
		return 0, "", "", err
	}
	req.Header.Set("Authorization", "Bearer "+portalKey)
	req.Header.Set("Idempotency-Key", idem)
	resp, err := client.Do(req)
	if err != nil {
		return 0, "", "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header.Get("Idempotent-Replayed"), err
}

// A hold answered with an Idempotency-Key before its office moves,
// retried after the move through another node, is answered from the
// stored record (replica O2, httpapi I1): the same body, byte for byte,
// Idempotent-Replayed, and no second booking for the applicant. So is a
// hold refused before the move (a refusal stored without a change, which
// names the office its request named).
func TestMoveKeepsIdempotentAnswers(t *testing.T) {
	c := startCluster(t, slotdtest.Build(t), 3, 2)
	c.leader(1)
	c.leader(2)
	const office = "msk-mfc-tverskoy"
	from := c.nodes[0].groupOf(t, office)
	to := 3 - from
	body := fmt.Sprintf(`{"office":%q,"service":"patent","applicant":"retrier","earliest_after":"%sT09:00:00+03:00","confirm":true}`, office, nextWeekday(3))
	var status int
	var first string
	testtime.Eventually(t, waitFor, "the first hold", func() error {
		var err error
		status, first, _, err = c.nodes[0].rawCall("POST", "/v1/bookings", body, "retry-me")
		if err == nil && status != 201 {
			return fmt.Errorf("%d %s", status, first)
		}
		return err
	})
	// The same applicant, another start: refused, the service is held.
	again := strings.Replace(body, "T09:00:00", "T11:00:00", 1)
	var refused string
	testtime.Eventually(t, waitFor, "the refused hold", func() error {
		var err error
		status, refused, _, err = c.nodes[0].rawCall("POST", "/v1/bookings", again, "refuse-me")
		if err == nil && status != 409 {
			return fmt.Errorf("%d %s", status, refused)
		}
		return err
	})
	if code, out := c.clusterCmd("move-office", "-office", office, "-to", strconv.FormatUint(to, 10), "-admin-addr", c.nodes[1].admin); code != 0 {
		t.Fatalf("slotd cluster move-office: exit %d: %s", code, out)
	}
	// The first booking is cancelled: a hold anew would now succeed.
	var booked map[string]any
	if err := json.Unmarshal([]byte(first), &booked); err != nil {
		t.Fatal(err)
	}
	id := str(booked["id"])
	testtime.Eventually(t, waitFor, "the cancel", func() error {
		status, out, err := c.nodes[1].call("POST", "/v1/bookings/"+id+"/cancel", `{"applicant":"retrier"}`, "")
		if err == nil && status != 200 {
			return fmt.Errorf("%d %v", status, out)
		}
		return err
	})
	// Each retry on every node but the first answers the stored answer,
	// byte for byte, marked replayed; 503 (the move settling) is retried.
	for _, retry := range []struct {
		what, body, key, want string
		status                int
	}{
		{"the refused hold's retry", again, "refuse-me", refused, 409},
		{"the retry", body, "retry-me", first, 201},
	} {
		for _, n := range c.nodes[1:] {
			var answer, replayed string
			testtime.Eventually(t, waitFor, retry.what, func() error {
				var err error
				status, answer, replayed, err = n.rawCall("POST", "/v1/bookings", retry.body, retry.key)
				if err == nil && status == 503 {
					return fmt.Errorf("%d %s", status, answer)
				}
				return err
			})
			if status != retry.status || answer != retry.want || replayed != "true" {
				t.Fatalf("node %d: %s after the move: %d %s (Idempotent-Replayed %q), the first answer was %d %s", n.id, retry.what, status, answer, replayed, retry.status, retry.want)
			}
		}
	}
	// A group's engine may still be rebuilt after the move (503, retried).
	var out map[string]any
	testtime.Eventually(t, waitFor, "the applicant's bookings", func() error {
		var err error
		status, out, err = c.nodes[2].call("GET", "/v1/bookings?applicant=retrier", "", "")
		if err == nil && status != 200 {
			return fmt.Errorf("%d %v", status, out)
		}
		return err
	})
	if bs, _ := out["bookings"].([]any); len(bs) != 1 {
		t.Fatalf("the applicant has %d bookings after the retries, want the cancelled one: %v", len(bs), out)
	}
}

// O3 and O8 with real processes: the node that runs a move and leads the
// destination is killed with SIGKILL while the office's import goes in
// parts (entries of 1 KiB here); the move run again through another
// node, once the killed one is back, finishes it, and every booking
// acknowledged before is served on every node with its seat.
func TestMoveKilledMidImportRunAgain(t *testing.T) {
	c := startClusterWith(t, slotdtest.Build(t), 3, 2, false, []string{"SLOTD_TEST_MOVE_PART_BYTES=1024"})
	c.leader(1)
	c.leader(2)
	const office = "msk-mfc-tverskoy"
	from := c.nodes[0].groupOf(t, office)
	to := 3 - from
	r := c.startRush(office, nextWeekday(3), 8)
	testtime.EventuallyTrue(t, waitFor, "bookings before the move", func() bool { r.mu.Lock(); defer r.mu.Unlock(); return len(r.acks) >= 60 })
	acks := r.end()
	dest := c.leader(to)
	applied := func() uint64 {
		st, err := dest.status()
		if err != nil {
			return 0
		}
		for _, g := range st {
			if g.Group == to {
				return g.Applied
			}
		}
		return 0
	}
	before := applied()
	type result struct {
		code int
		out  string
	}
	first := make(chan result, 1)
	go func() {
		cmd := exec.Command(c.bin, "cluster", "move-office", "-office", office, "-to", strconv.FormatUint(to, 10), "-admin-addr", dest.admin)
		out, _ := cmd.CombinedOutput()
		first <- result{cmd.ProcessState.ExitCode(), string(out)}
	}()
	testtime.EventuallyTrue(t, waitFor, "parts of the import committed", func() bool { return applied() >= before+5 })
	dest.kill()
	res := <-first
	t.Logf("the move run by the killed node: exit %d: %s", res.code, strings.TrimSpace(res.out))
	dest.start()
	other := c.nodes[dest.id%len(c.nodes)]
	if res.code != 0 {
		// Stopped between its freeze and its move-out: the office is
		// frozen, answered as moving on every node, in no group.
		testtime.Eventually(t, waitFor, "the office answers as moving", func() error {
			status, body, err := other.call("GET", "/v1/offices/"+office, "", "")
			if err == nil && (status != 503 || str(body["code"]) != "office_moving") {
				return fmt.Errorf("%d %v", status, body)
			}
			return err
		})
	}
	code, out := c.clusterCmd("move-office", "-office", office, "-to", strconv.FormatUint(to, 10), "-admin-addr", other.admin)
	t.Logf("the move run again: exit %d: %s", code, strings.TrimSpace(out))
	if code != 0 && (res.code != 0 || !strings.Contains(out, "move_refused")) {
		t.Fatalf("the move run again did not finish it: exit %d: %s", code, out)
	}
	for g := uint64(1); g <= 2; g++ {
		c.converged(g)
	}
	for _, n := range c.nodes {
		if g := n.groupOf(t, office); g != to {
			t.Fatalf("node %d: %s answers from group %d after its move to %d", n.id, office, g, to)
		}
		checkBooked(t, n, office, acks)
	}
}
