package deploy

import (
	"bytes"
	"context"
	"errors"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// The tests that need Docker (container_test.go, compose_test.go) skip
// with the reason when the docker client or its daemon is missing.

const (
	// dockerCallMax bounds one docker command; a bound, not a measurement.
	dockerCallMax = 5 * time.Minute
	// dockerCleanupMax bounds each removal at the end of a test.
	dockerCleanupMax = time.Minute
)

// dockerOrSkip returns the docker client's path, or skips the test when
// the client is not installed or its daemon does not answer.
func dockerOrSkip(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("docker")
	if err != nil {
		t.Skip("docker not found on PATH: the container tests need the Docker client and a running daemon")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, path, "info", "--format", "{{.ServerVersion}}").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) == "" {
		t.Skipf("the Docker daemon does not answer (docker info: %v): %s", err, strings.TrimSpace(string(out)))
	}
	return path
}

// run runs a command bounded by dockerCallMax and returns its standard
// output; a failure fails the test with both outputs.
func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	stdout, stderr, err := runErr(dockerCallMax, name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s%s", name, strings.Join(args, " "), err, stdout, stderr)
	}
	return stdout
}

// runErr runs a command bounded by timeout and returns its outputs.
func runErr(timeout time.Duration, name string, args ...string) (stdout, stderr string, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var out, errOut bytes.Buffer
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err = cmd.Run()
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		err = errors.Join(err, ctx.Err())
	}
	return out.String(), errOut.String(), err
}

// cleanup removes what a test created, bounded, whatever the test's
// outcome; a failed removal is reported, not fatal.
func cleanup(t *testing.T, name string, args ...string) {
	t.Cleanup(func() {
		if stdout, stderr, err := runErr(dockerCleanupMax, name, args...); err != nil {
			t.Errorf("cleanup: %s %s: %v\n%s%s", name, strings.Join(args, " "), err, stdout, stderr)
		}
	})
}
