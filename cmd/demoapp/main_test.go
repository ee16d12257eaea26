package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

func TestHandler(t *testing.T) {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(d time.Duration) func() time.Time { return func() time.Time { return start.Add(d) } }
	dir := t.TempDir()
	sick := filepath.Join(dir, "sick")
	if err := os.WriteFile(sick, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		cfg        config
		now        func() time.Time
		method     string
		target     string
		body       string
		wantStatus int
		wantBody   string
	}{
		{"root names the slot", config{}, at(0), "GET", "/", "", 200, "slot 4001\n"},
		{"any other path names the slot", config{}, at(0), "GET", "/some/page", "", 200, "slot 4001\n"},
		{"health is ok by default", config{}, at(0), "GET", "/health", "", 200, "ok\n"},
		{"health is 503 before ready-after", config{readyAfter: time.Second}, at(999 * time.Millisecond), "GET", "/health", "", 503, "not ready\n"},
		{"health is ok once ready-after passed", config{readyAfter: time.Second}, at(time.Second), "GET", "/health", "", 200, "ok\n"},
		{"root answers before ready-after", config{readyAfter: time.Second}, at(0), "GET", "/", "", 200, "slot 4001\n"},
		{"health is never ok with never-ready", config{neverReady: true}, at(time.Hour), "GET", "/health", "", 503, "not ready\n"},
		{"post answers the body length", config{}, at(0), "POST", "/submit", "hello", 200, "5\n"},
		{"sleep delays the answer", config{}, at(0), "GET", "/?sleep=20ms", "", 200, "slot 4001\n"},
		{"a bad sleep is a bad request", config{}, at(0), "GET", "/?sleep=soon", "", 400, "bad sleep duration\n"},
		{"a body file is what GET answers", config{body: []byte("build 2\n")}, at(0), "GET", "/", "", 200, "build 2\n"},
		{"root is 500 with fail-root", config{failRoot: true}, at(0), "GET", "/", "", 500, "failing on purpose (-fail-root)\n"},
		{"health stays ok with fail-root", config{failRoot: true}, at(0), "GET", "/health", "", 200, "ok\n"},
		{"other paths answer with fail-root", config{failRoot: true}, at(0), "GET", "/some/page", "", 200, "slot 4001\n"},
		{"health stays ok with a body file", config{body: []byte("build 2\n")}, at(0), "GET", "/health", "", 200, "ok\n"},
		{"health is ok while the sick file is missing", config{sickFile: filepath.Join(dir, "missing")}, at(0), "GET", "/health", "", 200, "ok\n"},
		{"health is 503 while the sick file exists", config{sickFile: sick}, at(0), "GET", "/health", "", 503, "sick\n"},
		{"root still answers when sick", config{sickFile: sick}, at(0), "GET", "/", "", 200, "slot 4001\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.cfg.slot = "4001"
			h := newHandler(tt.cfg, start, tt.now, new(sync.WaitGroup))
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(tt.method, tt.target, strings.NewReader(tt.body)))
			if rec.Code != tt.wantStatus || rec.Body.String() != tt.wantBody {
				t.Errorf("got %d %q, want %d %q", rec.Code, rec.Body.String(), tt.wantStatus, tt.wantBody)
			}
			if got := rec.Header().Get("X-Slot"); got != "4001" {
				t.Errorf("X-Slot = %q, want 4001", got)
			}
		})
	}
}

func TestFlags(t *testing.T) {
	tests := []struct {
		name     string
		args     []string
		wantAddr string
		wantSlot string
		wantErr  string
	}{
		{"port listens on loopback", []string{"-port", "4000"}, "127.0.0.1:4000", "4000", ""},
		{"addr replaces port", []string{"-addr", "[::1]:4002"}, "[::1]:4002", "4002", ""},
		{"port is required", nil, "", "", "-port is required"},
		{"stray arguments are refused", []string{"-port", "4000", "extra"}, "", "", "unexpected arguments"},
		{"socket replaces TCP, port names the slot", []string{"-port", "4000", "-socket", "/run/app/4000.sock"}, "", "4000", ""},
		{"socket needs port", []string{"-socket", "/run/app/4000.sock"}, "", "", "-port is required"},
		{"socket and addr are refused", []string{"-addr", "127.0.0.1:4000", "-socket", "/run/app/4000.sock"}, "", "", "give one"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := parseFlags(tt.args, io.Discard)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || c.addr != tt.wantAddr || c.slot != tt.wantSlot {
				t.Fatalf("got %q %q %v, want %q %q", c.addr, c.slot, err, tt.wantAddr, tt.wantSlot)
			}
		})
	}
}

func TestFailRootFlag(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want bool
	}{{nil, false}, {[]string{"-fail-root"}, true}} {
		c, err := parseFlags(append([]string{"-port", "4000"}, tt.args...), io.Discard)
		if err != nil || c.failRoot != tt.want {
			t.Errorf("%q: failRoot %v, %v; want %v", tt.args, c.failRoot, err, tt.want)
		}
	}
}

func TestRunCrashExitsOne(t *testing.T) {
	var stderr strings.Builder
	if code := run(t.Context(), []string{"-port", "4000", "-crash"}, &stderr); code != 1 {
		t.Errorf("exit code %d, want 1", code)
	}
	if !strings.Contains(stderr.String(), "crash") {
		t.Errorf("stderr %q does not say it crashed", stderr.String())
	}
}

