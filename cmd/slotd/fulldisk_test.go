package main

// Start on a full disk: slotd exits with a clear error, not a panic.

import (
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"

	"slotd/internal/slotdtest"
)

const fullDiskChildEnv = "SLOTD_TEST_FULL_DISK_DIR"

// TestFullDiskChild is the child process of TestDefectFullDiskStartPanics:
// slotd's start on a data directory whose disk takes no more bytes (files
// can be created, empty, as on a full disk). It does nothing in a normal
// run.
func TestFullDiskChild(t *testing.T) {
	dir := os.Getenv(fullDiskChildEnv)
	if dir == "" {
		t.Skip("runs only as the child of TestDefectFullDiskStartPanics")
	}
	opts, err := parseOptions([]string{"-demo", "-data", dir, "-addr", "127.0.0.1:0", "-admin-addr", "127.0.0.1:0"},
		func(string) string { return "" }, os.Stderr)
	if err != nil {
		t.Fatal(err)
	}
	var full atomic.Bool
	full.Store(true)
	opts.dataFS = errorfs.Wrap(vfs.Default, slotdtest.NoSpace(dir, &full))
	os.Exit(start(opts, io.Discard, os.Stderr))
}

// TestDefectFullDiskStartPanics: slotd started on a full disk used to
// panic ("MANIFEST flush failed", Pebble's Fatalf). It exits with status 1
// and a log line that says the disk is full.
func TestDefectFullDiskStartPanics(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cmd := exec.Command(exe, "-test.run=^TestFullDiskChild$", "-test.v=false")
	cmd.Env = append(os.Environ(), fullDiskChildEnv+"="+dir)
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = io.Discard, &stderr
	err = cmd.Run()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("slotd on a full disk ended with %v, want exit status 1; stderr:\n%s", err, stderr.String())
	}
	out := stderr.String()
	if strings.Contains(out, "panic") || strings.Contains(out, "goroutine ") {
		t.Fatalf("slotd panicked on a full disk:\n%s", out)
	}
	if !strings.Contains(out, `"msg":"slotd stopped"`) || !strings.Contains(out, "no space left on device") {
		t.Fatalf("no log line saying why slotd stopped:\n%s", out)
	}
	t.Log(out)
}
