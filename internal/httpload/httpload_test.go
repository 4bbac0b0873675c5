package httpload

import (
	"bytes"
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// A run against a real fasthttp server on loopback answers every request,
// in order on each connection, plain and pipelined: the server echoes the
// request's number and Check sees each answer with the number of the
// request it was sent for.
func TestRunAgainstServer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		n, _ := strconv.Atoi(string(ctx.QueryArgs().Peek("n")))
		if n%7 == 0 {
			ctx.SetStatusCode(404)
		}
		// Answers of many sizes, some split across reads.
		ctx.SetBody(append(strconv.AppendInt(nil, int64(n), 10), bytes.Repeat([]byte{'-'}, n%5000)...))
	}}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Shutdown() })
	for _, c := range []struct{ conns, depth, n int }{{1, 1, 50}, {4, 1, 400}, {3, 32, 2000}, {8, 5, 1001}} {
		res, err := Run(Config{Addr: ln.Addr().String(), Conns: c.conns, Depth: c.depth, Requests: c.n,
			Request: func(i int) []byte { return fmt.Appendf(nil, "GET /?n=%d HTTP/1.1\r\nHost: x\r\n\r\n", i) },
			Check: func(i, status int, body []byte) error {
				want := append(strconv.AppendInt(nil, int64(i), 10), bytes.Repeat([]byte{'-'}, i%5000)...)
				if !bytes.Equal(body, want) || (status == 404) != (i%7 == 0) {
					return fmt.Errorf("answer %d %.20q is not request %d's", status, body, i)
				}
				return nil
			}})
		if err != nil {
			t.Fatalf("%+v: %v", c, err)
		}
		want404 := (c.n + 6) / 7
		if res.Requests != c.n || res.Status[404] != want404 || res.Status[200] != c.n-want404 || len(res.Latencies) != c.n {
			t.Fatalf("%+v: %d answered, statuses %v, %d latencies", c, res.Requests, res.Status, len(res.Latencies))
		}
		if res.Percentile(0) > res.Percentile(99) {
			t.Fatalf("latencies not sorted")
		}
	}
	// A Check that refuses fails the run.
	_, err = Run(Config{Addr: ln.Addr().String(), Conns: 2, Depth: 4, Requests: 40,
		Request: func(i int) []byte { return fmt.Appendf(nil, "GET /?n=%d HTTP/1.1\r\nHost: x\r\n\r\n", i) },
		Check: func(i, status int, body []byte) error {
			if i == 17 {
				return fmt.Errorf("refused")
			}
			return nil
		}})
	if err == nil || !strings.Contains(err.Error(), "request 17: refused") {
		t.Fatalf("a refusing Check: %v", err)
	}
}

// rawServer serves each connection with serve, on loopback, until the
// test ends; it returns the address.
func rawServer(t *testing.T, serve func(net.Conn)) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go serve(c)
		}
	}()
	return ln.Addr().String()
}

