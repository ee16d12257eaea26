package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
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

func unitState(t *testing.T, e *testedge.Edge, port int) string {
	t.Helper()
	out, _ := e.Systemctl(context.Background(), "is-active", e.SlotUnit(port))
	return strings.TrimSpace(out)
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

// startLoad drives clients keep-alive clients through nginx until the test
// stops it.
func startLoad(t testing.TB, e *testedge.Edge, clients int, method, path string) *testedge.Load {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Minute)
	t.Cleanup(cancel)
	var body []byte
	if method == http.MethodPost {
		body = []byte(`{"order": 42}`)
	}
	return testedge.RunLoad(ctx, testedge.LoadOptions{URL: e.URL(""), Clients: clients, Method: method, Path: path, Body: body})
}

func TestSwitchUnderLoad(t *testing.T) {
	for _, tt := range []struct {
		name, path string
		switches   int
	}{
		{"20 switches with 32 keep-alive GET clients", "/", 20},
		{"20 switches with 200 ms requests in flight", "/?sleep=200ms", 20},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := testedge.New(t, testedge.Options{})
			load := startLoad(t, e, 32, http.MethodGet, tt.path)
			time.Sleep(200 * time.Millisecond)
			for i := range tt.switches {
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
		})
	}
}

// TestPOSTsFailNoMoreThanBareReloads compares the POSTs that fail during
// switches with those that fail during as many bare reloads under the same
// load: a reload closes idle keep-alive connections, which no switch can
// avoid; the switch must not add to it.
func TestPOSTsFailNoMoreThanBareReloads(t *testing.T) {
	const rounds = 10
	e := testedge.New(t, testedge.Options{})
	measure := func(act func(i int)) testedge.LoadStats {
		load := startLoad(t, e, 32, http.MethodPost, "/")
		time.Sleep(200 * time.Millisecond)
		for i := range rounds {
			act(i)
			time.Sleep(100 * time.Millisecond)
		}
		return load.Stop()
	}
	bare := measure(func(int) {
		if out, err := e.Systemctl(t.Context(), "reload", e.NginxUnit); err != nil {
			t.Fatalf("reload: %v\n%s", err, out)
		}
	})
	switched := measure(func(i int) {
		if r := edgeswitch(t, e, "switch"); r.code != 0 {
			t.Fatalf("switch %d: exit %d\n%s", i+1, r.code, r.stderr)
		}
	})
	t.Logf("bare reloads: %s", bare)
	t.Logf("switches:     %s", switched)
	// Both counts are noisy (a reset needs a POST to meet the close of its
	// idle connection; 45 and 115 have been seen for the same setup), so
	// the bound is loose. What it catches is a failure mode of the switch's
	// own: stopping the old slot before the drain fails hundreds of
	// requests per switch.
	if switched.Failed > 3*bare.Failed+5*rounds {
		t.Errorf("switches failed %d POSTs, bare reloads %d: the switch adds failures", switched.Failed, bare.Failed)
	}
}

// TestWithoutTheDrainRequestsFail is the control for the tests above: with
// drain-timeout 0 the old slot stops while old nginx workers still proxy to
// it, and the same load sees failures. It shows the load generator can see
// what the zero-failure tests say is not there.
func TestWithoutTheDrainRequestsFail(t *testing.T) {
	e := testedge.New(t, testedge.Options{})
	load := startLoad(t, e, 32, http.MethodGet, "/")
	time.Sleep(200 * time.Millisecond)
	for i := range 3 {
		if r := edgeswitch(t, e, "switch", "--drain-timeout", "0s"); r.code != 0 {
			t.Fatalf("switch %d: exit %d\n%s", i+1, r.code, r.stderr)
		}
		time.Sleep(100 * time.Millisecond)
	}
	stats := load.Stop()
	t.Logf("load without the drain: %s", stats)
	if stats.Failed == 0 {
		t.Errorf("no request failed without the drain: the load cannot see a cut request")
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

func assertUnchanged(t *testing.T, e *testedge.Edge, before map[string]string) {
	t.Helper()
	after := hashTree(t, filepath.Dir(e.NginxConf))
	for p, h := range before {
		if after[p] != h {
			t.Errorf("%s changed", p)
		}
	}
	for p := range after {
		if _, ok := before[p]; !ok {
			t.Errorf("%s appeared", p)
		}
	}
}

// TestFailurePaths breaks one thing at a time and checks the designed exit
// code and message, that traffic stayed on the old slot without a failed
// request, that every config file is byte-identical, and that the target is
// not left running.
func TestFailurePaths(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T, e *testedge.Edge)
		code  int
		says  string
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
			code: 1, says: "bind()",
		},
		{
			name: "nginx's unit is stopped",
			setup: func(t *testing.T, e *testedge.Edge) {
				if out, err := e.Systemctl(t.Context(), "stop", e.NginxUnit); err != nil {
					t.Fatalf("%v\n%s", err, out)
				}
			},
			code: 2, says: "never starts nginx",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := testedge.New(t, testedge.Options{})
			tt.setup(t, e)
			before := hashTree(t, filepath.Dir(e.NginxConf))
			nginxUp := strings.TrimSpace(must(e.Systemctl(t.Context(), "is-active", e.NginxUnit))) == "active"
			var load *testedge.Load
			if nginxUp {
				load = startLoad(t, e, 8, http.MethodGet, "/")
			}
			r := edgeswitch(t, e, "switch")
			if r.code != tt.code || !strings.Contains(r.stderr, tt.says) {
				t.Errorf("exit %d, want %d, with a message saying %q:\n%s", r.code, tt.code, tt.says, r.stderr)
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

func TestSecondSwitchFailsFastNamingTheHolder(t *testing.T) {
	e := testedge.New(t, testedge.Options{AppArgs: []string{"-ready-after=2s"}})
	first := exec.Command(binary(t), append([]string{"switch"}, edgeFlags(e)...)...)
	first.Env = append(os.Environ(), e.Env...)
	first.Stderr = io.Discard
	if err := first.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond) // the first one now waits for health
	r := edgeswitch(t, e, "switch")
	if r.code != 2 || !strings.Contains(r.stderr, "pid "+strconv.Itoa(first.Process.Pid)) {
		t.Errorf("second switch: exit %d, want 2 naming pid %d:\n%s", r.code, first.Process.Pid, r.stderr)
	}
	if err := first.Wait(); err != nil {
		t.Errorf("first switch: %v", err)
	}
}

func TestCtrlCBeforeTheReloadRollsBack(t *testing.T) {
	e := testedge.New(t, testedge.Options{AppArgs: []string{"-ready-after=5s"}})
	before := hashTree(t, filepath.Dir(e.NginxConf))
	cmd := exec.Command(binary(t), append([]string{"switch"}, edgeFlags(e)...)...)
	cmd.Env = append(os.Environ(), e.Env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second) // now polling the slot's health
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	err := cmd.Wait()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 || !strings.Contains(stderr.String(), "rollback") {
		t.Errorf("after Ctrl-C: %v, want exit 1 with a rollback:\n%s", err, stderr.String())
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

func must(s string, err error) string {
	if err != nil {
		return ""
	}
	return s
}
