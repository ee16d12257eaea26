package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgeswitch/edgeswitch/internal/testedge"
	"github.com/edgeswitch/edgeswitch/nginx"
)

// Socket mode on the sandbox edge: the upstream lists a link to the live
// slot's socket, and a switch renames a new link over it, with no reload.

// nginxWorkers returns the edge's nginx master and its workers now.
func nginxWorkers(t *testing.T, e *testedge.Edge) []int {
	t.Helper()
	b, err := os.ReadFile(e.PIDFile)
	if err != nil {
		t.Fatal(err)
	}
	master, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	workers, err := nginx.Procs{Root: "/proc"}.Children(master)
	if err != nil {
		t.Fatal(err)
	}
	return append([]int{master}, workers...)
}

// TestSocketSwitchWaitsForARequestInFlight: a request that takes 2 s,
// under way when the link moves, completes on the old slot: the old slot
// stops only once nginx holds no connection to it.
func TestSocketSwitchWaitsForARequestInFlight(t *testing.T) {
	e := testedge.New(t, testedge.Options{Socket: true})
	type answer struct {
		status int
		body   string
		err    error
	}
	done := make(chan answer, 1)
	go func() {
		resp, err := http.Get(e.URL("/?sleep=2s"))
		if err != nil {
			done <- answer{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		done <- answer{resp.StatusCode, string(b), err}
	}()
	// The request is at the old slot once nginx holds a connection to its
	// socket: socket mode keeps no idle upstream connection.
	old := "unix:" + strings.ReplaceAll(e.SocketPattern, "{port}", strconv.Itoa(e.Ports[0]))
	testedge.WaitFor(t, "nginx's connection to "+old, func() bool {
		n, err := nginx.Conns("/proc", old)
		return err == nil && n > 0
	})
	r := edgeswitch(t, e, "switch")
	if r.code != 0 {
		t.Fatalf("switch: exit %d\n%s", r.code, r.stderr)
	}
	a := <-done
	if a.err != nil || a.status != http.StatusOK || !strings.Contains(a.body, strconv.Itoa(e.Ports[0])) {
		t.Errorf("the request in flight got %d %q (%v), want 200 from slot %d", a.status, a.body, a.err, e.Ports[0])
	}
	if !strings.Contains(r.stderr, "no connection open to") || strings.Contains(r.stderr, "warning") {
		t.Errorf("the drain did not wait for the request quietly:\n%s", r.stderr)
	}
}

// TestStreamsSurviveASwitch: an SSE stream and a WebSocket of 3 s, open
// through nginx when the switch runs, arrive whole from the old slot, in
// both modes: the old slot stops only after they end.
func TestStreamsSurviveASwitch(t *testing.T) {
	for _, mode := range []string{"reload", "socket"} {
		for _, kind := range []string{"sse", "websocket"} {
			t.Run(mode+"/"+kind, func(t *testing.T) {
				e := testedge.New(t, testedge.Options{Socket: mode == "socket"})
				res := openStream(t, e, kind, 3*time.Second)
				r := edgeswitch(t, e, "switch")
				if r.code != 0 {
					t.Fatalf("switch: exit %d\n%s", r.code, r.stderr)
				}
				got := <-res
				t.Logf("stream: %s", got)
				if !got.Intact() || !slices.Equal(got.Slots, []string{strconv.Itoa(e.Ports[0])}) {
					t.Errorf("the stream across the switch arrived as %s; want it whole from slot %d", got, e.Ports[0])
				}
				if st := unitState(t, e, e.Ports[0]); st != "inactive" {
					t.Errorf("old slot %s after the switch", st)
				}
			})
		}
	}
}

// TestDrainTimeoutSaysWhatItCuts: a 10 s stream outlives --drain-timeout
// 1s; the drain line says a connection is still open to the old slot and
// that stopping it cuts it, and the switch goes on.
func TestDrainTimeoutSaysWhatItCuts(t *testing.T) {
	for _, mode := range []string{"reload", "socket"} {
		t.Run(mode, func(t *testing.T) {
			e := testedge.New(t, testedge.Options{Socket: mode == "socket"})
			// An app that does not wait for its streams when stopped.
			setAppArgs(t, e, "-shutdown-grace=100ms")
			must(t)(e.Systemctl(t.Context(), "restart", e.SlotUnit(e.Ports[0]))) // the live slot too
			for slotOf(t, e) != strconv.Itoa(e.Ports[0]) {
				time.Sleep(10 * time.Millisecond)
			}
			res := openStream(t, e, "sse", 10*time.Second)
			r := edgeswitch(t, e, "switch", "--drain-timeout", "1s")
			if r.code != 0 {
				t.Fatalf("switch: exit %d\n%s", r.code, r.stderr)
			}
			t.Logf("switch:\n%s", r.stderr)
			for _, part := range []string{"1 connection still open to", "cuts it"} {
				if !strings.Contains(r.stderr, part) {
					t.Errorf("the drain's lines lack %q", part)
				}
			}
			if got := <-res; got.Intact() {
				t.Errorf("the stream arrived whole (%s), yet the slot serving it stopped", got)
			}
		})
	}
}

// openStream opens a demoapp stream of kind ("sse" or "websocket") through
// the edge's nginx for d, and returns where its result will arrive once a
// slot has answered it: nginx sends nothing before the slot answers, so the
// stream's first bytes show it open at the slot.
func openStream(t *testing.T, e *testedge.Edge, kind string, d time.Duration) <-chan testedge.StreamResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), d+30*time.Second)
	res, answered := make(chan testedge.StreamResult, 1), make(chan struct{})
	var once sync.Once
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{Timeout: 5 * time.Second}).DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return firstRead{c, func() { once.Do(func() { close(answered) }) }}, nil
	}
	go func() {
		defer cancel()
		query := fmt.Sprintf("?seconds=%g", d.Seconds())
		if kind == "sse" {
			res <- testedge.SSE(ctx, dial, e.URL("/events"+query))
		} else {
			res <- testedge.WebSocket(ctx, dial, e.URL("/ws"+query))
		}
	}()
	select {
	case <-answered:
	case r := <-res:
		t.Fatalf("the %s stream ended before a slot answered it: %s", kind, r)
	}
	return res
}

