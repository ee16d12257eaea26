package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
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
)

// The end-to-end tests run the real edgeswitch binary against a real nginx,
// a real systemd user manager over a real D-Bus and real app processes
// (internal/testedge), while a load generator drives traffic through nginx.

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

// binary builds edgeswitch once per test process.
func binary(t testing.TB) string {
	t.Helper()
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "edgeswitch-e2e-")
		if err != nil {
			binErr = err
			return
		}
		binPath = filepath.Join(dir, "edgeswitch")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			binErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

// result is one run of the binary.
type result struct {
	code           int
	stdout, stderr string
}

// edgeswitch runs the binary with the settings that point it at the edge.
func edgeswitch(t testing.TB, e *testedge.Edge, args ...string) result {
	t.Helper()
	return runWith(t, e.Env, append(args, edgeFlags(e)...)...)
}

// runWith runs the binary with args and env added to the environment.
func runWith(t testing.TB, env []string, args ...string) result {
	t.Helper()
	cmd := exec.Command(binary(t), args...)
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := result{stdout: stdout.String(), stderr: stderr.String()}
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		r.code = exit.ExitCode()
	case err != nil:
		t.Fatal(err)
	}
	return r
}

// edgeFlags are the settings that point edgeswitch at the edge; extra
// flags come last, so they win.
func edgeFlags(e *testedge.Edge, extra ...string) []string {
	if e.SocketPattern != "" {
		extra = append([]string{"--mode", "socket", "--socket", e.SocketPattern, "--socket-link", e.SocketLink}, extra...)
	}
	return append([]string{
		"--user",
		"--nginx-conf", e.NginxConf,
		"--nginx-bin", testedge.NginxBin,
		"--nginx-unit", e.NginxUnit,
		"--unit", e.AppUnit,
		"--ports", fmt.Sprintf("%d,%d", e.Ports[0], e.Ports[1]),
		"--health-path", "/health",
		"--health-timeout", "5s",
		"--state-dir", e.StateDir,
	}, extra...)
}

// slotOf asks nginx which slot answers now.
func slotOf(t *testing.T, e *testedge.Edge) string {
	t.Helper()
	resp, err := http.Get(e.URL("/"))
	if err != nil {
		t.Fatalf("GET through nginx: %v", err)
	}
	defer resp.Body.Close()
	return resp.Header.Get("X-Slot")
}

// unitState is the state of slot port's unit: active, inactive, failed...
func unitState(t *testing.T, e *testedge.Edge, port int) string {
	t.Helper()
	return activeState(t, e, e.SlotUnit(port))
}

// activeState is what systemctl is-active says of unit. It exits non-zero
// for every state but active, so only an answer that is not a state (no
// manager, no bus) fails the test.
func activeState(t *testing.T, e *testedge.Edge, unit string) string {
	t.Helper()
	out, err := e.Systemctl(context.Background(), "is-active", unit)
	st := strings.TrimSpace(out)
	if err != nil && (st == "" || strings.ContainsAny(st, " \n")) {
		t.Fatalf("is-active %s: %v", unit, err)
	}
	return st
}

// hashTree returns the SHA-256 of every file under dir, to prove a failed
// switch left every byte as it was.
func hashTree(t *testing.T, dir string) map[string]string {
	t.Helper()
	sums := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || strings.HasSuffix(p, ".log") || strings.HasSuffix(p, ".pid") {
			return err
		}
		data, err := os.ReadFile(p)
		sums[p] = fmt.Sprintf("%x", sha256.Sum256(data))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return sums
}

// running is an edgeswitch started in the background, its stderr read line
// by line as it comes so that a test can act at a step of the switch: wait
// for the step's progress line, never sleep and hope the switch got there.
type running struct {
	cmd    *exec.Cmd
	exited chan struct{} // closed once the process has exited and its stderr is read
	err    error         // cmd.Wait's, once exited is closed

	mu    sync.Mutex
	lines []string      // complete stderr lines
	part  []byte        // the unfinished last line
	line  chan struct{} // gets a value when a line is complete
}

// startSwitch starts `edgeswitch switch` against the edge, with extra flags
// after the edge's (so they win). The test's end kills it if it still runs.
func startSwitch(t testing.TB, e *testedge.Edge, extra ...string) *running {
	t.Helper()
	return start(t, e, nil, append([]string{"switch"}, edgeFlags(e, extra...)...)...)
}

