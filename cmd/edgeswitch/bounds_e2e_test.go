package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/edgeswitch/edgeswitch/internal/testedge"
)

// The bounds tests (issue 20, findings 3 to 6) run the real binary as root
// against a sandbox edge: the locks are root's alone, a hook cannot hold a
// switch past hook-timeout or leave anything running, its output is kept
// to its last 4 KiB, and no history line can break status or rollback.

func rootOnly(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: the locks are root's, and the test runs programs as nobody")
	}
}

// asNobody runs argv as the user nobody, with no groups.
func asNobody(t *testing.T, argv ...string) (string, error) {
	t.Helper()
	out, err := exec.Command("setpriv", append([]string{"--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"}, argv...)...).CombinedOutput()
	return string(out), err
}

// searchable opens dir and the directories above it up to the temp dir's
// for search by others, so that only the files' own modes keep them out.
func searchable(t *testing.T, dir string) {
	t.Helper()
	for d := dir; d != filepath.Dir(d) && d != filepath.Clean(os.TempDir()); d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(d, fi.Mode().Perm()|0o011); err != nil {
			t.Fatal(err)
		}
	}
}

// TestNobodyCanHoldALock: after a switch made them, an unprivileged flock
// on each lock file is refused with EACCES, though nobody may find the
// file; a lock that root holds by hand is named as what it is.
func TestNobodyCanHoldALock(t *testing.T) {
	rootOnly(t)
	e := testedge.New(t, testedge.Options{})
	if r := edgeswitch(t, e, "switch"); r.code != 0 {
		t.Fatalf("switch: exit %d\n%s", r.code, r.stderr)
	}
	searchable(t, e.StateDir)
	for _, name := range []string{"app.lock", "nginx.lock"} {
		path := filepath.Join(e.StateDir, "locks", name)
		if out, err := asNobody(t, "stat", path); err != nil {
			t.Fatalf("nobody cannot reach %s, so the test proves nothing: %v\n%s", path, err, out)
		}
		for _, how := range []string{"--shared", "--exclusive"} {
			out, err := asNobody(t, "flock", "--nonblock", how, path, "true")
			if err == nil || !strings.Contains(out, "Permission denied") {
				t.Errorf("nobody's flock %s %s: %v, want EACCES:\n%s", how, path, err, out)
			}
		}
	}
	lock := filepath.Join(e.StateDir, "locks", "app.lock")
	held := exec.Command("flock", "--exclusive", lock, "sleep", "60")
	if err := held.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = held.Process.Kill(); _ = held.Wait() })
	time.Sleep(200 * time.Millisecond)
	r := edgeswitch(t, e, "switch")
	want := fmt.Sprintf("%s is held by pid %d (\"flock\":", lock, held.Process.Pid)
	if line := errorLine(t, r.stderr); r.code != 2 || !strings.Contains(line, want) || !strings.Contains(line, "not an edgeswitch switch") {
		t.Errorf("switch beside root's flock: exit %d, want 2 saying %q:\n%s", r.code, want, r.stderr)
	}
}

// leftovers are the processes whose command line holds mark.
func leftovers(t *testing.T, mark string) []string {
	t.Helper()
	var found []string
	dirs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range dirs {
		if b, err := os.ReadFile(p); err == nil && strings.Contains(string(b), mark) {
			found = append(found, strings.ReplaceAll(string(b), "\x00", " "))
		}
	}
	return found
}

// TestAPreStartHookThatSleepsForeverIsKilled: with hook-timeout 2s, a
// pre-start hook that ignores SIGTERM and leaves a setsid child fails the
// switch within a few seconds, with nothing of it left running, the lock
// free and traffic on the old slot.
func TestAPreStartHookThatSleepsForeverIsKilled(t *testing.T) {
	rootOnly(t)
	e := testedge.New(t, testedge.Options{})
	before := snapshot(t, e)
	mark := fmt.Sprintf("%d.%d", 1000+os.Getpid()%1000, time.Now().UnixNano()%1000)
	t0 := time.Now()
	r := edgeswitch(t, e, "switch", "--hook-timeout", "2s", "--pre-start=/bin/sh", "--pre-start=-c",
		"--pre-start=trap '' TERM INT; setsid sleep "+mark+" & sleep "+mark)
	took := time.Since(t0)
	if line := errorLine(t, r.stderr); r.code != 1 || !strings.Contains(line, "killed with every process it started (hook-timeout 2s)") {
		t.Errorf("exit %d, want 1 saying the hook was killed at hook-timeout 2s:\n%s", r.code, r.stderr)
	}
	if took > 10*time.Second {
		t.Errorf("the switch took %s with hook-timeout 2s", took)
	}
	if left := leftovers(t, "sleep "+mark); len(left) > 0 {
		t.Errorf("the hook left %q running", left)
	}
	before.assertSame(t, e)
	if out, err := exec.Command("flock", "--nonblock", filepath.Join(e.StateDir, "locks", "app.lock"), "true").CombinedOutput(); err != nil {
		t.Errorf("the app's lock is still held: %v\n%s", err, out)
	}
}

