// Command demoapp is the small HTTP app that the sandbox edge
// (internal/testedge) runs in its slots. Its flags make it misbehave in the
// ways a switch has to survive: slow boot, late readiness, never ready, crash.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stderr))
}

type config struct {
	addr          string
	slot          string // the port, sent as X-Slot
	bootDelay     time.Duration
	readyAfter    time.Duration
	neverReady    bool
	crash         bool
	shutdownGrace time.Duration
	bodyFile      string // -body-file, {port} not yet replaced
	body          []byte // what GET answers instead of "slot N", when set
}

func parseFlags(args []string, stderr io.Writer) (config, error) {
	var c config
	fs := flag.NewFlagSet("demoapp", flag.ContinueOnError)
	fs.SetOutput(stderr)
	port := fs.Int("port", 0, "listen on 127.0.0.1:`PORT` (required unless -addr)")
	fs.StringVar(&c.addr, "addr", "", "listen on this host:port instead of 127.0.0.1:PORT")
	fs.DurationVar(&c.bootDelay, "boot-delay", 0, "sleep this long before listening (slow boot)")
	fs.DurationVar(&c.readyAfter, "ready-after", 0, "listen at once, but /health answers 503 until this long after start")
	fs.BoolVar(&c.neverReady, "never-ready", false, "/health always answers 503")
	fs.BoolVar(&c.crash, "crash", false, "exit 1 at start")
	fs.DurationVar(&c.shutdownGrace, "shutdown-grace", 30*time.Second, "on SIGTERM, wait this long for in-flight requests")
	fs.StringVar(&c.bodyFile, "body-file", "", "answer GET with this file's content, read at start ({port} in `PATH` becomes the port), as a build installed into the slot")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	if c.addr == "" {
		if *port <= 0 || *port > 65535 {
			return c, errors.New("-port is required (1-65535), or give -addr")
		}
		c.addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(*port))
	}
	_, p, err := net.SplitHostPort(c.addr)
	if err != nil {
		return c, fmt.Errorf("-addr: %w", err)
	}
	c.slot = p
	return c, nil
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
	ln, err := net.Listen("tcp", c.addr)
	if err != nil {
		fmt.Fprintln(stderr, "demoapp:", err)
		return 1
	}
	srv := &http.Server{Handler: newHandler(c, start, time.Now), ReadHeaderTimeout: 10 * time.Second}
	fmt.Fprintf(stderr, "demoapp: slot %s listening on %s; %s\n", c.slot, ln.Addr(), bootTimes(c, start, time.Now()))

	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	select {
	case err := <-served:
		fmt.Fprintln(stderr, "demoapp:", err)
		return 1
	case <-ctx.Done():
	}
	fmt.Fprintf(stderr, "demoapp: slot %s shutting down, finishing in-flight requests\n", c.slot)
	sctx, cancel := context.WithTimeout(context.Background(), c.shutdownGrace)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		fmt.Fprintf(stderr, "demoapp: shutdown after %s: %v\n", c.shutdownGrace, err)
		return 1
	}
	fmt.Fprintf(stderr, "demoapp: slot %s stopped\n", c.slot)
	return 0
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
func newHandler(c config, start time.Time, now func() time.Time) http.Handler {
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
			fmt.Fprintln(w, "ok")
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