// A server that answers nothing makes Run fail at its timeout, not hang.
func TestRunTimesOut(t *testing.T) {
	addr := rawServer(t, func(c net.Conn) {
		time.Sleep(time.Second) // reads nothing, answers nothing
		c.Close()
	})
	_, err := Run(Config{Addr: addr, Conns: 1, Depth: 1, Requests: 1, Timeout: 50 * time.Millisecond,
		Request: func(int) []byte { return []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n") }})
	if err == nil || !strings.Contains(err.Error(), "timeout") {
		t.Fatalf("a silent server: %v", err)
	}
}

// A server that closes the connection early makes Run fail, naming how
// many answers were due, instead of hanging or counting them answered.
func TestRunReportsEarlyClose(t *testing.T) {
	addr := rawServer(t, func(c net.Conn) {
		c.Write([]byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"))
		c.Close()
	})
	res, err := Run(Config{Addr: addr, Conns: 1, Depth: 4, Requests: 10,
		Request: func(int) []byte { return []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n") }})
	if err == nil {
		t.Fatalf("no error; %d answered", res.Requests)
	}
	if res.Requests > 1 {
		t.Fatalf("%d answered, the server sent one", res.Requests)
	}
}

func TestParseAnswer(t *testing.T) {
	for _, c := range []struct {
		in           string
		status, size int
		bad          bool
	}{
		{"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", 200, 40, false},
		{"HTTP/1.1 404 Not Found\r\ncontent-length:0\r\n\r\nHTTP/1.1", 404, 44, false},
		{"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nok", 0, 0, false}, // body not all here
		{"HTTP/1.1 200 OK\r\nContent-Len", 0, 0, false},                 // head not all here
		{"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", 0, 0, true},
		{"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", 0, 0, true},
		{"HTTP/1.1 2x0 OK\r\nContent-Length: 0\r\n\r\n", 0, 0, true},
		{"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", 0, 0, true},
		{"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999\r\n\r\n", 0, 0, true},
		{"HTTP/1.1\r\n\r\n", 0, 0, true},
		{"HTTP/1.1 2000 OK\r\nContent-Length: 0\r\n\r\n", 0, 0, true},
		{"HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n", 200, 35, false},
		{"HTTP/1.1 200 OK\r\nContent-Length: 2x\r\n\r\nok", 0, 0, true},
		{"HTTP/1.1 200 OK\r\nContent-Length: 1, 2\r\n\r\nok", 0, 0, true},
		{"HTTP/1.1 200 OK\r\nContent-Length:  2 \r\n\r\nok", 200, 42, false},
	} {
		status, _, size, err := parseAnswer([]byte(c.in))
		if (err != nil) != c.bad || status != c.status || size != c.size {
			t.Errorf("%q: %d, %d, %v; want %d, %d, error %v", c.in, status, size, err, c.status, c.size, c.bad)
		}
	}
}

// parseAnswer never panics and never claims more bytes than it was given.
func FuzzParseAnswer(f *testing.F) {
	f.Add([]byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"))
	f.Add([]byte("HTTP/1.1 404 Not Found\r\ncontent-length:0\r\n\r\n"))
	f.Add([]byte("HTTP/1.1 200 OK\r\nContent-Length: 18446744073709551617\r\n\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		status, bodyAt, size, err := parseAnswer(b)
		if err == nil && size > 0 && (size > len(b) || bodyAt > size || status < 0 || status > 999) {
			t.Fatalf("status %d body at %d size %d of %d bytes", status, bodyAt, size, len(b))
		}
	})
}

// A Conn sends one request at a time and hands back each answer's status
// and body; after the server closed the connection the failed request is
// an error and the next one dials again.
func TestConn(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		if string(ctx.Path()) == "/last" {
			ctx.SetConnectionClose() // answers, then closes
			ctx.SetBodyString("last")
			return
		}
		if string(ctx.Path()) == "/close" {
			ctx.HijackSetNoResponse(true)
			ctx.Hijack(func(c net.Conn) {}) // closes without an answer
			return
		}
		ctx.SetStatusCode(201)
		ctx.SetBody(append([]byte("echo:"), ctx.PostBody()...))
	}}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Shutdown() })
	c := NewConn(ln.Addr().String(), 5*time.Second)
	defer c.Close()
	post := func(body string) []byte {
		return fmt.Appendf(nil, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
	}
	for i := range 50 {
		body := strings.Repeat("b", i*300) // some answers span several reads
		status, got, err := c.Do(post(body))
		if err != nil || status != 201 || string(got) != "echo:"+body {
			t.Fatalf("request %d: %d %.40q %v", i, status, got, err)
		}
	}
	if _, _, err := c.Do([]byte("GET /close HTTP/1.1\r\nHost: x\r\n\r\n")); err == nil {
		t.Fatal("a closed connection answered")
	}
	if status, got, err := c.Do(post("again")); err != nil || status != 201 || string(got) != "echo:again" {
		t.Fatalf("after the close: %d %q %v", status, got, err)
	}
	if status, got, err := c.Do([]byte("GET /last HTTP/1.1\r\nHost: x\r\n\r\n")); err != nil || status != 200 || string(got) != "last" {
		t.Fatalf("an answer with Connection: close: %d %q %v", status, got, err)
	}
	if status, got, err := c.Do(post("after")); err != nil || status != 201 || string(got) != "echo:after" {
		t.Fatalf("after Connection: close: %d %q %v", status, got, err)
	}
}
