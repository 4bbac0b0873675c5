package cluster

import (
	"fmt"
	"testing"
	"time"

	"slotd/internal/slotdtest/testtime"
)

// waitMax bounds every wait of the tests: a bound, not a measurement.
const waitMax = 30 * time.Second

// eventually waits for cond with the project's one deadline poll.
func eventually(t testing.TB, what string, cond func() error) {
	t.Helper()
	testtime.Eventually(t, waitMax, what, cond)
}

// poll is eventually for goroutines other than the test's: it returns
// cond's last error after waitMax instead of failing the test.
func poll(what string, cond func() error) error {
	if err := testtime.Poll(waitMax, cond); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}
