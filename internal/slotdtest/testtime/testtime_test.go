package testtime

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestAt(t *testing.T) {
	f := func(got time.Time, want string) {
		t.Helper()
		if s := got.Format(time.RFC3339); s != want {
			t.Errorf("got %s, want %s", s, want)
		}
	}
	f(T0, "2026-11-30T08:00:00+03:00")
	f(At(0, 8, 0), "2026-11-30T08:00:00+03:00")  // T0 itself
	f(At(1, 9, 15), "2026-12-01T09:15:00+03:00") // across the month's end
	f(At(-1, 23, 59), "2026-11-29T23:59:00+03:00")
	if !At(0, 8, 0).Equal(T0) {
		t.Error("At(0, 8, 0) is not T0")
	}
}

func TestPoll(t *testing.T) {
	calls := 0
	if err := Poll(10*time.Second, func() error {
		if calls++; calls < 3 {
			return errors.New("not yet")
		}
		return nil
	}); err != nil || calls != 3 {
		t.Fatalf("Poll: %v after %d calls, want nil after 3", err, calls)
	}
	// A cond that never holds: the last reason comes back.
	calls = 0
	err := Poll(time.Millisecond, func() error { calls++; return fmt.Errorf("reason %d", calls) })
	if err == nil || err.Error() != fmt.Sprintf("reason %d", calls) {
		t.Fatalf("Poll of a cond that never holds: %v after %d calls", err, calls)
	}
}

// fatalRecorder is a testing.TB whose Fatalf records instead of stopping.
type fatalRecorder struct {
	testing.TB
	msg string
}

func (r *fatalRecorder) Helper()                        {}
func (r *fatalRecorder) Fatalf(format string, a ...any) { r.msg = fmt.Sprintf(format, a...) }

func TestEventuallyFails(t *testing.T) {
	r := &fatalRecorder{TB: t}
	Eventually(r, time.Millisecond, "the answer", func() error { return errors.New("still 41") })
	if !strings.Contains(r.msg, "waiting for the answer") || !strings.Contains(r.msg, "still 41") {
		t.Fatalf("Eventually's failure %q lacks what it waited for or why", r.msg)
	}
	r = &fatalRecorder{TB: t}
	EventuallyTrue(r, time.Millisecond, "the answer", func() bool { return false })
	if !strings.Contains(r.msg, "waiting for the answer") {
		t.Fatalf("EventuallyTrue's failure %q lacks what it waited for", r.msg)
	}
	r = &fatalRecorder{TB: t}
	EventuallyTrue(r, time.Millisecond, "the answer", func() bool { return true })
	if r.msg != "" {
		t.Fatalf("EventuallyTrue failed on a cond that holds: %s", r.msg)
	}
}
