package main

// The keys file and the offices file on the real binary: bad files stop
// the start with one line that names the file and the problem; the keys
// reload on SIGHUP and on POST /admin/reload-keys, without dropping a
// connection, and a bad file on reload leaves the old keys in force.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"slotd/internal/slotdtest"
	"slotd/internal/slotdtest/testtime"
)

// Secrets of the key portal-r in the rotation tests.
const (
	secretOld = "rotation-old-0123456789"
	secretNew = "rotation-new-0123456789"
)

// reloadWaitMax bounds the waits for a SIGHUP's reload; a bound, not a
// measurement.
const reloadWaitMax = 30 * time.Second

// portalKeys is a keys file with the key portal-r of the secrets given.
func portalKeys(secrets ...string) string {
	field := `"key": "` + secrets[0] + `"`
	if len(secrets) > 1 {
		field = `"keys": ["` + strings.Join(secrets, `", "`) + `"]`
	}
	return `[{` + field + `, "name": "portal-r", "scopes": ["portal"], "offices": ["*"]}]`
}

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	// Through a new name and a rename, as an operator's editor or a
	// configuration tool would, so that no reload reads half a file.
	tmp := path + ".new"
	if err := os.WriteFile(tmp, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// startWithKeys starts slotd with -demo and the keys file keys.
func startWithKeys(t *testing.T, keys string) (srv *slotdtest.Server, keysPath string) {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and runs the server")
	}
	keysPath = filepath.Join(t.TempDir(), "keys.json")
	writeFile(t, keysPath, keys)
	return slotdtest.StartArgs(t, slotdtest.Build(t), t.TempDir(), "-keys", keysPath), keysPath
}

// status answers the status of GET /v1/offices with secret.
func status(t *testing.T, s *slotdtest.Server, secret string) int {
	t.Helper()
	code, _ := s.Call(t, secret, "GET", "/v1/offices", "")
	return code
}

