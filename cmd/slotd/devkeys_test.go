package main

import (
	"os"
	"path/filepath"
	"testing"

	"slotd/allocator"
	"slotd/httpapi"
)

// A development keys file written before portal namespaces gives the demo
// portal the namespace "" of the bookings it made then; a new one names
// each key's namespace, and any file that names one is read as it is.
func TestDevKeysBeforeNamespacesReachLegacyBookings(t *testing.T) {
	namespaces := func(data []byte) map[string]*string {
		t.Helper()
		keys, err := httpapi.LoadKeys(data)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]*string{}
		for _, k := range keys {
			out[k.Name] = k.Namespace
		}
		return out
	}
	dir := t.TempDir()
	fresh, err := devKeys(dir)
	if err != nil {
		t.Fatal(err)
	}
	if ns := namespaces(fresh)[devPortalName]; ns == nil || *ns != devPortalName {
		t.Fatalf("a new development portal key has namespace %v, want its name", ns)
	}
	// Read back, a new file keeps its namespaces.
	again, err := devKeys(dir)
	if err != nil {
		t.Fatal(err)
	}
	if ns := namespaces(again)[devPortalName]; ns == nil || *ns != devPortalName {
		t.Fatalf("a development keys file read back gave the portal namespace %v, want its name", ns)
	}
	old := `[{"key":"dev-portal-0123456789abcdef","name":"demo-portal","scopes":["portal"],"offices":["*"]},
	         {"key":"dev-admin-0123456789abcdef","name":"demo-admin","scopes":["admin","portal"],"offices":["*"]}]`
	if err := os.WriteFile(filepath.Join(dir, devKeysFile), []byte(old), 0o600); err != nil {
		t.Fatal(err)
	}
	read, err := devKeys(dir)
	if err != nil {
		t.Fatal(err)
	}
	got := namespaces(read)
	if ns := got[devPortalName]; ns == nil || *ns != "" {
		t.Fatalf("the demo portal of a file from before namespaces: namespace %v, want \"\"", ns)
	}
	if ns := got["demo-admin"]; ns != nil {
		t.Fatalf("demo-admin got namespace %q; only the demo portal takes the legacy one", *ns)
	}
	named := `[{"key":"dev-portal-0123456789abcdef","name":"demo-portal","namespace":"demo-portal","scopes":["portal"],"offices":["*"]}]`
	if err := os.WriteFile(filepath.Join(dir, devKeysFile), []byte(named), 0o600); err != nil {
		t.Fatal(err)
	}
	if read, err = devKeys(dir); err != nil {
		t.Fatal(err)
	}
	if ns := namespaces(read)[devPortalName]; ns == nil || *ns != "demo-portal" {
		t.Fatalf("a file naming its namespaces was changed: %v", ns)
	}
}

// The census at start counts active watches of the legacy namespace as it
// counts active bookings: an auto-hold watch no portal key reaches would
// hold seats for applicants no portal can see.
func TestLegacyCensusCountsWatches(t *testing.T) {
	e, err := allocator.New(allocator.Config{Journal: &allocator.MemJournal{}})
	if err != nil {
		t.Fatal(err)
	}
	c := &legacyCensus{Engine: e}
	d, _ := allocator.ParseDate("2027-01-10")
	watch := func(id byte, applicant string, active bool) {
		t.Helper()
		w := &allocator.WatchRecord{ID: allocator.ID{id}, Applicant: applicant, Service: "s", Office: "o",
			From: d, To: d + 5, AutoHold: true, CreatedUnixNano: int64(id), Active: active}
		if err := c.RestoreWatch(w); err != nil {
			t.Fatal(err)
		}
	}
	watch(1, "alice", true)           // legacy, active
	watch(2, "portal-a\x00bob", true) // a namespace's
	watch(3, "carol", false)          // legacy, ended
	if got := c.active.Load(); got != 1 {
		t.Fatalf("active legacy bookings and watches counted: %d, want 1", got)
	}
}