// TestAHooksOutputIsKeptToItsLast4KiB: a pre-start hook that prints 200 KB
// and fails: the on-failure hook still runs, with the error in
// EDGESWITCH_ERROR, and neither that nor the history holds more than
// 4 KiB of the output.
func TestAHooksOutputIsKeptToItsLast4KiB(t *testing.T) {
	rootOnly(t)
	e := testedge.New(t, testedge.Options{})
	got := filepath.Join(t.TempDir(), "error")
	r := edgeswitch(t, e, "switch",
		"--pre-start=/bin/sh", "--pre-start=-c", "--pre-start=head -c 200000 /dev/zero | tr '\\0' x; exit 3",
		"--on-failure=/bin/sh", "--on-failure=-c", `--on-failure=printf %s "$EDGESWITCH_ERROR" > `+got)
	if r.code != 1 {
		t.Fatalf("exit %d, want 1:\n%.2000s", r.code, r.stderr)
	}
	sent, err := os.ReadFile(got)
	if err != nil {
		t.Fatalf("the on-failure hook did not run: %v\n%.2000s", err, r.stderr)
	}
	if n := outputKept(sent); n == 0 || n > 4096 {
		t.Errorf("EDGESWITCH_ERROR holds %d bytes of the output, want 1 to 4096", n)
	}
	hist, err := os.ReadFile(filepath.Join(e.StateDir, "history.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	if n := outputKept(hist); n == 0 || n > 4096 {
		t.Errorf("the history holds %d bytes of the output, want 1 to 4096", n)
	}
	if fi, err := os.Stat(filepath.Join(e.StateDir, "history.jsonl")); err != nil || fi.Mode().Perm() != 0o640 {
		t.Errorf("history mode %v (%v), want 0640", fi.Mode().Perm(), err)
	}
}

// outputKept counts the hook's x's in text: its runs, not the x of
// "exit" in its command line.
func outputKept(text []byte) int {
	n := 0
	for _, run := range regexp.MustCompile(`x{16,}`).FindAll(text, -1) {
		n += len(run)
	}
	return n
}

// TestALongHealthPathLeavesStatusAndRollbackWorking: a 70,000-character
// health path in a switch that fails (no slot answers 599) is cut in its
// record; a 143 KB line an older version wrote is skipped with a warning;
// status and rollback, which read the whole history, work.
func TestALongHealthPathLeavesStatusAndRollbackWorking(t *testing.T) {
	e := testedge.New(t, testedge.Options{})
	if r := edgeswitch(t, e, "switch"); r.code != 0 {
		t.Fatalf("switch: exit %d\n%s", r.code, r.stderr)
	}
	long := "/" + strings.Repeat("h", 70000)
	r := runWith(t, e.Env, append(append([]string{"switch"}, edgeFlags(e)...), "--health-path", long, "--health-status", "599", "--health-timeout", "1s")...)
	if r.code != 1 {
		t.Fatalf("switch with a 70,000-character health path: exit %d, want 1:\n%.2000s", r.code, r.stderr)
	}
	path := filepath.Join(e.StateDir, "history.jsonl")
	old, _ := json.Marshal(map[string]any{"app": "app", "upstream": "app", "to": e.Ports[0], "result": "failed", "error": strings.Repeat("o", 143000)})
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(append(old, '\n')); err != nil {
		t.Fatal(err)
	}
	f.Close()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(lines) != 3 || len(lines[1]) > 64<<10 || !strings.Contains(lines[1], "…(cut)") {
		t.Errorf("the failed switch's line is %d bytes, want it cut, under 64 KiB", len(lines[1]))
	}
	st := edgeswitch(t, e, "status")
	if st.code != 0 || !strings.Contains(st.stdout, "warning   history: skipped 1 damaged or over-long lines") {
		t.Errorf("status: exit %d, want 0 with a warning of the skipped line:\n%s%s", st.code, st.stdout, st.stderr)
	}
	// A good build in the slot whose switch failed, then back.
	if r := edgeswitch(t, e, "switch", "--to", strconv.Itoa(e.Ports[0])); r.code != 0 {
		t.Fatalf("switch --to %d: exit %d\n%s", e.Ports[0], r.code, r.stderr)
	}
	if rb := edgeswitch(t, e, "rollback"); rb.code != 0 || !strings.Contains(rb.stderr, "warning: history: skipped 1 damaged or over-long lines") {
		t.Errorf("rollback: exit %d, want 0 with a warning of the skipped line:\n%s", rb.code, rb.stderr)
	}
	if got := slotOf(t, e); got != strconv.Itoa(e.Ports[1]) {
		t.Errorf("after the rollback nginx answers from slot %s, want %d", got, e.Ports[1])
	}
}

// TestAPostSwitchHookThatLeavesAChildDoesNotBlock: a post-switch hook whose
// background child holds its output open holds the switch for 2 s at
// most, and the child is killed with the hook's scope.
func TestAPostSwitchHookThatLeavesAChildDoesNotBlock(t *testing.T) {
	e := testedge.New(t, testedge.Options{})
	mark := fmt.Sprintf("%d.%d", 2000+os.Getpid()%1000, time.Now().UnixNano()%1000)
	t0 := time.Now()
	r := edgeswitch(t, e, "switch", "--post-switch=/bin/sh", "--post-switch=-c", "--post-switch=echo notified; sleep "+mark+" &")
	took := time.Since(t0)
	if r.code != 0 || !strings.Contains(r.stderr, "ok notified") {
		t.Errorf("exit %d, want 0 with the hook's line:\n%s", r.code, r.stderr)
	}
	if took > 15*time.Second {
		t.Errorf("the switch took %s", took)
	}
	if left := leftovers(t, "sleep "+mark); len(left) > 0 {
		t.Errorf("the hook left %q running", left)
	}
	if got := slotOf(t, e); got != strconv.Itoa(e.Ports[1]) {
		t.Errorf("nginx answers from slot %s, want %d", got, e.Ports[1])
	}
}

// TestEscapesInAHealthAnswerAreShownEscaped: an app whose answer sets the
// terminal's title and erases a line is shown escaped by switch's error
// and status; --json keeps the answer as it is.
func TestEscapesInAHealthAnswerAreShownEscaped(t *testing.T) {
	body := filepath.Join(t.TempDir(), "body")
	writeFile(t, body, "\x1b]0;pwned\x07\r\x1b[2Khealth  healthy\n")
	e := testedge.New(t, testedge.Options{AppArgs: []string{"-body-file=" + body}})
	flags := append(edgeFlags(e), "--health-path", "/", "--health-body", "ok", "--health-timeout", "1s")
	before := snapshot(t, e)
	r := runWith(t, e.Env, append([]string{"switch"}, flags...)...)
	if r.code != 1 || strings.ContainsAny(r.stderr, "\x1b\x07\r") || !strings.Contains(errorLine(t, r.stderr), `\x1b]0;pwned\a\r\x1b[2Khealth  healthy`) {
		t.Errorf("switch: exit %d, want 1 with the answer escaped:\n%q", r.code, r.stderr)
	}
	before.assertSame(t, e)
	st := runWith(t, e.Env, append([]string{"status"}, flags...)...)
	if st.code != 1 || strings.ContainsAny(st.stdout, "\x1b\x07\r") || !strings.Contains(st.stdout, `body lacks "ok": \x1b]0;pwned\a`) {
		t.Errorf("status: exit %d, want 1 with the answer escaped:\n%q", st.code, st.stdout)
	}
	js := runWith(t, e.Env, append([]string{"--json", "status"}, flags...)...)
	if !strings.Contains(js.stdout, `\u001b]0;pwned\u0007`) {
		t.Errorf("status --json does not keep the answer as it is:\n%s", js.stdout)
	}
}