// adminReload posts to /admin/reload-keys and returns the answer.
func adminReload(t *testing.T, s *slotdtest.Server) (int, string) {
	t.Helper()
	client := &http.Client{Timeout: reloadWaitMax}
	res, err := client.Post("http://"+s.AdminAddr+"/admin/reload-keys", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

// A rotation with overlap: a SIGHUP adds the new secret and both work;
// an admin reload removes the old one, which then answers 401. The
// booking made with the old secret is the new secret's, and SIGHUP does
// not end the process.
func TestKeysRotateOnReload(t *testing.T) {
	s, keysPath := startWithKeys(t, portalKeys(secretOld))
	id := book(t, s, secretOld, "alice", 3, true)
	if code := status(t, s, secretNew); code != 401 {
		t.Fatalf("the new secret before the reload: %d", code)
	}

	writeFile(t, keysPath, portalKeys(secretOld, secretNew))
	s.Signal(t, syscall.SIGHUP)
	testtime.Eventually(t, reloadWaitMax, "the reload on SIGHUP", func() error {
		if s.Exited() {
			t.Fatal("slotd ended on SIGHUP")
		}
		if n := len(s.Logged("keys reloaded")); n != 1 {
			return fmt.Errorf("%d \"keys reloaded\" lines", n)
		}
		return nil
	})
	for _, secret := range []string{secretOld, secretNew} {
		if code := status(t, s, secret); code != 200 {
			t.Fatalf("secret %s during the overlap: %d", secret, code)
		}
	}
	if code, b := s.Call(t, secretNew, "GET", "/v1/bookings/"+id+"?applicant=alice", ""); code != 200 || b["namespace"] != "portal-r" {
		t.Fatalf("the booking made with the old secret, read with the new one: %d %v", code, b)
	}

	writeFile(t, keysPath, portalKeys(secretNew))
	if code, body := adminReload(t, s); code != 200 || !strings.Contains(body, "1 keys, 1 secrets") {
		t.Fatalf("POST /admin/reload-keys: %d %q", code, body)
	}
	if code := status(t, s, secretOld); code != 401 {
		t.Fatalf("the old secret after its removal: %d", code)
	}
	if code := status(t, s, secretNew); code != 200 {
		t.Fatalf("the new secret after the rotation: %d", code)
	}
	if !s.Stop(t, syscall.SIGTERM) {
		t.Fatal("slotd did not exit cleanly on SIGTERM")
	}
}

// A malformed keys file on reload, by SIGHUP or by the admin call,
// leaves the old keys in force and says so once per reload, naming the
// file and the problem.
func TestKeysMalformedReloadKeepsKeys(t *testing.T) {
	s, keysPath := startWithKeys(t, portalKeys(secretOld))
	writeFile(t, keysPath, "[\n  {\"key\": \""+secretNew+"\", \"name\": \"portal-r\",\n   \"scopes\": [\"portal\"] \"offices\": [\"*\"]}]")
	s.Signal(t, syscall.SIGHUP)
	var line map[string]any
	testtime.Eventually(t, reloadWaitMax, "the refused reload's log line", func() error {
		if s.Exited() {
			t.Fatal("slotd ended on SIGHUP")
		}
		lines := s.Logged("keys not reloaded; the previous keys stay in force")
		if len(lines) != 1 {
			return fmt.Errorf("%d lines", len(lines))
		}
		line = lines[0]
		return nil
	})
	wantErr := "keys file " + keysPath + ": malformed JSON at line 3, column 25"
	if msg, _ := line["error"].(string); !strings.HasPrefix(msg, wantErr) {
		t.Fatalf("the log line's error %q does not begin %q", msg, wantErr)
	}
	if code := status(t, s, secretOld); code != 200 {
		t.Fatalf("the old secret after a refused reload: %d", code)
	}
	if code := status(t, s, secretNew); code != 401 {
		t.Fatalf("the secret of the refused file: %d", code)
	}

	writeFile(t, keysPath, portalKeys(secretNew, "short"))
	code, body := adminReload(t, s)
	if code != 422 || !strings.Contains(body, keysPath) || !strings.Contains(body, "secret 2 must be 16..256 bytes") {
		t.Fatalf("POST /admin/reload-keys of a bad file: %d %q", code, body)
	}
	// The line was written before the answer; the test reads it from a pipe.
	testtime.Eventually(t, reloadWaitMax, "the second refused reload's log line", func() error {
		if n := len(s.Logged("keys not reloaded; the previous keys stay in force")); n != 2 {
			return fmt.Errorf("%d lines for two refused reloads", n)
		}
		return nil
	})
	if code := status(t, s, secretOld); code != 200 {
		t.Fatalf("the old secret after a refused admin reload: %d", code)
	}
	if !s.Stop(t, syscall.SIGTERM) {
		t.Fatal("slotd did not exit cleanly on SIGTERM")
	}
}

// A reload keeps a keep-alive connection open: its next request is
// served under the new keys, a removed secret's with 401, and the
// connection goes on after that too.
func TestKeysReloadKeepsConnection(t *testing.T) {
	s, keysPath := startWithKeys(t, portalKeys(secretOld))
	conn, err := net.Dial("tcp", s.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	rd := bufio.NewReader(conn)
	onConn := func(secret string) int {
		t.Helper()
		_ = conn.SetDeadline(time.Now().Add(reloadWaitMax))
		fmt.Fprintf(conn, "GET /v1/offices HTTP/1.1\r\nHost: slotd\r\nAuthorization: Bearer %s\r\n\r\n", secret)
		res, err := http.ReadResponse(rd, nil)
		if err != nil {
			t.Fatalf("the kept-alive connection: %v", err)
		}
		if _, err := io.Copy(io.Discard, res.Body); err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode
	}
	if code := onConn(secretOld); code != 200 {
		t.Fatalf("before the reload: %d", code)
	}
	writeFile(t, keysPath, portalKeys(secretNew))
	if code, body := adminReload(t, s); code != 200 {
		t.Fatalf("POST /admin/reload-keys: %d %q", code, body)
	}
	for _, c := range []struct {
		secret string
		want   int
	}{{secretNew, 200}, {secretOld, 401}, {secretNew, 200}} {
		if code := onConn(c.secret); code != c.want {
			t.Fatalf("secret %s on the connection after the reload: %d, want %d", c.secret, code, c.want)
		}
	}
}

// A malformed keys or offices file stops the start with exit status 2 and
// one line on stderr that names the file and the problem: no log line, no
// stack trace, no words of an HTTP body.
func TestStartRefusesMalformedFiles(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the server")
	}
	bin := slotdtest.Build(t)
	dir := t.TempDir()
	goodKeys := filepath.Join(dir, "good-keys.json")
	writeFile(t, goodKeys, portalKeys(secretOld))
	office := func(edit func(m map[string]any)) string {
		t.Helper()
		b, err := json.Marshal(slotdtest.Office("msk-test", 2))
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		edit(m)
		b, _ = json.Marshal(m)
		return string(b)
	}
	valid := office(func(map[string]any) {})
	refused := func(flag, content, want string) {
		t.Helper()
		path := filepath.Join(dir, fmt.Sprintf("case-%d.json", time.Now().UnixNano()))
		if content != "\x00missing" {
			writeFile(t, path, content)
		}
		args := []string{"-data", filepath.Join(dir, "data"), "-addr", "127.0.0.1:0", "-admin-addr", "127.0.0.1:0", flag, path}
		if flag == "-offices" {
			args = append(args, "-keys", goodKeys)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute) // a bound, should it start after all
		defer cancel()
		var stdout, stderr bytes.Buffer
		cmd := exec.CommandContext(ctx, bin, args...)
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 2 {
			t.Fatalf("%s %s: %v, want exit status 2; stderr:\n%s", flag, content, err, stderr.String())
		}
		line := stderr.String()
		if strings.Count(line, "\n") != 1 || !strings.HasSuffix(line, "\n") {
			t.Fatalf("%s %s: stderr is not one line:\n%s", flag, content, line)
		}
		prefix := "slotd: " + map[string]string{"-keys": "keys", "-offices": "offices"}[flag] + " file " + path + ": "
		if !strings.HasPrefix(line, prefix) || !strings.Contains(line, want) {
			t.Fatalf("%s %s: stderr %q, want %q and then %q", flag, content, line, prefix, want)
		}
		for _, wrong := range []string{"body", "Go value", "goroutine", "stacktrace", "allocator:", "validation failed"} {
			if strings.Contains(line, wrong) {
				t.Fatalf("%s %s: stderr %q has %q", flag, content, line, wrong)
			}
		}
		if stdout.Len() != 0 {
			t.Fatalf("%s %s: stdout %q", flag, content, stdout.String())
		}
	}
	refused("-keys", `{"key": "k-0123456789abcdef", "name": "a", "scopes": ["portal"], "offices": ["*"]}`,
		`the file must be a JSON array of keys {"name", "key" or "keys", `)
	refused("-keys", "[{\"key\": \"k-0123456789abcdef\", \"name\": \"a\",\n  \"scopes\": [\"portal\"] \"offices\": [\"*\"]}]",
		"malformed JSON at line 2, column 24: invalid character '\"' after object key:value pair")
	refused("-keys", ``, "malformed JSON: the file ends early")
	refused("-keys", `[{"key": "short", "name": "a", "scopes": ["portal"], "offices": ["*"]}]`, "keys[0] (a): key must be 16..256 bytes")
	refused("-keys", `[{"key": "k-0123456789abcdef", "keys": ["k-0123456789abcdeg"], "name": "a", "scopes": ["portal"], "offices": ["*"]}]`,
		`keys[0] (a): give the secret as "key", or several as "keys" during a rotation, not both`)
	refused("-keys", `[{"key": "k-0123456789abcdef", "name": "a", "scopes": ["portal"], "offices": ["*"], "rate": 5}]`, `keys[0]: unknown field "rate"`)
	refused("-keys", "\x00missing", "no such file or directory")
	refused("-offices", `{"id": "msk-test"}`, "the file must be a JSON array of offices, each in the shape PUT /v1/offices/{id} takes, got JSON object")
	refused("-offices", `["msk-test"]`, "offices[0]: the entry must be a JSON object, got JSON string")
	refused("-offices", "[\n"+valid+",\n  ]", "malformed JSON at line 3, column 3: invalid character ']' looking for beginning of value")
	refused("-offices", `[`+office(func(m map[string]any) { m["windows"] = "two" })+`]`, `offices[0]: field "windows"`)
	refused("-offices", `[`+office(func(m map[string]any) { m["window"] = 2 })+`]`, `offices[0]: unknown field "window"`)
	refused("-offices", `[`+office(func(m map[string]any) { m["timezone"] = "Mars/Olympus" })+`]`, `offices[0] (msk-test): unknown timezone "Mars/Olympus"`)
	refused("-offices", `[`+valid+`, `+valid+`]`, `offices[1] (msk-test): the id is used by offices[0] too`)
	refused("-offices", `[`+office(func(m map[string]any) { m["id"] = "msk\ntest" })+`]`, `offices[0]: office id "msk\ntest": use`)
	refused("-offices", "\x00missing", "no such file or directory")
}

// A reload is refused the keys a start would refuse: while active
// bookings of the legacy namespace were counted at start, a file whose
// portal keys all leave it is not put in force.
func TestKeysSourceChecksLegacyBookings(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys.json")
	census := &legacyCensus{}
	source := keysSource(options{keys: path}, census)
	legacy := `[{"key": "k-0123456789abcdef", "name": "portal-old", "namespace": "", "scopes": ["portal"], "offices": ["*"]}]`
	writeFile(t, path, portalKeys(secretOld))
	if _, err := source(); err != nil {
		t.Fatalf("no legacy bookings: %v", err)
	}
	census.active.Store(2)
	if _, err := source(); err == nil || !strings.Contains(err.Error(), "2 active bookings and watches were stored before portal namespaces") {
		t.Fatalf("legacy bookings left to no portal key: %v", err)
	}
	writeFile(t, path, legacy)
	if keys, err := source(); err != nil || len(keys) != 1 {
		t.Fatalf("a portal key of the legacy namespace: %d keys, %v", len(keys), err)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if _, err := source(); err == nil || err.Error() != "no such file or directory" {
		t.Fatalf("a missing file: %v", err)
	}
}
