package main

import (
	"bufio"
	"context"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgeswitch/edgeswitch/internal/testedge"
)

func TestStreamParams(t *testing.T) {
	tests := []struct {
		name      string
		query     string
		wantN     int
		wantEvery time.Duration
		wantErr   bool
	}{
		{"3 seconds of one every 100ms by default", "", 30, 100 * time.Millisecond, false},
		{"seconds and every", "?seconds=1&every=50ms", 20, 50 * time.Millisecond, false},
		{"fractions of a second", "?seconds=0.25&every=100ms", 3, 100 * time.Millisecond, false},
		{"at least one message", "?seconds=0.01&every=1s", 1, time.Second, false},
		{"seconds must be a number", "?seconds=soon", 0, 0, true},
		{"seconds must be positive", "?seconds=0", 0, 0, true},
		{"seconds must not be NaN", "?seconds=NaN", 0, 0, true},
		{"every must be a duration", "?every=10", 0, 0, true},
		{"every must be at least 1ms", "?every=1us", 0, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, every, err := streamParams(httptest.NewRequest("GET", "/events"+tt.query, nil))
			if (err != nil) != tt.wantErr || n != tt.wantN || every != tt.wantEvery {
				t.Errorf("got %d %s %v, want %d %s (error: %v)", n, every, err, tt.wantN, tt.wantEvery, tt.wantErr)
			}
		})
	}
}

// streamServer serves demoapp's handler for slot 4001 over TCP.
func streamServer(t *testing.T) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(newHandler(config{slot: "4001"}, time.Now(), time.Now, new(sync.WaitGroup)))
	t.Cleanup(srv.Close)
	return srv
}

func TestEvents(t *testing.T) {
	srv := streamServer(t)
	resp, err := http.Get(srv.URL + "/events?seconds=0.3&every=100ms")
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	want := "id: 1\ndata: slot 4001 seq 1\n\nid: 2\ndata: slot 4001 seq 2\n\nid: 3\ndata: slot 4001 seq 3\n\nevent: end\ndata: 3\n\n"
	if string(body) != want {
		t.Errorf("body\n%q\nwant\n%q", body, want)
	}
	for k, v := range map[string]string{"Content-Type": "text/event-stream", "X-Accel-Buffering": "no", "X-Slot": "4001"} {
		if got := resp.Header.Get(k); got != v {
			t.Errorf("%s: %q, want %q", k, got, v)
		}
	}

	r := testedge.SSE(t.Context(), nil, srv.URL+"/events?seconds=0.5&every=25ms")
	if !r.Intact() || r.Messages != 20 || r.Slots[0] != "4001" {
		t.Errorf("SSE: %v; want 20 messages from slot 4001, intact", r)
	}
	if r.Duration < 500*time.Millisecond {
		t.Errorf("SSE took %s, want its 0.5s", r.Duration)
	}
}

func TestWebSocket(t *testing.T) {
	srv := streamServer(t)
	r := testedge.WebSocket(t.Context(), nil, srv.URL+"/ws?seconds=0.5&every=25ms")
	if !r.Intact() || r.Messages != 20 || r.Slots[0] != "4001" {
		t.Errorf("WebSocket: %v; want 20 messages from slot 4001, intact", r)
	}
	if r.Duration < 500*time.Millisecond {
		t.Errorf("WebSocket took %s, want its 0.5s", r.Duration)
	}
}

// TestWebSocketHandshake checks the raw bytes against RFC 6455's example
// key, so that the server does not only agree with testedge's client.
func TestWebSocketHandshake(t *testing.T) {
	srv := streamServer(t)
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(conn, "GET /ws?seconds=0.001 HTTP/1.1\r\nHost: x\r\nUpgrade: WebSocket\r\nConnection: keep-alive, Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 101 || resp.Header.Get("Sec-WebSocket-Accept") != "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" || resp.Header.Get("X-Slot") != "4001" {
		t.Fatalf("handshake answer %s %v", resp.Status, resp.Header)
	}
	rest := make([]byte, 2+len("slot 4001 seq 1")+2+len("end 1")+4)
	if _, err := io.ReadFull(br, rest); err != nil {
		t.Fatal(err)
	}
	want := "\x81\x0fslot 4001 seq 1\x81\x05end 1\x88\x02\x03\xe8"
	if string(rest) != want {
		t.Errorf("frames %q, want %q", rest, want)
	}
	// The masked close of RFC 6455's example mask; then the server hangs up.
	conn.Write([]byte{0x88, 0x82, 0x37, 0xfa, 0x21, 0x3d, 0x03 ^ 0x37, 0xe8 ^ 0xfa})
	if n, err := br.Read(make([]byte, 1)); err != io.EOF {
		t.Errorf("after the close: read %d, %v; want EOF", n, err)
	}
}

func TestWebSocketRefusals(t *testing.T) {
	srv := streamServer(t)
	good := map[string]string{"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version": "13"}
	tests := []struct {
		name   string
		change map[string]string
		want   int
	}{
		{"a plain GET", map[string]string{"Upgrade": "", "Connection": ""}, 400},
		{"no upgrade in Connection", map[string]string{"Connection": "keep-alive"}, 400},
		{"another version", map[string]string{"Sec-WebSocket-Version": "8"}, 426},
		{"a key of the wrong size", map[string]string{"Sec-WebSocket-Key": "c2hvcnQ="}, 400},
		{"no key", map[string]string{"Sec-WebSocket-Key": ""}, 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest("GET", srv.URL+"/ws", nil)
			for k, v := range good {
				req.Header.Set(k, v)
			}
			for k, v := range tt.change {
				req.Header.Del(k)
				if v != "" {
					req.Header.Set(k, v)
				}
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tt.want {
				t.Errorf("status %d, want %d", resp.StatusCode, tt.want)
			}
		})
	}
}