// firstRead is a connection that calls first at each read that returns
// data.
type firstRead struct {
	net.Conn
	first func()
}

func (c firstRead) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if n > 0 {
		c.first()
	}
	return n, err
}

// TestConvertingToSocketMode follows README's way from a reload-mode host
// to socket mode under GET load: check names the bounds the upstream's
// keepalive needs; the first switch shows the diff, rewrites the upstream
// to the link and reloads nginx once; the next moves only the link.
func TestConvertingToSocketMode(t *testing.T) {
	e := testedge.New(t, testedge.Options{})
	load := startLoad(t, e, 32, http.MethodGet, "/")
	must(t)("", e.UseSockets(t.Context()))

	r := edgeswitch(t, e, "check")
	if r.code != 2 || !strings.Contains(r.stdout+r.stderr, "upstream app has keepalive but no keepalive_time") || !strings.Contains(r.stdout+r.stderr, `add "keepalive_time 10s;"`) {
		t.Fatalf("check with an unbounded keepalive: exit %d, want 2 naming the bounds to add\n%s%s", r.code, r.stdout, r.stderr)
	}
	conf := must(t)(readFile(e.UpstreamFile))
	writeConf(t, e, "app.conf", testedge.BoundKeepalive(conf))
	workers := nginxWorkers(t, e)[1:]
	must(t)(e.Systemctl(t.Context(), "reload", e.NginxUnit))
	testedge.WaitFor(t, "the reload's old workers gone", func() bool {
		return !slices.ContainsFunc(workers, nginx.Procs{Root: "/proc"}.Alive)
	})

	r = edgeswitch(t, e, "switch")
	if r.code != 0 {
		t.Fatalf("converting switch: exit %d\n%s", r.code, r.stderr)
	}
	for _, part := range []string{"+    server unix:" + e.SocketLink + ";", "reload ", "+" + strings.ReplaceAll(e.SocketPattern, "{port}", strconv.Itoa(e.Ports[1]))} {
		if !strings.Contains(r.stdout+r.stderr, part) {
			t.Errorf("the converting switch's output lacks %q:\n%s%s", part, r.stdout, r.stderr)
		}
	}
	procs := nginxWorkers(t, e)
	r = edgeswitch(t, e, "switch")
	if r.code != 0 || strings.Contains(r.stderr, "reload ") {
		t.Fatalf("second switch: exit %d, want 0 with no reload\n%s", r.code, r.stderr)
	}
	if got := nginxWorkers(t, e); !slices.Equal(got, procs) {
		t.Errorf("nginx's workers went from %v to %v on a link switch", procs, got)
	}
	if got := slotOf(t, e); got != strconv.Itoa(e.Ports[0]) {
		t.Errorf("nginx answers from slot %s, want %d", got, e.Ports[0])
	}
	stats := load.Stop()
	t.Logf("load: %s", stats)
	if stats.Failed != 0 {
		t.Errorf("want 0 failed GETs across the conversion, got %s", stats)
	}
}

func readFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	return string(b), err
}

// TestConversionKilledBeforeItsReload: the first switch into socket mode
// is killed after it wrote the upstream (listing the link) and before
// nginx reloaded it; nginx still sends the traffic to the old slot's port.
// The rerun reloads nginx and only then stops that slot: no GET fails.
func TestConversionKilledBeforeItsReload(t *testing.T) {
	e := testedge.New(t, testedge.Options{})
	load := startLoad(t, e, 32, http.MethodGet, "/?sleep=50ms")
	must(t)("", e.UseSockets(t.Context()))
	conf := must(t)(readFile(e.UpstreamFile))
	writeConf(t, e, "app.conf", testedge.BoundKeepalive(conf))
	must(t)(e.Systemctl(t.Context(), "reload", e.NginxUnit))

	tools := t.TempDir()
	must(t)("", os.WriteFile(filepath.Join(tools, "hold-t2"), nil, 0o644))
	sw := startSwitch(t, e, "--nginx-bin", slowNginx(t, tools))
	sw.waitFile(t, filepath.Join(tools, "hold-t2.held")) // nginx -t held by the wrapper
	sw.cmd.Process.Kill()
	sw.wait(t)
	if conf := must(t)(readFile(e.UpstreamFile)); !strings.Contains(conf, "server unix:"+e.SocketLink+";") {
		t.Fatalf("the killed switch did not write the link into the upstream:\n%s", conf)
	}

	r := edgeswitch(t, e, "switch")
	if r.code != 0 {
		t.Fatalf("switch again: exit %d\n%s", r.code, r.stderr)
	}
	if !strings.Contains(r.stderr, "reload ") {
		t.Errorf("the rerun did not reload nginx, which still ran the config from before the write:\n%s", r.stderr)
	}
	if got := slotOf(t, e); got != strconv.Itoa(e.Ports[1]) {
		t.Errorf("nginx answers from slot %s, want %d", got, e.Ports[1])
	}
	if st := unitState(t, e, e.Ports[0]); st != "inactive" {
		t.Errorf("the old slot is %s, want inactive", st)
	}
	if stats := load.Stop(); stats.Failed != 0 {
		t.Errorf("want 0 failed GETs, got %s", stats)
	} else {
		t.Logf("load: %s", stats)
	}
}

