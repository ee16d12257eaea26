package testedge

import (
	"bufio"
	"net"
	"net/http"
	"testing"
)

// closingServer answers the first request of each connection and closes
// the connection on the second without answering it, as an nginx worker
// that reloads closes an idle keep-alive connection just as a request
// arrives on it.
func closingServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				br := bufio.NewReader(conn)
				if _, err := http.ReadRequest(br); err != nil {
					return
				}
				conn.Write([]byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"))
				http.ReadRequest(br) // the second: closed unanswered
			}()
		}
	}()
	return "http://" + ln.Addr().String() + "/"
}

// TestNoResendCountsAClosedKeepAliveAsFailed: net/http's client resends a
// GET whose kept-alive connection the server closed, and the loss does not
// show; the raw client's GET fails.
func TestNoResendCountsAClosedKeepAliveAsFailed(t *testing.T) {
	url := closingServer(t)
	get := func(do func(*http.Request) (*http.Response, error)) error {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := do(req)
		if err == nil {
			resp.Body.Close()
		}
		return err
	}
	c := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
	for i := range 2 {
		if err := get(c.Do); err != nil {
			t.Errorf("net/http GET %d: %v; want it resent on a new connection", i+1, err)
		}
	}
	raw := &rawClient{dial: (&net.Dialer{}).DialContext}
	defer raw.close()
	if err := get(raw.do); err != nil {
		t.Fatalf("raw GET 1: %v", err)
	}
	if err := get(raw.do); err == nil {
		t.Error("raw GET 2 on the connection the server closed unanswered succeeded; want it failed, not resent")
	}
	if err := get(raw.do); err != nil {
		t.Errorf("raw GET 3, on a new connection: %v", err)
	}
}
