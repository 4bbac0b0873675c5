package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// The admin membership routes refuse what they cannot read with a
// problem and a stable code, before any group is asked; and the CLI
// says so in one line, exit 1, or exit 2 for its own flags.
func TestAdminMembersBadInput(t *testing.T) {
	f := &front{}
	srv := httptest.NewServer(http.HandlerFunc(f.adminMembers))
	defer srv.Close()
	for _, c := range []struct {
		method, path, body string
		status             int
		code               string
	}{
		{"POST", "/cluster/members", `{"node":4}`, 400, "validation_failed"},
		{"POST", "/cluster/members", `not json`, 400, "validation_failed"},
		{"POST", "/cluster/members/x/promote", ``, 400, "validation_failed"},
		{"POST", "/cluster/members/4/promote?max_lag=-1", ``, 400, "validation_failed"},
		{"DELETE", "/cluster/members/0", ``, 400, "validation_failed"},
		{"GET", "/cluster/members", ``, 405, "method_not_allowed"},
		{"PUT", "/cluster/members/4", ``, 405, "method_not_allowed"},
	} {
		req, _ := http.NewRequest(c.method, srv.URL+c.path, strings.NewReader(c.body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var a membersAnswer
		err = json.NewDecoder(resp.Body).Decode(&a)
		resp.Body.Close()
		if err != nil || resp.StatusCode != c.status || a.Code != c.code || a.Status != c.status ||
			resp.Header.Get("Content-Type") != "application/problem+json" || a.Detail == "" {
			t.Errorf("%s %s %s: %d %s %+v (%v), want %d %s with a detail", c.method, c.path, c.body, resp.StatusCode, resp.Header.Get("Content-Type"), a, err, c.status, c.code)
		}
	}

	var out, errOut bytes.Buffer
	if code := runClusterRemove([]string{"-admin-addr", strings.TrimPrefix(srv.URL, "http://"), "-node", "0"}, func(string) string { return "" }, &out, &errOut); code != 2 {
		t.Errorf("cluster remove -node 0: exit %d, want 2: %s", code, errOut.String())
	}
	errOut.Reset()
	if code := runClusterAdd([]string{"-admin-addr", strings.TrimPrefix(srv.URL, "http://"), "-node", "4", "-raft-addr", "h:1"}, func(string) string { return "" }, &out, &errOut); code != 2 {
		t.Errorf("cluster add without -api-addr: exit %d, want 2: %s", code, errOut.String())
	}
	errOut.Reset()
	if code := runClusterRemove([]string{"-admin-addr", "127.0.0.1:1", "-node", "3"}, func(string) string { return "" }, &out, &errOut); code != 1 ||
		strings.Count(strings.TrimSpace(errOut.String()), "\n") != 0 || !strings.Contains(errOut.String(), "no admin listener answered") {
		t.Errorf("cluster remove with no node answering: exit %d, %q; want 1 and one line", code, errOut.String())
	}
}