// start runs the binary with args in the background, with the edge's
// environment, its stderr read line by line and its stdout to stdout (nil:
// dropped). The test's end kills it if it still runs.
func start(t testing.TB, e *testedge.Edge, stdout io.Writer, args ...string) *running {
	t.Helper()
	r := &running{exited: make(chan struct{}), line: make(chan struct{}, 1)}
	r.cmd = exec.Command(binary(t), args...)
	r.cmd.Env = append(os.Environ(), e.Env...)
	r.cmd.Stdout, r.cmd.Stderr = stdout, r
	// Stderr is not a terminal, so no live poll counter: only whole lines.
	r.cmd.WaitDelay = 5 * time.Second // a child left holding stderr must not hang Wait
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		r.err = r.cmd.Wait()
		close(r.exited)
	}()
	t.Cleanup(func() {
		r.cmd.Process.Kill()
		<-r.exited
	})
	return r
}

// Write collects stderr into lines.
func (r *running) Write(b []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.part = append(r.part, b...)
	for {
		i := bytes.IndexByte(r.part, '\n')
		if i < 0 {
			break
		}
		r.lines = append(r.lines, string(r.part[:i]))
		r.part = r.part[i+1:]
		select {
		case r.line <- struct{}{}:
		default:
		}
	}
	return len(b), nil
}

// stderr is what the switch wrote on stderr so far.
func (r *running) stderr() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return strings.Join(r.lines, "\n") + "\n" + string(r.part)
}

// waitStep waits for the progress line of step ("health     2.013s ..."),
// which the switch prints when the step ends: waitStep(t, "start") returns
// once the target slot is started and its health is being polled. It
// returns stderr so far, and fails the test if the switch exits first or
// prints no such line within 30 s.
func (r *running) waitStep(t testing.TB, step string) string {
	t.Helper()
	return r.waitUntil(t, "progress line "+step, func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		for _, l := range r.lines {
			// Not a warning the step prints while it runs.
			if f := strings.Fields(l); len(f) > 0 && f[0] == step && (len(f) < 2 || f[1] != "warning:") {
				return true
			}
		}
		return false
	})
}

// lineLag is the margin for how late a test sees a progress line after
// the switch printed it on a busy machine, when it measures a duration
// from the line: a step too short by more than that is still caught.
const lineLag = 500 * time.Millisecond

// waitUntil waits until ok, checking at every stderr line and every 10 ms
// (for conditions outside the switch's output, such as a file a wrapper
// creates); like waitStep, it fails the test after 30 s or when the switch
// exits first.
func (r *running) waitUntil(t testing.TB, what string, ok func() bool) string {
	t.Helper()
	deadline := time.After(30 * time.Second)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !ok() {
		select {
		case <-r.line:
		case <-tick.C:
		case <-r.exited:
			if ok() {
				return r.stderr()
			}
			t.Fatalf("edgeswitch exited (%v) before %s:\n%s", r.err, what, r.stderr())
		case <-deadline:
			t.Fatalf("no %s within 30 s:\n%s", what, r.stderr())
		}
	}
	return r.stderr()
}

// waitFile waits until path exists, as waitUntil does.
func (r *running) waitFile(t testing.TB, path string) {
	t.Helper()
	r.waitUntil(t, path, func() bool {
		_, err := os.Stat(path)
		return err == nil
	})
}

// wait waits for the switch to exit and returns cmd.Wait's error; it fails
// the test if the switch is still running after 2 minutes.
func (r *running) wait(t testing.TB) error {
	t.Helper()
	select {
	case <-r.exited:
		return r.err
	case <-time.After(2 * time.Minute):
		t.Fatalf("edgeswitch still running after 2 minutes:\n%s", r.stderr())
		return nil
	}
}

// startLoad drives clients keep-alive clients through nginx until the test
// stops it.
func startLoad(t testing.TB, e *testedge.Edge, clients int, method, path string) *testedge.Load {
	t.Helper()
	return runLoad(t, e, testedge.LoadOptions{Clients: clients, Method: method, Path: path})
}

