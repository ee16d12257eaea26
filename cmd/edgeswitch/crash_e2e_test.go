package main

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/edgeswitch/edgeswitch/internal/testedge"
)

// slowNginx wraps the nginx binary so a test can stop a switch at a point
// no progress line marks: it holds the second `nginx -t` (validate: the
// file is written, not yet tested) when dir/hold-t2 exists, and says so by
// creating hold-t2.held.
func slowNginx(t *testing.T, dir string) string {
	t.Helper()
	script := fmt.Sprintf(`#!/bin/sh
d=%q
case "$*" in
*-t*) n=$(( $(cat "$d/tests" 2>/dev/null || echo 0) + 1 )); echo $n > "$d/tests"
      [ -e "$d/hold-t2" ] && [ $n = 2 ] && touch "$d/hold-t2.held" && sleep 30 ;;
esac
exec %s "$@"
`, dir, testedge.NginxBin)
	path := filepath.Join(dir, "nginx")
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

// killCase is one point at which a switch is killed.
type killCase struct {
	name    string
	hold    string // file that makes the nginx wrapper hold, if any
	after   string // or: kill when this step's progress line appears
	pending bool   // status must report an unfinished switch
}

// TestKilledSwitchConverges kills a switch with SIGKILL at each point in
// turn, under load, then checks that status tells the half-done state and
// that running the switch again finishes it, with or without --to.
func TestKilledSwitchConverges(t *testing.T) {
	killSwitches(t, testedge.Options{AppArgs: []string{"-ready-after=1s"}}, []killCase{
		{name: "during start", after: "preflight"},
		{name: "during health polling", after: "start"},
		// No command runs between validate and the reload signal, so this
		// kill lands just before or just after ReloadUnit.
		{name: "after nginx -t, around the reload", after: "validate", pending: true},
		{name: "after the write, before nginx -t", hold: "hold-t2", pending: true},
		{name: "after the reload, before the drain ends", after: "confirm", pending: true},
		{name: "before the old unit stops", after: "drain", pending: true},
	})
}

// TestKilledSocketSwitchConverges is the same in socket mode: killed once
// the link moved, the next run finds it moved and finishes.
func TestKilledSocketSwitchConverges(t *testing.T) {
	killSwitches(t, testedge.Options{Socket: true, AppArgs: []string{"-ready-after=1s"}}, []killCase{
		{name: "during health polling", after: "start"},
		{name: "after the link moved, before the drain ends", after: "link", pending: true},
		{name: "before the old unit stops", after: "drain", pending: true},
	})
}

// killSwitches kills a switch on an edge of o at each of tests' points in
// turn, under load, and runs it again each time.
func killSwitches(t *testing.T, o testedge.Options, tests []killCase) {
	e := testedge.New(t, o)
	load := startLoad(t, e, 32, http.MethodGet, "/?sleep=50ms")
	tools := t.TempDir()
	nginxBin := slowNginx(t, tools)
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			to := e.Ports[(i+1)%2]
			os.Remove(filepath.Join(tools, "tests"))
			if tt.hold != "" {
				os.WriteFile(filepath.Join(tools, tt.hold), nil, 0o644)
				defer os.Remove(filepath.Join(tools, tt.hold))
				defer os.Remove(filepath.Join(tools, tt.hold+".held"))
			}
			sw := startSwitch(t, e, "--to", strconv.Itoa(to), "--nginx-bin", nginxBin)
			var seen string
			if tt.hold != "" {
				sw.waitFile(t, filepath.Join(tools, tt.hold+".held")) // nginx -t held by the wrapper
				seen = sw.stderr()
			} else {
				seen = sw.waitStep(t, tt.after)
			}
			sw.cmd.Process.Kill()
			sw.wait(t)
			t.Logf("killed after:\n%s", seen)

			st := edgeswitch(t, e, "status")
			if tt.pending != strings.Contains(st.stdout, "did not finish") {
				t.Errorf("status after the kill does not tell the half-done state (pending %v):\n%s", tt.pending, st.stdout)
			}
			// Half the reruns name the target, half leave it to the
			// pending record (or, before the write, to the live slot).
			again := []string{"switch", "--to", strconv.Itoa(to)}
			if i%2 == 0 {
				again = again[:1]
			}
			r := edgeswitch(t, e, again...)
			if r.code != 0 {
				t.Fatalf("switch again: exit %d\n%s", r.code, r.stderr)
			}
			if got := slotOf(t, e); got != strconv.Itoa(to) {
				t.Errorf("after the second run nginx answers from %s, want %d", got, to)
			}
			if st := unitState(t, e, e.Ports[i%2]); st != "inactive" {
				t.Errorf("the old slot is %s, want inactive", st)
			}
			assertNoStrayFiles(t, e)
		})
	}
	if stats := load.Stop(); stats.Failed != 0 {
		t.Errorf("traffic failed while switches were killed: %s", stats)
	} else {
		t.Logf("load: %s", stats)
	}
}