// TestSocketBakeAndRollback: in socket mode a bake that finds the new slot
// sick points the link back (the old slot never stopped), and a rollback
// after --keep-old is a link move back to the slot still running.
func TestSocketBakeAndRollback(t *testing.T) {
	e := testedge.New(t, testedge.Options{Socket: true})
	load := startLoad(t, e, 32, http.MethodPost, "/")
	sick := filepath.Join(t.TempDir(), "sick")
	setAppArgs(t, e, "-sick-file", sick)
	sw := startSwitch(t, e, "--bake", "4s")
	sw.waitStep(t, "drain") // the bake starts now
	writeFile(t, sick, "")  // and the new slot turns sick
	var exit *exec.ExitError
	if err := sw.wait(t); !errors.As(err, &exit) || exit.ExitCode() != 1 || !strings.Contains(sw.stderr(), "rolled back") {
		t.Fatalf("a bake of a build that turns sick: %v, want exit 1, rolled back\n%s", err, sw.stderr())
	}
	if got := slotOf(t, e); got != strconv.Itoa(e.Ports[0]) {
		t.Errorf("after the rolled-back bake nginx answers from slot %s, want %d", got, e.Ports[0])
	}
	if st := unitState(t, e, e.Ports[1]); st != "inactive" {
		t.Errorf("the sick slot is %s after the rollback, want inactive", st)
	}

	setAppArgs(t, e)
	if r := edgeswitch(t, e, "switch", "--keep-old"); r.code != 0 {
		t.Fatalf("switch --keep-old: exit %d\n%s", r.code, r.stderr)
	}
	r := edgeswitch(t, e, "rollback")
	if r.code != 0 || !strings.Contains(r.stderr, "already running") {
		t.Fatalf("rollback to the slot kept running: exit %d\n%s", r.code, r.stderr)
	}
	if got := slotOf(t, e); got != strconv.Itoa(e.Ports[0]) {
		t.Errorf("after the rollback nginx answers from slot %s, want %d", got, e.Ports[0])
	}
	if stats := load.Stop(); stats.Failed != 0 {
		t.Errorf("want 0 failed POSTs through the bake, its rollback and a rollback, got %s", stats)
	} else {
		t.Logf("load: %s", stats)
	}
}

// TestSocketKeepaliveWithoutBoundsIsRefused: a keepalive that nginx would
// not let go of soon after the link moves, or not within half of
// drain-timeout, refuses the switch before anything starts: exit 2 naming
// the line and what to set, nginx's files and the link as they were, the
// other slot not started.
func TestSocketKeepaliveWithoutBoundsIsRefused(t *testing.T) {
	e := testedge.New(t, testedge.Options{Socket: true})
	conf := must(t)(readFile(e.UpstreamFile))
	for _, tt := range []struct {
		name, conf string
		args       []string
		says       []string
	}{
		{"no keepalive_time", strings.Replace(conf, "    keepalive_time 500ms;\n", "", 1), nil,
			[]string{"app.conf:3: upstream app has keepalive but no keepalive_time", `add "keepalive_time 10s;" and "keepalive_timeout 10s;"`}},
		{"bounds over half of drain-timeout", conf, []string{"--drain-timeout", "800ms"},
			[]string{"app.conf:4: keepalive_time 500ms is longer than half of drain-timeout 800ms", "set keepalive_time to at most 400ms, or raise drain-timeout"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			writeConf(t, e, "app.conf", tt.conf)
			before := hashTree(t, filepath.Dir(e.NginxConf))
			link := must(t)(os.Readlink(e.SocketLink))
			r := edgeswitch(t, e, append([]string{"switch"}, tt.args...)...)
			for _, part := range tt.says {
				if r.code != 2 || !strings.Contains(r.stderr, part) {
					t.Errorf("switch: exit %d, want 2 saying %q:\n%s", r.code, part, r.stderr)
				}
			}
			assertUnchanged(t, e, before)
			if now := must(t)(os.Readlink(e.SocketLink)); now != link {
				t.Errorf("the link moved from %s to %s", link, now)
			}
			if st := unitState(t, e, e.Ports[1]); st != "inactive" {
				t.Errorf("the other slot is %s, want inactive: nothing may start", st)
			}
		})
	}
}