// startRawLoad is startLoad with clients that never send a request twice
// (testedge.LoadOptions.NoResend): every request that fails counts.
func startRawLoad(t testing.TB, e *testedge.Edge, clients int, method, path string) *testedge.Load {
	t.Helper()
	return runLoad(t, e, testedge.LoadOptions{Clients: clients, Method: method, Path: path, NoResend: true})
}

func runLoad(t testing.TB, e *testedge.Edge, o testedge.LoadOptions) *testedge.Load {
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Minute)
	t.Cleanup(cancel)
	o.URL = e.URL("")
	if o.Method == http.MethodPost {
		o.Body = []byte(`{"order": 42}`)
	}
	return testedge.RunLoad(ctx, o)
}

// TestSwitchUnderLoad switches 20 times under 32 keep-alive clients: no
// request fails, traffic alternates, the old slot stops. In reload mode
// the clients are net/http's, which resend a GET whose keep-alive
// connection a reload closed (TestReloadModeLosesNoMoreThanBareReloads
// counts those). In socket mode they never resend, and send POSTs too: a
// link swap closes no client connection and nginx's cached connections to
// the old slot close on nginx's side (upstream keepalive with its bounds),
// so none fails, and nginx keeps its workers and its files.
func TestSwitchUnderLoad(t *testing.T) {
	for _, tt := range []struct {
		name, method, path string
		socket             bool
	}{
		{"20 switches with 32 keep-alive GET clients", http.MethodGet, "/", false},
		{"20 switches with 200 ms requests in flight", http.MethodGet, "/?sleep=200ms", false},
		{"20 socket-mode switches with 32 keep-alive POST clients that never resend", http.MethodPost, "/", true},
		{"20 socket-mode switches with 32 keep-alive GET clients that never resend", http.MethodGet, "/", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := testedge.New(t, testedge.Options{Socket: tt.socket})
			procs := nginxWorkers(t, e)
			files := hashTree(t, e.Dir+"/nginx")
			start := startLoad
			if tt.socket {
				start = startRawLoad
			}
			load := start(t, e, 32, tt.method, tt.path)
			// Deliberate load, not a wait for progress: the first switch
			// meets connections in use and requests in flight.
			time.Sleep(200 * time.Millisecond)
			for i := range 20 {
				to, from := e.Ports[(i+1)%2], e.Ports[i%2]
				r := edgeswitch(t, e, "switch")
				if r.code != 0 {
					t.Fatalf("switch %d to %d: exit %d\n%s", i+1, to, r.code, r.stderr)
				}
				if got := slotOf(t, e); got != strconv.Itoa(to) {
					t.Errorf("after switch %d nginx answers from slot %s, want %d", i+1, got, to)
				}
				if st := unitState(t, e, from); st != "inactive" {
					t.Errorf("after switch %d the old slot %d is %s, want inactive", i+1, from, st)
				}
			}
			stats := load.Stop()
			t.Logf("load: %s", stats)
			if stats.Failed != 0 || stats.Requests < 100 {
				t.Errorf("want 0 failed of many requests, got %s", stats)
			}
			if !tt.socket {
				return
			}
			if got := nginxWorkers(t, e); !slices.Equal(got, procs) {
				t.Errorf("nginx's master and workers went from %v to %v: socket mode must not reload", procs, got)
			}
			if got := hashTree(t, e.Dir+"/nginx"); !maps.Equal(got, files) {
				t.Errorf("nginx's files changed: socket mode touches none after the conversion")
			}
		})
	}
}