// assertNoStrayFiles checks that only the locks and the history are in the
// state dir and no temp file is in the nginx config.
func assertNoStrayFiles(t *testing.T, e *testedge.Edge) {
	t.Helper()
	entries, _ := os.ReadDir(e.StateDir)
	for _, d := range entries {
		if n := d.Name(); n != "locks" && n != "history.jsonl" && filepath.Join(e.StateDir, n) != e.SocketLink {
			t.Errorf("stray file in the state dir: %s", n)
		}
	}
	filepath.WalkDir(filepath.Dir(e.NginxConf), func(p string, d os.DirEntry, err error) error {
		if err == nil && strings.Contains(d.Name(), ".tmp") {
			t.Errorf("stray temp file: %s", p)
		}
		return nil
	})
}

func TestCtrlCAfterTheReloadFinishesTheSwitch(t *testing.T) {
	e := testedge.New(t, testedge.Options{})
	load := startLoad(t, e, 32, http.MethodGet, "/?sleep=300ms")
	// Deliberate load, not a wait for progress: requests in flight, so
	// the drain takes a while.
	time.Sleep(500 * time.Millisecond)
	sw := startSwitch(t, e)
	sw.waitStep(t, "confirm")
	if err := sw.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if err := sw.wait(t); err != nil {
		t.Errorf("Ctrl-C after the reload: %v, want the switch to finish with exit 0\n%s", err, sw.stderr())
	}
	if st := unitState(t, e, e.Ports[0]); st != "inactive" {
		t.Errorf("the old slot is %s, want inactive", st)
	}
	if stats := load.Stop(); stats.Failed != 0 {
		t.Errorf("traffic failed: %s", stats)
	}
}

// TestConcurrentSwitches starts several switches at once: one proceeds, the
// others exit 2 at once naming the holder, and nothing is corrupted. At
// once: a refused switch exits before the last switch that proceeded, so
// it never waited for the lock to be free, however slow a busy machine
// makes them. (Not before the holder it names: a refusal that reads the
// lock file as a new holder takes the lock names the one before, or none.)
func TestConcurrentSwitches(t *testing.T) {
	e := testedge.New(t, testedge.Options{})
	const n = 8
	type out struct {
		code   int
		stderr string
		exited time.Time
	}
	results := make(chan out, n)
	for range n {
		go func() {
			cmd := exec.Command(binary(t), append([]string{"switch", "--to", strconv.Itoa(e.Ports[1])}, edgeFlags(e)...)...)
			cmd.Env = append(os.Environ(), e.Env...)
			var b strings.Builder
			cmd.Stderr = &b
			err := cmd.Run()
			code := 0
			if x, ok := err.(*exec.ExitError); ok {
				code = x.ExitCode()
			}
			results <- out{code, b.String(), time.Now()}
		}()
	}
	var refused []out
	var lastWin time.Time
	ok := 0
	for range n {
		r := <-results
		switch {
		case r.code == 0:
			ok++
			if r.exited.After(lastWin) {
				lastWin = r.exited
			}
		case r.code == 2 && strings.Contains(r.stderr, "another switch of upstream app is running (pid "):
			refused = append(refused, r)
		default:
			t.Errorf("exit %d:\n%s", r.code, r.stderr)
		}
	}
	for _, r := range refused {
		if !r.exited.Before(lastWin) {
			t.Errorf("a refused switch exited at %s, after the last switch that proceeded (%s): it waited for the lock\n%s",
				r.exited.Format(time.StampMilli), lastWin.Format(time.StampMilli), r.stderr)
		}
	}
	if ok < 1 {
		t.Errorf("%d switches succeeded, want at least one", ok)
	}
	if got := slotOf(t, e); got != strconv.Itoa(e.Ports[1]) {
		t.Errorf("nginx answers from %s, want %d", got, e.Ports[1])
	}
	if r := edgeswitch(t, e, "check"); r.code != 0 {
		t.Errorf("check after concurrent switches: exit %d\n%s", r.code, r.stdout)
	}
	assertNoStrayFiles(t, e)
}
