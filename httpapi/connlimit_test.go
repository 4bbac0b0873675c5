package httpapi

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// ConnsPerIPMax: connections from one address beyond the cap are answered
// 429 and closed, while the ones within it keep working.
func TestConnectionsPerIPCapped(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.ConnsPerIPMax = 2 })
	addr := strings.TrimPrefix(e.url, "http://")
	get := func(conn net.Conn) (*http.Response, error) {
		conn.SetDeadline(time.Now().Add(20 * time.Second)) // a bound, not an assertion
		io.WriteString(conn, "GET /v1/offices HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "+keyPortal+"\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
		}
		return resp, err
	}
	var kept []net.Conn
	for i := 0; i < 2; i++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if resp, err := get(c); err != nil || resp.StatusCode != 200 {
			t.Fatalf("connection %d within the cap: %v %v", i, resp, err)
		}
		kept = append(kept, c)
	}
	extra, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer extra.Close()
	resp, err := get(extra)
	if err == nil && resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("third connection from one address: %d, want 429 or a closed connection", resp.StatusCode)
	}
	if resp, err := get(kept[0]); err != nil || resp.StatusCode != 200 {
		t.Fatalf("a connection within the cap stopped working: %v %v", resp, err)
	}
}
