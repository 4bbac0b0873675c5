package cluster

import (
	"fmt"
	"testing"
	"time"
)

// waitMax bounds every wait of the tests: a bound, not a measurement.
const waitMax = 30 * time.Second

// eventually polls cond until it returns nil, failing the test with cond's
// last error after waitMax.
func eventually(t testing.TB, what string, cond func() error) {
	t.Helper()
	if err := poll(what, cond); err != nil {
		t.Fatal(err)
	}
}

// poll polls cond until it returns nil, or returns cond's last error after
// waitMax. Unlike eventually, it may run outside the test's goroutine.
func poll(what string, cond func() error) error {
	deadline := time.Now().Add(waitMax)
	for {
		err := cond()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: not reached within %s: %w", what, waitMax, err)
		}
		time.Sleep(2 * time.Millisecond)
	}
}
