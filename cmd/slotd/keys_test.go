package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestDefectShortTicketSecretReplaced: a ticket-secret file shorter than
// 32 bytes (an operator's mistake, a truncated copy) stops the start with
// a message naming the file, and the file is left as it was. Replacing it
// would invalidate every ticket already issued, with no word to anyone.
func TestDefectShortTicketSecretReplaced(t *testing.T) {
	for _, short := range [][]byte{nil, []byte("0123456789abcdef"), bytes.Repeat([]byte("s"), 31)} {
		dir := t.TempDir()
		path := filepath.Join(dir, secretFile)
		if err := os.WriteFile(path, short, 0o600); err != nil {
			t.Fatal(err)
		}
		secret, err := ticketSecret(dir)
		if err == nil {
			t.Fatalf("a %d-byte secret file was accepted (got a %d-byte secret)", len(short), len(secret))
		}
		if msg := err.Error(); !strings.Contains(msg, path) || !strings.Contains(msg, "32 bytes") {
			t.Fatalf("error %q does not name the file and the 32-byte minimum", msg)
		}
		if got, _ := os.ReadFile(path); !bytes.Equal(got, short) {
			t.Fatalf("the %d-byte secret file was rewritten", len(short))
		}
	}
}

// A missing secret is created once and read back unchanged at the next
// start, so tickets stay valid across restarts.
func TestTicketSecretCreatedOnce(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	first, err := ticketSecret(dir)
	if err != nil || len(first) < 32 {
		t.Fatalf("first start: %d bytes, %v", len(first), err)
	}
	again, err := ticketSecret(dir)
	if err != nil || !bytes.Equal(first, again) {
		t.Fatalf("second start read another secret: %v", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Fatalf("the data directory holds %d entries, want only %s", len(entries), secretFile)
	}
}