// TestReloadModeLosesNoMoreThanBareReloads compares the requests that fail
// during switches in reload mode with those that fail during as many bare
// reloads under the same load, GETs and POSTs, from clients that never
// resend: a reload closes idle keep-alive connections, and a request sent
// on one as it closes fails, whatever its method. No reload-based switch
// can avoid that; the switch must not add to it.
func TestReloadModeLosesNoMoreThanBareReloads(t *testing.T) {
	const rounds = 10
	for _, method := range []string{http.MethodGet, http.MethodPost} {
		t.Run(method, func(t *testing.T) {
			e := testedge.New(t, testedge.Options{})
			measure := func(act func(i int)) testedge.LoadStats {
				load := startRawLoad(t, e, 32, method, "/")
				// Deliberate load, not waits for progress: each act meets
				// connections in use, and the gap lets the clients
				// reconnect and go idle again before the next.
				time.Sleep(200 * time.Millisecond)
				for i := range rounds {
					act(i)
					time.Sleep(100 * time.Millisecond)
				}
				return load.Stop()
			}
			bare := measure(func(int) {
				must(t)(e.Systemctl(t.Context(), "reload", e.NginxUnit))
			})
			switched := measure(func(i int) {
				if r := edgeswitch(t, e, "switch"); r.code != 0 {
					t.Fatalf("switch %d: exit %d\n%s", i+1, r.code, r.stderr)
				}
			})
			t.Logf("%d bare reloads: %s", rounds, bare)
			t.Logf("%d switches:     %s", rounds, switched)
			// Both counts are noisy (a failure needs a request to meet the
			// close of its idle connection; 45 and 115 POSTs have been seen
			// for the same setup), so the bound is loose. What it catches
			// is a failure mode of the switch's own: stopping the old slot
			// before the drain fails hundreds of requests per switch.
			if switched.Failed > 3*bare.Failed+5*rounds {
				t.Errorf("switches failed %d requests, bare reloads %d: the switch adds failures", switched.Failed, bare.Failed)
			}
			// A switch's own failure shows as a 5xx: nginx could not reach
			// a slot. A reload's shows as a closed connection.
			for kind, n := range switched.Errors {
				if strings.HasPrefix(kind, "status 5") {
					t.Errorf("switches: %d answers %s; nginx lost a slot", n, kind)
				}
			}
		})
	}
}

// TestWithoutTheDrainRequestsFail is the control for the tests above: with
// drain-timeout 0 the old slot stops while old nginx workers still proxy to
// it, and a load of the same kind sees failures. It shows the load
// generator can see what the zero-failure tests say is not there.
func TestWithoutTheDrainRequestsFail(t *testing.T) {
	// Slots that exit at once on SIGTERM, and requests of 20 s (under the
	// clients' 30 s timeout): old workers have some in flight at the old
	// slot when it stops unless the stop comes 20 s after the reload. (A
	// busy machine was seen to stop the old slot after requests of 200 ms,
	// and of 2 s, had all ended.)
	e := testedge.New(t, testedge.Options{AppArgs: []string{"-shutdown-grace=0s"}})
	load := startLoad(t, e, 32, http.MethodGet, "/?sleep=20s")
	// Deliberate load, not waits for progress: the switches must meet
	// requests in flight, and the gap lets the clients reconnect.
	time.Sleep(200 * time.Millisecond)
	var said []string
	for i := range 3 {
		r := edgeswitch(t, e, "switch", "--drain-timeout", "0s")
		if r.code != 0 {
			t.Fatalf("switch %d: exit %d\n%s", i+1, r.code, r.stderr)
		}
		said = append(said, r.stderr)
		time.Sleep(100 * time.Millisecond)
	}
	stats := load.Stop()
	t.Logf("load without the drain: %s", stats)
	if stats.Failed == 0 {
		t.Errorf("no request failed without the drain: the load cannot see a cut request; the switches said:\n%s", strings.Join(said, "\n"))
	}
}

func TestDryRunChangesNothing(t *testing.T) {
	e := testedge.New(t, testedge.Options{})
	before := hashTree(t, filepath.Dir(e.NginxConf))
	r := edgeswitch(t, e, "switch", "--dry-run")
	if r.code != 0 {
		t.Fatalf("exit %d\n%s", r.code, r.stderr)
	}
	want := fmt.Sprintf("+    server 127.0.0.1:%d;", e.Ports[1])
	if !strings.Contains(r.stdout, want) || !strings.Contains(r.stdout, "--- "+e.UpstreamFile) {
		t.Errorf("dry run prints no diff with %q:\n%s", want, r.stdout)
	}
	assertUnchanged(t, e, before)
	if st := unitState(t, e, e.Ports[1]); st != "inactive" {
		t.Errorf("dry run left slot %d %s", e.Ports[1], st)
	}
}

// assertUnchanged checks that the edge's nginx config hashes as before.
func assertUnchanged(t *testing.T, e *testedge.Edge, before map[string]string) {
	t.Helper()
	assertSameTree(t, filepath.Dir(e.NginxConf), before)
}

