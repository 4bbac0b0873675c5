package httpapi

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

// adminCall sends one request to the admin handler and returns the status,
// the body and its Content-Type.
func adminCall(t *testing.T, h http.Handler, method, target string) (int, string, http.Header) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(method, target, nil))
	b, _ := io.ReadAll(rec.Body)
	return rec.Code, string(b), rec.Header()
}

// TestAdminBackupRequest: a malformed request is refused with one line
// saying what is wrong, before any backup starts; a good one reaches the
// BackupFunc with the target cleaned, and its report is the answer.
func TestAdminBackupRequest(t *testing.T) {
	var calls []string
	e := newEnv(t, func(c *Config) {
		c.Backup = func(dir string) (string, error) {
			calls = append(calls, dir)
			return "backup written to " + dir, nil
		}
	})
	h := e.srv.AdminHandler()
	refused := func(method, target string, status int, words string) {
		t.Helper()
		code, body, hdr := adminCall(t, h, method, target)
		if code != status || !strings.HasPrefix(body, "backup: ") || !strings.Contains(body, words) ||
			strings.Count(body, "\n") != 1 || !strings.HasPrefix(hdr.Get("Content-Type"), "text/plain") {
			t.Fatalf("%s %s: %d %q, want %d and one line saying %q", method, target, code, body, status, words)
		}
	}
	refused("GET", "/admin/backup?to=/b", 405, "use POST")
	refused("POST", "/admin/backup", 400, "?to=DIR is required")
	refused("POST", "/admin/backup?to=", 400, "?to=DIR is required")
	refused("POST", "/admin/backup?to=backups/b", 400, `"backups/b" is not an absolute path`)
	refused("POST", "/admin/backup?to=/a&to=/b", 400, "more than once")
	refused("POST", "/admin/backup?to=/a&force=1", 400, `unknown parameter "force"`)
	refused("POST", "/admin/backup?to=/a%00b", 400, "NUL")
	refused("POST", "/admin/backup?to=/"+strings.Repeat("a", backupPathBytesMax), 400, "longer than 4096 bytes")
	if len(calls) != 0 {
		t.Fatalf("a refused request reached the backup: %q", calls)
	}
	code, body, _ := adminCall(t, h, "POST", "/admin/backup?to="+url.QueryEscape("/srv/backups/./b/"))
	if code != 200 || body != "backup written to /srv/backups/b\n" || len(calls) != 1 {
		t.Fatalf("good request: %d %q, calls %q", code, body, calls)
	}
}

// TestAdminBackupRefusals: each refusal a BackupFunc names answers its
// own status and the BackupFunc's words on one line.
func TestAdminBackupRefusals(t *testing.T) {
	var next error
	e := newEnv(t, func(c *Config) {
		c.Backup = func(string) (string, error) { return "", next }
	})
	h := e.srv.AdminHandler()
	f := func(err error, status int) {
		t.Helper()
		next = err
		code, body, hdr := adminCall(t, h, "POST", "/admin/backup?to=/b")
		if code != status || body != "backup: "+strings.ReplaceAll(err.Error(), "\n", " ")+"\n" {
			t.Fatalf("%v: %d %q, want %d and its message", err, code, body, status)
		}
		if status == 503 && hdr.Get("Retry-After") == "" {
			t.Fatalf("%v: 503 without Retry-After", err)
		}
	}
	f(fmt.Errorf("%w: /b is not empty", ErrBackupTargetExists), 409)
	f(fmt.Errorf("%w: /b: its parent / is read-only", ErrBackupTargetUnusable), 422)
	f(ErrBackupRunning, 409)
	f(fmt.Errorf("%w: storage failed", ErrBackupUnavailable), 503)
	f(errors.New("cannot copy 000012.log:\nno space left on device"), 500)
}

// TestAdminBackupAbsent: without a BackupFunc there is no backup route.
func TestAdminBackupAbsent(t *testing.T) {
	e := newEnv(t, nil)
	if code, _, _ := adminCall(t, e.srv.AdminHandler(), "POST", "/admin/backup?to=/b"); code != 404 {
		t.Fatalf("backup route without Config.Backup: %d, want 404", code)
	}
}
