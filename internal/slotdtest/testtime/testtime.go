// Package testtime is the time of slotd's tests: the zones and the fixed
// instants they run at, and waiting with a deadline for what another
// goroutine or process does.
//
// It imports only the standard library, unlike slotdtest, which imports
// allocator for its office configs: the allocator's own tests (package
// allocator) can import this package, and not slotdtest, which would be
// an import cycle.
package testtime

import (
	"errors"
	"testing"
	"time"
)

// MustLoc loads the zone name from the system's zone database and panics
// if it cannot: a test without its zone cannot mean anything.
func MustLoc(name string) *time.Location {
	l, err := time.LoadLocation(name)
	if err != nil {
		panic(err)
	}
	return l
}

var (
	// MSK is the zone of the test offices (slotdtest.Office).
	MSK = MustLoc("Europe/Moscow")
	// Berlin is the zone of the daylight-saving tests: in 2027 its clocks
	// skip 02:00–03:00 on 28 March and repeat it on 31 October.
	Berlin = MustLoc("Europe/Berlin")
)

// T0 is the tests' "now": Monday 2026-11-30 08:00 in Moscow, an hour
// before the test offices open and before the release minute of the next
// day.
var T0 = time.Date(2026, 11, 30, 8, 0, 0, 0, MSK)

// At returns the Moscow instant at hour:minute on the day dayOffset days
// from T0's date.
func At(dayOffset, hour, minute int) time.Time {
	return time.Date(T0.Year(), T0.Month(), T0.Day()+dayOffset, hour, minute, 0, 0, MSK)
}

// Polling starts at pollFirst, to notice a condition that holds at once
// without delay, and doubles up to pollMax, to keep a slow one (a scrape
// over HTTP, a server coming back) from spinning a CPU the goroutine it
// waits for needs.
const (
	pollFirst = time.Millisecond
	pollMax   = 50 * time.Millisecond
)

// Poll calls cond until it returns nil, and returns nil; or, once timeout
// has passed, returns cond's last error. timeout is a bound on the wait,
// never an assertion about how long anything takes: pick it generous.
func Poll(timeout time.Duration, cond func() error) error {
	deadline := time.Now().Add(timeout)
	sleep := pollFirst
	for {
		err := cond()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(sleep)
		sleep = min(2*sleep, pollMax)
	}
}

// Eventually polls cond until it returns nil, and fails the test if it
// still returns an error after timeout: "waiting for <what>: not within
// <timeout>: <cond's last error>". cond says why it does not hold yet, so
// that the failure tells what the test saw. It runs on the test's
// goroutine and may itself fail the test.
func Eventually(tb testing.TB, timeout time.Duration, what string, cond func() error) {
	tb.Helper()
	if err := Poll(timeout, cond); err != nil {
		tb.Fatalf("waiting for %s: not within %s: %v", what, timeout, err)
	}
}

// errNotYet is the reason EventuallyTrue gives for a cond that is false.
var errNotYet = errors.New("the condition is still false")

// EventuallyTrue is Eventually for a cond that can only say whether it
// holds.
func EventuallyTrue(tb testing.TB, timeout time.Duration, what string, cond func() bool) {
	tb.Helper()
	Eventually(tb, timeout, what, func() error {
		if !cond() {
			return errNotYet
		}
		return nil
	})
}
