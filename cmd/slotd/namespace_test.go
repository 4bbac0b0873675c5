package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"slotd/httpapi"
	"slotd/internal/slotdtest"
)

// The keys file names each key's namespace; without one, a key is in the
// namespace of its name, and "" is the legacy namespace.
func TestLoadKeysNamespaces(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys.json")
	data := `[{"key":"k-0123456789abcdef","name":"portal-a","scopes":["portal"],"offices":["*"]},
	          {"key":"k-0123456789abcdeg","name":"portal-a-2027","namespace":"portal-a","scopes":["portal"],"offices":["*"]},
	          {"key":"k-0123456789abcdeh","name":"old-portal","namespace":"","scopes":["portal"],"offices":["*"]}]`
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	keys, err := readKeys(options{keys: path})
	if err != nil {
		t.Fatal(err)
	}
	ns := func(k httpapi.Key) string {
		if k.Namespace == nil {
			return "(absent)"
		}
		return `"` + *k.Namespace + `"`
	}
	if got := ns(keys[0]) + " " + ns(keys[1]) + " " + ns(keys[2]); got != `(absent) "portal-a" ""` {
		t.Fatalf("namespaces %s", got)
	}
	// A namespace is spelled like a key name.
	if err := os.WriteFile(path, []byte(`[{"key":"k-0123456789abcdef","name":"p","namespace":"a b","scopes":["portal"],"offices":["*"]}]`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := readKeys(options{keys: path}); err == nil || !strings.Contains(err.Error(), "namespace") {
		t.Fatalf("a namespace with a space: %v", err)
	}
}

// namespaceProc is a slotd process and the keys of namespaceDevKeys.
type namespaceProc struct {
	*slotdtest.Server
}

// call sends an API request with the key named key.
func (p *namespaceProc) call(t *testing.T, key, method, path, body string) (int, map[string]any) {
	t.Helper()
	return p.Call(t, p.Keys[key], method, path, body)
}

// book confirms a booking of applicant with the key named key, three days
// ahead, and returns its id.
func (p *namespaceProc) book(t *testing.T, key, applicant string) string {
	t.Helper()
	return book(t, p.Server, p.Keys[key], applicant, 3, true)
}

// writeDevKeys writes the keys -demo reads from the data directory.
func writeDevKeys(t *testing.T, data, keys string) {
	t.Helper()
	if err := os.MkdirAll(data, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(data, devKeysFile), []byte(keys), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestDefectRestartKeepsNamespaces: the namespace of a booking is durable.
// After a restart, portal-a's second key still reaches what portal-a
// booked for alice, portal-b still does not, and the legacy namespace
// still holds what a key naming "" booked. A keys file that would leave
// the legacy namespace's active bookings to no portal key is refused.
func TestDefectRestartKeepsNamespaces(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the server")
	}
	bin := slotdtest.Build(t)
	data := t.TempDir()
	const keysWith = `[
	  {"key":"ns-portal-a-0123456789","name":"portal-a","scopes":["portal"],"offices":["*"]},
	  {"key":"ns-portal-a2-0123456789","name":"portal-a-2027","namespace":"portal-a","scopes":["portal"],"offices":["*"]},
	  {"key":"ns-portal-b-0123456789","name":"portal-b","scopes":["portal"],"offices":["*"]},
	  {"key":"ns-legacy-0123456789","name":"portal-legacy","namespace":"","scopes":["portal"],"offices":["*"]},
	  {"key":"ns-operator-0123456789","name":"operator","scopes":["operator"],"offices":["*"]}]`
	writeDevKeys(t, data, keysWith)
	p := &namespaceProc{slotdtest.Start(t, bin, data)}
	alice := p.book(t, "portal-a", "alice")
	legacy := p.book(t, "portal-legacy", "alice")
	bob := p.book(t, "portal-b", "bob")
	p.Stop(t, syscall.SIGKILL)

	p = &namespaceProc{slotdtest.Start(t, bin, data)}
	get := func(key, id, applicant string, status int) map[string]any {
		t.Helper()
		code, b := p.call(t, key, "GET", "/v1/bookings/"+id+"?applicant="+applicant, "")
		if code != status {
			t.Fatalf("%s reads %s of %s: %d %v, want %d", key, id, applicant, code, b, status)
		}
		return b
	}
	if b := get("portal-a-2027", alice, "alice", 200); b["applicant"] != "alice" || b["namespace"] != "portal-a" {
		t.Fatalf("portal-a's booking after the restart: %v", b)
	}
	get("portal-b", alice, "alice", 404)
	get("portal-legacy", alice, "alice", 404)
	if b := get("portal-legacy", legacy, "alice", 200); b["applicant"] != "alice" || b["namespace"] != "" {
		t.Fatalf("the legacy namespace's booking after the restart: %v", b)
	}
	get("portal-a", legacy, "alice", 404)
	get("portal-b", bob, "bob", 200)
	get("portal-a", bob, "bob", 404)
	if code, b := p.call(t, "portal-b", "GET", "/v1/bookings?applicant=alice", ""); code != 200 || len(b["bookings"].([]any)) != 0 {
		t.Fatalf("portal-b lists alice's bookings after the restart: %d %v", code, b)
	}
	if code, b := p.call(t, "portal-b", "POST", "/v1/bookings/"+alice+"/cancel", `{"applicant":"alice"}`); code != 404 {
		t.Fatalf("portal-b cancels portal-a's booking after the restart: %d %v", code, b)
	}
	if code, b := p.call(t, "operator", "GET", "/v1/bookings/"+alice, ""); code != 200 {
		t.Fatalf("the operator reads portal-a's booking: %d %v", code, b)
	}
	if !p.Stop(t, syscall.SIGTERM) {
		t.Fatal("slotd did not exit cleanly on SIGTERM")
	}

	// Without a portal key in the legacy namespace, its active booking
	// would be out of every portal's reach: slotd refuses to start.
	writeDevKeys(t, data, strings.Replace(keysWith, `"namespace":"",`, ``, 1))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute) // a bound, should it start after all
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "-demo", "-data", data, "-addr", "127.0.0.1:0", "-admin-addr", "127.0.0.1:0").CombinedOutput()
	if err == nil || !strings.Contains(string(out), `1 active bookings and watches were stored before portal namespaces`) {
		t.Fatalf("slotd started with the legacy namespace unreachable: %v\n%s", err, out)
	}
}