// runOnSocket runs demoapp on a unix socket in dir as slot 4000 until the
// returned stop is called; stop returns run's exit code.
func runOnSocket(t *testing.T, path string, args ...string) (stop func() int, stderr *syncBuffer) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	stderr = new(syncBuffer)
	code := make(chan int, 1)
	go func() { code <- run(ctx, append([]string{"-port", "4000", "-socket", path}, args...), stderr) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if c, err := net.Dial("unix", path); err == nil {
			c.Close()
			break
		}
		select {
		case c := <-code:
			cancel()
			t.Fatalf("demoapp exited %d: %s", c, stderr)
		default:
		}
		if time.Now().After(deadline) {
			cancel()
			t.Fatalf("demoapp not listening on %s after 10s: %s", path, stderr)
		}
		time.Sleep(10 * time.Millisecond)
	}
	var once sync.Once
	var c int
	stop = func() int {
		once.Do(func() { cancel(); c = <-code })
		return c
	}
	t.Cleanup(func() { stop() })
	return stop, stderr
}

// unixDial dials path whatever address it is asked for.
func unixDial(path string) testedge.Dialer {
	return func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", path)
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "4000.sock")
	// A socket left by a killed app: its file outlives its listener.
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()

	stop, stderr := runOnSocket(t, path)
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Type() != fs.ModeSocket || fi.Mode().Perm() != 0o666 {
		t.Fatalf("%s: %v %v; want a socket of mode 0666", path, fi.Mode(), err)
	}
	client := &http.Client{Transport: &http.Transport{DialContext: unixDial(path)}}
	resp, err := client.Get("http://demoapp/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "slot 4000\n" || resp.Header.Get("X-Slot") != "4000" {
		t.Errorf("GET / over the socket: %q X-Slot %q, want slot 4000", body, resp.Header.Get("X-Slot"))
	}
	client.CloseIdleConnections()
	if code := stop(); code != 0 {
		t.Errorf("exit code %d, want 0: %s", code, stderr)
	}
	if _, err := os.Lstat(path); !os.IsNotExist(err) {
		t.Errorf("%s after exit: %v, want it gone", path, err)
	}
}

func TestSocketRefusesToReplace(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file.sock")
	os.WriteFile(file, []byte("not a socket"), 0o644)
	live := filepath.Join(dir, "live.sock")
	ln, err := net.Listen("unix", live)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	for _, tt := range []struct{ path, want string }{{file, "is not a socket"}, {live, "another process listens"}} {
		var stderr strings.Builder
		if code := run(t.Context(), []string{"-port", "4000", "-socket", tt.path}, &stderr); code != 1 || !strings.Contains(stderr.String(), tt.want) {
			t.Errorf("%s: exit %d, %q; want 1 and %q", tt.path, code, stderr.String(), tt.want)
		}
		if _, err := os.Lstat(tt.path); err != nil {
			t.Errorf("%s: %v, want it left alone", tt.path, err)
		}
	}
}

// TestShutdownFinishesStreams: streams open at SIGTERM run to their end,
// the hijacked WebSocket as much as the SSE one; a stream longer than
// -shutdown-grace makes the exit 1.
func TestShutdownFinishesStreams(t *testing.T) {
	path := filepath.Join(t.TempDir(), "4000.sock")
	stop, stderr := runOnSocket(t, path)
	results := make(chan testedge.StreamResult, 2)
	go func() {
		results <- testedge.SSE(t.Context(), unixDial(path), "http://demoapp/events?seconds=0.6&every=50ms")
	}()
	go func() {
		results <- testedge.WebSocket(t.Context(), unixDial(path), "ws://demoapp/ws?seconds=0.6&every=50ms")
	}()
	time.Sleep(200 * time.Millisecond) // both streams under way
	if code := stop(); code != 0 {
		t.Errorf("exit code %d, want 0: %s", code, stderr)
	}
	for range 2 {
		if r := <-results; !r.Intact() || r.Messages != 12 {
			t.Errorf("stream open at shutdown: %v; want 12 messages, intact", r)
		}
	}

	path = filepath.Join(t.TempDir(), "4000.sock")
	stop, stderr = runOnSocket(t, path, "-shutdown-grace", "200ms")
	ctx, cancel := context.WithCancel(t.Context())
	ws := make(chan testedge.StreamResult, 1)
	go func() { ws <- testedge.WebSocket(ctx, unixDial(path), "ws://demoapp/ws?seconds=5") }()
	time.Sleep(200 * time.Millisecond)
	if code := stop(); code != 1 || !strings.Contains(stderr.String(), "websocket streams still open") {
		t.Errorf("exit code %d, want 1 for a stream longer than the grace: %s", code, stderr)
	}
	// The process would exit here and cut the stream; in this test its
	// handler runs on until the client hangs up.
	cancel()
	<-ws
}
