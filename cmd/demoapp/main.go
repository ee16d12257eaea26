// Command demoapp is the small HTTP app that the sandbox edge
// (internal/testedge) runs in its slots. Its flags make it misbehave in the
// ways a switch has to survive: slow boot, late readiness, never ready, crash,
// a build that turns sick after it passed its health check, and one that
// passes it but fails its users. It also serves the long-lived connections a
// switch must not cut: Server-Sent Events on /events and a WebSocket on /ws,
// over TCP or a unix socket (-socket, for edgeswitch's socket mode).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stderr))
}

type config struct {
	addr          string // TCP host:port; empty with socket
	socket        string // -socket: unix socket path instead of addr
	slot          string // the port, sent as X-Slot
	bootDelay     time.Duration
	readyAfter    time.Duration
	neverReady    bool
	crash         bool
	shutdownGrace time.Duration
	sickFile      string // -sick-file: /health answers 503 while it exists
	failRoot      bool   // -fail-root: / answers 500, /health stays 200
	bodyFile      string // -body-file, {port} not yet replaced
	body          []byte // what GET answers instead of "slot N", when set
}

func parseFlags(args []string, stderr io.Writer) (config, error) {
	var c config
	fs := flag.NewFlagSet("demoapp", flag.ContinueOnError)
	fs.SetOutput(stderr)
	port := fs.Int("port", 0, "listen on 127.0.0.1:`PORT` (required unless -addr)")
	fs.StringVar(&c.addr, "addr", "", "listen on this host:port instead of 127.0.0.1:PORT")
	fs.StringVar(&c.socket, "socket", "", "listen on the unix socket `PATH` instead of TCP; -port still names the slot. "+
		"A stale socket at PATH is replaced (anything else there is an error), the socket is made 0666 "+
		"(nginx may run as another user) and it is removed at exit")
	fs.DurationVar(&c.bootDelay, "boot-delay", 0, "sleep this long before listening (slow boot)")
	fs.DurationVar(&c.readyAfter, "ready-after", 0, "listen at once, but /health answers 503 until this long after start")
	fs.BoolVar(&c.neverReady, "never-ready", false, "/health always answers 503")
	fs.BoolVar(&c.crash, "crash", false, "exit 1 at start")
	fs.DurationVar(&c.shutdownGrace, "shutdown-grace", 30*time.Second, "on SIGTERM, wait this long for in-flight requests")
	fs.StringVar(&c.sickFile, "sick-file", "", "/health answers 503 while `PATH` exists: a build that turns bad once live, or for a moment, when a test says")
	fs.BoolVar(&c.failRoot, "fail-root", false, "/ answers 500 while /health answers 200 (a bad build that passes its health check)")
	fs.StringVar(&c.bodyFile, "body-file", "", "answer GET with this file's content, read at start ({port} in `PATH` becomes the port), as a build installed into the slot")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	if c.socket != "" && c.addr != "" {
		return c, errors.New("-socket and -addr: give one")
	}
	if c.addr == "" {
		if *port <= 0 || *port > 65535 {
			return c, errors.New("-port is required (1-65535), or give -addr")
		}
		c.slot = strconv.Itoa(*port)
		if c.socket != "" {
			return c, nil
		}
		c.addr = net.JoinHostPort("127.0.0.1", c.slot)
	}
	_, p, err := net.SplitHostPort(c.addr)
	if err != nil {
		return c, fmt.Errorf("-addr: %w", err)
	}
	c.slot = p
	return c, nil
}

// sick says whether /health answers 503 because of -sick-file.
func (c config) sick() bool {
	if c.sickFile == "" {
		return false
	}
	_, err := os.Stat(c.sickFile)
	return err == nil
}

