package clustertest

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"testing"
	"time"

	"slotd/internal/slotdtest"
)

// clientFrom returns an HTTP client whose connections leave from the
// loopback address ip (127.0.0.0/8 is all this machine's), so that the
// nodes see clients apart from each other and from the nodes, which talk
// from 127.0.0.1.
func clientFrom(ip string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
	return &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return d.DialContext(ctx, network, addr)
		},
		DisableKeepAlives: true,
	}}
}

// badKey sends a request with an unknown key to n from c, with the
// extra headers, and returns the status.
func badKey(t *testing.T, c *http.Client, n *node, headers map[string]string) int {
	t.Helper()
	req, _ := http.NewRequest("GET", "http://"+n.addr+"/v1/offices/msk-mfc-tverskoy", nil)
	req.Header.Set("Authorization", "Bearer not-a-key-of-this-cluster")
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// untilLimited sends bad keys until one answers 429, and fails the test
// if none does within well past the burst (20 at 1 a second).
func untilLimited(t *testing.T, what string, send func() int) {
	t.Helper()
	for i := range 200 {
		switch s := send(); s {
		case 429:
			t.Logf("%s: limited after %d requests", what, i+1)
			return
		case 401:
		default:
			t.Fatalf("%s: %d, want 401 then 429", what, s)
		}
	}
	t.Fatalf("%s: never limited", what)
}

// The failed-authentication limit counts a forwarded request against the
// client that sent it to the first node, which names it in a header the
// forward token covers: bad keys from one client through a follower get
// that client limited on the leader, not the follower, whose other
// clients still get 401. A client's own X-Slotd-Client, without the
// forward token, is dropped: its failures count against its own address.
func TestAuthFailuresCountTheClientNotTheForwarder(t *testing.T) {
	c := startCluster(t, slotdtest.Build(t), 3, 1)
	leader := c.leader(1)
	var follower *node
	for _, n := range c.nodes {
		if n != leader {
			follower = n
			break
		}
	}
	a, b := clientFrom("127.0.0.2"), clientFrom("127.0.0.3")
	untilLimited(t, "client A through a follower", func() int { return badKey(t, a, follower, nil) })
	if s := badKey(t, b, follower, nil); s != 401 {
		t.Fatalf("client B's first bad key through the same follower: %d, want 401 (A's failures were counted against the follower)", s)
	}
	if s := badKey(t, a, leader, nil); s != 429 {
		t.Fatalf("client A at the leader itself: %d, want 429 (the leader counted its failures through the follower)", s)
	}

	// Spoofed: client C names client D as the client, with a forward
	// token it made up.
	cc, d := clientFrom("127.0.0.4"), clientFrom("127.0.0.5")
	spoof := map[string]string{"X-Slotd-Client": "127.0.0.5", "X-Slotd-Forwarded": fmt.Sprintf("%032x", 0)}
	untilLimited(t, "client C naming D", func() int { return badKey(t, cc, leader, spoof) })
	if s := badKey(t, d, leader, nil); s != 401 {
		t.Fatalf("client D's first bad key: %d, want 401 (C's spoofed header was honoured)", s)
	}
}