func TestRunWithoutItsBodyFileExitsOne(t *testing.T) {
	var stderr strings.Builder
	missing := filepath.Join(t.TempDir(), "{port}", "build.txt")
	if code := run(t.Context(), []string{"-port", "4000", "-body-file", missing}, &stderr); code != 1 {
		t.Errorf("exit code %d, want 1", code)
	}
	if want := strings.ReplaceAll(missing, "{port}", "4000"); !strings.Contains(stderr.String(), want) {
		t.Errorf("stderr %q does not name %s", stderr.String(), want)
	}
}

func TestRunStopsDuringBootDelay(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if code := run(ctx, []string{"-port", "4000", "-boot-delay", "1h"}, io.Discard); code != 0 {
		t.Errorf("exit code %d, want 0", code)
	}
}

// TestGracefulShutdownOnOS runs the real binary: a request in flight when
// SIGTERM arrives must still get its answer, and the process must exit 0.
func TestGracefulShutdownOnOS(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := filepath.Join(t.TempDir(), "demoapp")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	port := freePort(t)
	cmd := exec.Command(bin, "-port", strconv.Itoa(port))
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() { _ = cmd.Process.Kill() })

	base := "http://127.0.0.1:" + strconv.Itoa(port)
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get(base + "/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("demoapp not healthy after 10s: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}

	type answer struct {
		status int
		body   string
		err    error
	}
	answered := make(chan answer, 1)
	go func() {
		resp, err := http.Get(base + "/?sleep=300ms")
		if err != nil {
			answered <- answer{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		answered <- answer{resp.StatusCode, string(b), err}
	}()
	time.Sleep(100 * time.Millisecond) // let the request reach the handler
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}

	a := <-answered
	want := "slot " + strconv.Itoa(port) + "\n"
	if a.err != nil || a.status != 200 || a.body != want {
		t.Errorf("in-flight request: got %d %q %v, want 200 %q", a.status, a.body, a.err, want)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("demoapp exit: %v, want exit 0", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("demoapp still running 5s after SIGTERM")
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func TestBootTimes(t *testing.T) {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name      string
		cfg       config
		listening time.Duration
		want      string
	}{
		{"healthy once listening", config{}, 5 * time.Millisecond,
			"started 2026-01-01T00:00:00Z, healthy from 2026-01-01T00:00:00.005Z"},
		{"ready-after later than listening", config{readyAfter: 250 * time.Millisecond}, 5 * time.Millisecond,
			"started 2026-01-01T00:00:00Z, healthy from 2026-01-01T00:00:00.25Z"},
		{"a slow boot outlasts ready-after", config{readyAfter: time.Millisecond, bootDelay: time.Second}, time.Second,
			"started 2026-01-01T00:00:00Z, healthy from 2026-01-01T00:00:01Z"},
		{"never ready", config{neverReady: true}, 0, "started 2026-01-01T00:00:00Z, never healthy"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := bootTimes(tt.cfg, start, start.Add(tt.listening)); got != tt.want {
				t.Errorf("got %q\nwant %q", got, tt.want)
			}
		})
	}
}

// TestListenOnASocket: the slot's socket is made 0666 (nginx's workers
// run as another user), a stale one a killed run left is replaced, and a
// file that is not a socket is left alone.
func TestListenOnASocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "4001.sock")
	ln, err := listen(config{socket: path})
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o666 {
		t.Errorf("socket %v, %v; want mode 0666", fi, err)
	}
	if _, err := listen(config{socket: path}); err == nil || !strings.Contains(err.Error(), "another process listens on it") {
		t.Errorf("a second listen on a live socket: %v", err)
	}
	// A killed run leaves its socket file with nobody on it.
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()
	ln, err = listen(config{socket: path})
	if err != nil {
		t.Fatalf("listen over a stale socket: %v", err)
	}
	ln.Close()
	file := filepath.Join(t.TempDir(), "not-a-socket")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := listen(config{socket: file}); err == nil || !strings.Contains(err.Error(), "is not a socket") {
		t.Errorf("listen on a regular file: %v", err)
	}
}

// TestRunRefusesBadFlags: -h is no error; an unknown flag, a stray
// argument, an address without a port and a socket it cannot listen on
// exit 2 or 1 with the reason.
func TestRunRefusesBadFlags(t *testing.T) {
	for _, tt := range []struct {
		args []string
		code int
		says string
	}{
		{[]string{"-h"}, 0, ""},
		{[]string{"-no-such-flag"}, 2, "no-such-flag"},
		{[]string{"-port", "4000", "extra"}, 2, `unexpected arguments: ["extra"]`},
		{[]string{"-addr", "localhost"}, 2, "-addr:"},
		{[]string{"-port", "4000", "-socket", filepath.Join(t.TempDir(), "missing", "4000.sock")}, 1, "no such file or directory"},
	} {
		var stderr strings.Builder
		if code := run(t.Context(), tt.args, &stderr); code != tt.code || !strings.Contains(stderr.String(), tt.says) {
			t.Errorf("demoapp %q: exit %d, want %d saying %q:\n%s", tt.args, code, tt.code, tt.says, stderr.String())
		}
	}
}