func run(ctx context.Context, args []string, stderr io.Writer) int {
	c, err := parseFlags(args, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(stderr, "demoapp:", err)
		return 2
	}
	if c.crash {
		fmt.Fprintln(stderr, "demoapp: crashing on purpose (-crash)")
		return 1
	}
	if c.bodyFile != "" {
		if c.body, err = os.ReadFile(strings.ReplaceAll(c.bodyFile, "{port}", c.slot)); err != nil {
			fmt.Fprintln(stderr, "demoapp: -body-file:", err)
			return 1
		}
	}
	start := time.Now()
	select {
	case <-time.After(c.bootDelay):
	case <-ctx.Done():
		return 0
	}
	ln, err := listen(c)
	if err != nil {
		fmt.Fprintln(stderr, "demoapp:", err)
		return 1
	}
	var hijacked sync.WaitGroup // WebSocket streams, which srv.Shutdown does not wait for
	srv := &http.Server{Handler: newHandler(c, start, time.Now, &hijacked), ReadHeaderTimeout: 10 * time.Second}
	fmt.Fprintf(stderr, "demoapp: slot %s listening on %s; %s\n", c.slot, ln.Addr(), bootTimes(c, start, time.Now()))

	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	select {
	case err := <-served:
		fmt.Fprintln(stderr, "demoapp:", err)
		return 1
	case <-ctx.Done():
	}
	fmt.Fprintf(stderr, "demoapp: slot %s shutting down, finishing in-flight requests and streams\n", c.slot)
	sctx, cancel := context.WithTimeout(context.Background(), c.shutdownGrace)
	defer cancel()
	err = srv.Shutdown(sctx)
	if err == nil {
		err = waitGroup(sctx, &hijacked)
	}
	if err != nil {
		fmt.Fprintf(stderr, "demoapp: shutdown after %s: %v\n", c.shutdownGrace, err)
		return 1
	}
	fmt.Fprintf(stderr, "demoapp: slot %s stopped\n", c.slot)
	return 0
}

// listen listens on c.socket, or on c.addr over TCP.
func listen(c config) (net.Listener, error) {
	if c.socket == "" {
		return net.Listen("tcp", c.addr)
	}
	if err := removeStaleSocket(c.socket); err != nil {
		return nil, err
	}
	// A *net.UnixListener removes its socket file when closed.
	ln, err := net.Listen("unix", c.socket)
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(c.socket, 0o666); err != nil {
		ln.Close()
		return nil, err
	}
	return ln, nil
}

// removeStaleSocket removes the socket a killed demoapp left at path.
// Anything but a socket, or a socket someone listens on, is left alone.
func removeStaleSocket(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi.Mode().Type() != fs.ModeSocket {
		return fmt.Errorf("%s exists and is not a socket; not replacing it", path)
	}
	if conn, err := net.DialTimeout("unix", path, time.Second); err == nil {
		conn.Close()
		return fmt.Errorf("%s: another process listens on it", path)
	}
	return os.Remove(path)
}

// waitGroup waits for wg until ctx ends.
func waitGroup(ctx context.Context, wg *sync.WaitGroup) error {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("websocket streams still open: %w", ctx.Err())
	}
}

// bootTimes says when the app started and from when /health answers 200,
// so benchmarks can take the app's own readiness time out of a switch's.
func bootTimes(c config, start, listening time.Time) string {
	healthy := "never healthy"
	if !c.neverReady {
		at := start.Add(c.readyAfter)
		if listening.After(at) {
			at = listening
		}
		healthy = "healthy from " + at.UTC().Format(time.RFC3339Nano)
	}
	return fmt.Sprintf("started %s, %s", start.UTC().Format(time.RFC3339Nano), healthy)
}

// newHandler serves every path; now is the clock used for -ready-after.
// Each WebSocket stream is counted in hijacked while it runs.
func newHandler(c config, start time.Time, now func() time.Time, hijacked *sync.WaitGroup) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Slot", c.slot)
		if s := r.URL.Query().Get("sleep"); s != "" {
			d, err := time.ParseDuration(s)
			if err != nil || d < 0 {
				http.Error(w, "bad sleep duration", http.StatusBadRequest)
				return
			}
			select {
			case <-time.After(d):
			case <-r.Context().Done():
				return
			}
		}
		switch {
		case r.URL.Path == "/health":
			if c.neverReady || now().Sub(start) < c.readyAfter {
				http.Error(w, "not ready", http.StatusServiceUnavailable)
				return
			}
			if c.sick() {
				http.Error(w, "sick", http.StatusServiceUnavailable)
				return
			}
			fmt.Fprintln(w, "ok")
		case r.URL.Path == "/events" || r.URL.Path == "/ws":
			n, every, err := streamParams(r)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			if r.URL.Path == "/events" {
				serveEvents(w, r, c.slot, n, every)
				return
			}
			serveWebSocket(w, r, c.slot, n, every, hijacked)
		case c.failRoot && r.URL.Path == "/":
			http.Error(w, "failing on purpose (-fail-root)", http.StatusInternalServerError)
		case r.Method == http.MethodPost:
			n, err := io.Copy(io.Discard, r.Body)
			if err != nil {
				http.Error(w, "reading body: "+err.Error(), http.StatusBadRequest)
				return
			}
			fmt.Fprintln(w, n)
		case c.body != nil:
			w.Write(c.body)
		default:
			fmt.Fprintf(w, "slot %s\n", c.slot)
		}
	})
}