// TestFailurePaths breaks one thing at a time and checks the designed exit
// code and message, that traffic stayed on the old slot without a failed
// request, that every config file is byte-identical, and that the target is
// not left running.
func TestFailurePaths(t *testing.T) {
	const reloadTimeout = 60 * time.Second
	tests := []struct {
		name  string
		setup func(t *testing.T, e *testedge.Edge)
		flags []string
		code  int
		says  string
		// within bounds the switch's run, for failures it must see
		// before a timeout: only a switch that waited the timeout out
		// takes that long, however busy the machine.
		within time.Duration
	}{
		{
			name:  "the new slot crashes at start",
			setup: func(t *testing.T, e *testedge.Edge) { setAppArgs(t, e, "-crash") },
			code:  1, says: "the app exited",
		},
		{
			name:  "the new slot never becomes healthy",
			setup: func(t *testing.T, e *testedge.Edge) { setAppArgs(t, e, "-never-ready") },
			code:  1, says: "503",
		},
		{
			name: "nginx -t fails because another file of the config is broken",
			setup: func(t *testing.T, e *testedge.Edge) {
				writeConf(t, e, "broken.conf", "server { listen 127.0.0.1:1; bogus_directive on; }\n")
			},
			code: 2, says: `unknown directive "bogus_directive"`,
		},
		{
			name: "nginx rejects the reload: the port of a new listen is taken",
			setup: func(t *testing.T, e *testedge.Edge) {
				l, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { l.Close() })
				writeConf(t, e, "taken.conf", fmt.Sprintf("server { listen %s; return 204; }\n", l.Addr()))
			},
			// nginx logs the refusal after its bind retries (about 2.5 s);
			// the switch must fail then, not wait out the reload timeout.
			flags: []string{"--reload-timeout", reloadTimeout.String()},
			code:  1, says: "bind()", within: reloadTimeout,
		},
		{
			name: "nginx's unit is stopped",
			setup: func(t *testing.T, e *testedge.Edge) {
				must(t)(e.Systemctl(t.Context(), "stop", e.NginxUnit))
			},
			code: 2, says: "never starts nginx",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := testedge.New(t, testedge.Options{})
			tt.setup(t, e)
			before := hashTree(t, filepath.Dir(e.NginxConf))
			nginxUp := activeState(t, e, e.NginxUnit) == "active"
			var load *testedge.Load
			if nginxUp {
				load = startLoad(t, e, 8, http.MethodGet, "/")
			}
			t0 := time.Now()
			r := edgeswitch(t, e, append([]string{"switch"}, tt.flags...)...)
			if r.code != tt.code || !strings.Contains(r.stderr, tt.says) {
				t.Errorf("exit %d, want %d, with a message saying %q:\n%s", r.code, tt.code, tt.says, r.stderr)
			}
			if took := time.Since(t0); tt.within > 0 && took > tt.within {
				t.Errorf("the switch failed after %s, want within %s", took, tt.within)
			}
			if nginxUp {
				if stats := load.Stop(); stats.Failed != 0 {
					t.Errorf("traffic was interrupted: %s", stats)
				}
				if got := slotOf(t, e); got != strconv.Itoa(e.Ports[0]) {
					t.Errorf("traffic moved to slot %s", got)
				}
			}
			assertUnchanged(t, e, before)
			if st := unitState(t, e, e.Ports[1]); st == "active" || st == "activating" {
				t.Errorf("the target slot was left %s", st)
			}
		})
	}
}

// holdingHook is the argv of a pre-start hook that holds its switch, and
// with it the switch's lock, until the test creates release; it creates
// held once it holds. A hold until an event, not for a time that a busy
// machine could use up before the test acts. The test's end releases it,
// so that no hook outlives its test.
func holdingHook(t *testing.T, dir string) (argv []string, held, release string) {
	held, release = filepath.Join(dir, "hook.held"), filepath.Join(dir, "hook.release")
	t.Cleanup(func() { os.WriteFile(release, nil, 0o644) })
	return []string{"sh", "-c", `touch "$1"; until [ -e "$2" ]; do sleep 0.05; done`, "hold", held, release}, held, release
}

