package httpapi

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"slotd/api"
)

// A request that stalls half-way (slowloris) is cut off by the read
// timeout with a 408 request_timeout problem and a closed connection, not
// with a 400 validation problem.
func TestStalledRequestGets408(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.ReadTimeout = 300 * time.Millisecond })
	conn, err := net.Dial("tcp", strings.TrimPrefix(e.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(20 * time.Second))              // a bound, not an assertion
	io.WriteString(conn, "GET /v1/offices HTTP/1.1\r\nHost: x\r\n") // headers never end
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	wantProblem(t, "stalled request", resp, body, http.StatusRequestTimeout, api.CodeRequestTimeout)
}