func TestSecondSwitchFailsFastNamingTheHolder(t *testing.T) {
	e := testedge.New(t, testedge.Options{})
	hook, held, release := holdingHook(t, t.TempDir())
	var flags []string
	for _, a := range hook {
		flags = append(flags, "--pre-start="+a) // "=": an argument may start with "-"
	}
	first := startSwitch(t, e, flags...)
	first.waitFile(t, held) // the first one holds the lock, in its pre-start hook
	r := edgeswitch(t, e, "switch")
	if r.code != 2 || !strings.Contains(r.stderr, "pid "+strconv.Itoa(first.cmd.Process.Pid)) {
		t.Errorf("second switch: exit %d, want 2 naming pid %d:\n%s", r.code, first.cmd.Process.Pid, r.stderr)
	}
	writeFile(t, release, "")
	if err := first.wait(t); err != nil {
		t.Errorf("first switch: %v\n%s", err, first.stderr())
	}
}

func TestCtrlCBeforeTheReloadRollsBack(t *testing.T) {
	e := testedge.New(t, testedge.Options{AppArgs: []string{"-ready-after=5s"}})
	before := hashTree(t, filepath.Dir(e.NginxConf))
	sw := startSwitch(t, e)
	sw.waitStep(t, "start") // now polling the slot's health
	if err := sw.cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	err := sw.wait(t)
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 || !strings.Contains(sw.stderr(), "rollback") {
		t.Errorf("after Ctrl-C: %v, want exit 1 with a rollback:\n%s", err, sw.stderr())
	}
	assertUnchanged(t, e, before)
	if st := unitState(t, e, e.Ports[1]); st != "inactive" {
		t.Errorf("the target slot was left %s", st)
	}
	if got := slotOf(t, e); got != strconv.Itoa(e.Ports[0]) {
		t.Errorf("traffic moved to slot %s", got)
	}
}

func setAppArgs(t *testing.T, e *testedge.Edge, args ...string) {
	t.Helper()
	if err := e.SetAppArgs(t.Context(), args...); err != nil {
		t.Fatal(err)
	}
}

func writeConf(t *testing.T, e *testedge.Edge, name, text string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(filepath.Dir(e.UpstreamFile), name), []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

// must(t)(s, err) is s, or fails the test with err: for one-line calls of
// helpers that return (string, error), such as Edge.Systemctl.
func must(t testing.TB) func(string, error) string {
	return func(s string, err error) string {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
}

// TestWarmupBeforeTrafficMoves: warm-up requests reach the new slot after
// its health and before the rewrite, under load with no failed request;
// a new build whose warm-up path answers 500 fails the switch before
// nginx is touched: exit 1, traffic on the old slot, the new slot stopped,
// nginx's files as they were.
func TestWarmupBeforeTrafficMoves(t *testing.T) {
	e := testedge.New(t, testedge.Options{})
	load := startLoad(t, e, 8, http.MethodGet, "/")
	r := edgeswitch(t, e, "switch", "--warmup", "/", "--warmup", "/health", "--warmup-requests", "40")
	if r.code != 0 {
		t.Fatalf("switch with warm-up: exit %d\n%s", r.code, r.stderr)
	}
	warm, rewrite := strings.Index(r.stderr, "\nwarmup "), strings.Index(r.stderr, "\nrewrite ")
	if warm < 0 || rewrite < warm || !strings.Contains(r.stderr, "40 requests to / /health in ") {
		t.Errorf("no warmup line with its 40 requests before the rewrite:\n%s", r.stderr)
	}
	if stats := load.Stop(); stats.Failed != 0 {
		t.Errorf("want 0 failed requests: %s", stats)
	}

	// The next build fails its warm-up: "/" answers 500.
	must(t)("", e.SetAppArgs(t.Context(), "-fail-root"))
	before := hashTree(t, filepath.Dir(e.NginxConf))
	r = edgeswitch(t, e, "switch", "--warmup", "/")
	if r.code != 1 || !strings.Contains(r.stderr, "warm-up request to http://127.0.0.1:") || !strings.Contains(r.stderr, "answered 500 Internal Server Error") {
		t.Errorf("switch to a build that fails its warm-up: exit %d, want 1 naming the answer\n%s", r.code, r.stderr)
	}
	assertUnchanged(t, e, before)
	if got := slotOf(t, e); got != strconv.Itoa(e.Ports[1]) {
		t.Errorf("nginx answers from slot %s, want the old slot %d", got, e.Ports[1])
	}
	if st := unitState(t, e, e.Ports[0]); st != "inactive" {
		t.Errorf("the new slot is %s, want stopped", st)
	}
}
