package route

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// The socket router in the reload router's world (newWorld): the block's
// file, nginx -t, systemd and /proc are the same fakes; the link and the
// slots' sockets are in temp dirs, and /proc/net/unix is a file the test
// writes.

// socketWorld is a world whose upstream lists the link (or, with tcp,
// still the port of slot A).
type socketWorld struct {
	*world
	s            *Socket
	link         string
	sockA, sockB string
}

func newSocketWorld(t *testing.T, tcp bool) *socketWorld {
	t.Helper()
	w := &socketWorld{world: newWorld(t)}
	run := t.TempDir()
	w.link = filepath.Join(t.TempDir(), "app.sock")
	w.sockA, w.sockB = filepath.Join(run, "4000.sock"), filepath.Join(run, "4001.sock")
	for _, s := range []string{w.sockA, w.sockB} {
		write(t, s, nil) // stands for the socket: the router only stats it
		if err := os.Chmod(s, 0o666); err != nil {
			t.Fatal(err)
		}
	}
	if !tcp {
		w.orig = fmt.Appendf(nil, "upstream app {\n    server unix:%s;\n}\n", w.link)
		write(t, w.app, w.orig)
		if err := os.Symlink(w.sockA, w.link); err != nil {
			t.Fatal(err)
		}
	}
	w.s = NewSocket(w.r.Nginx, "app", w.link, []SocketSlot{{Port: TCP(slotA), Socket: w.sockA}, {Port: TCP(slotB), Socket: w.sockB}})
	w.workersRunAs(0)
	w.conns(w.sockA, 0)
	return w
}

// workersRunAs writes the workers' status files: uid and gid.
func (w *socketWorld) workersRunAs(id int) {
	for _, pid := range w.workers {
		write(w.t, filepath.Join(w.proc.root, fmt.Sprint(pid), "status"),
			fmt.Appendf(nil, "Name:\tnginx\nUid:\t%[1]d\t%[1]d\t%[1]d\t%[1]d\nGid:\t%[1]d\t%[1]d\t%[1]d\t%[1]d\nGroups:\t%[1]d\n", id))
	}
}

// conns writes /proc/net/unix with n connections to socket, beside its
// listener.
func (w *socketWorld) conns(socket string, n int) {
	table := "Num       RefCount Protocol Flags    Type St Inode Path\n" +
		fmt.Sprintf("0000000000000000: 00000002 00000000 00010000 0001 01 1000 %s\n", socket)
	for i := range n {
		table += fmt.Sprintf("0000000000000000: 00000003 00000000 00000000 0001 03 %d %s\n", 2000+i, socket)
	}
	if err := os.MkdirAll(filepath.Join(w.proc.root, "net"), 0o755); err != nil {
		w.t.Fatal(err)
	}
	// Renamed into place: Conns may be reading it (a drain) meanwhile.
	tmp := filepath.Join(w.proc.root, "net", ".unix.tmp")
	write(w.t, tmp, []byte(table))
	if err := os.Rename(tmp, filepath.Join(w.proc.root, "net", "unix")); err != nil {
		w.t.Fatal(err)
	}
}

// wantLink fails the test unless the link points at target ("" for no
// link).
func (w *socketWorld) wantLink(target, when string) {
	w.t.Helper()
	got, err := os.Readlink(w.link)
	if target == "" && !os.IsNotExist(err) || target != "" && got != target {
		w.t.Errorf("%s: link -> %q (%v), want %q", when, got, err, target)
	}
	entries, _ := os.ReadDir(filepath.Dir(w.link))
	if len(entries) > 1 {
		w.t.Errorf("%s: %v beside the link; a temp link was left", when, entries)
	}
}

func (w *socketWorld) plan(to string) *Change {
	w.t.Helper()
	if _, err := w.s.Read(); err != nil {
		w.t.Fatal(err)
	}
	ch, err := w.s.Plan([]Backend{{Addr: Unix(to)}}, "")
	if err != nil {
		w.t.Fatal(err)
	}
	return ch
}

func stepNames(ch *Change) []string {
	var names []string
	for _, s := range ch.Steps {
		names = append(names, s.Name)
	}
	return names
}

func TestSocketSwitch(t *testing.T) {
	w := newSocketWorld(t, false)
	l, err := w.s.Read()
	if err != nil || !slices.Equal(l.Addrs, []Addr{Unix(w.sockA)}) {
		t.Fatalf("Read = %+v, %v; want the link's target listed", l, err)
	}
	ch := w.plan(w.sockB)
	want := fmt.Sprintf("--- %[1]s\n+++ %[1]s\n@@ -1 +1 @@\n-%[2]s\n+%[3]s\n", w.link, w.sockA, w.sockB)
	if d := cmp.Diff(want, ch.Diff); d != "" || !ch.Changed || ch.File != w.link {
		t.Errorf("Diff (-want +got):\n%s\nChanged %t, File %s", d, ch.Changed, ch.File)
	}
	if got := stepNames(ch); !slices.Equal(got, []string{"link"}) || !ch.Steps[0].Whole {
		t.Errorf("steps %v; want the one whole step link", got)
	}
	if _, failed, err := w.steps(ch); err != nil {
		t.Fatalf("step %s: %v", failed, err)
	}
	w.wantLink(w.sockB, "after the link step")
	w.wantFile(w.orig, "after the link step")
	w.wantReloads(0)
	w.wantTests(0)

	w.conns(w.sockA, 0)
	if d := w.s.Drain(t.Context()); d.Left != 0 || !strings.Contains(d.Detail, "no connection open to "+w.sockA) {
		t.Errorf("Drain = %+v; want nothing left", d)
	}

	w.conns(w.sockB, 1) // the new slot serves a request while the link goes back
	w.r.DrainTimeout = time.Minute
	go func() {
		time.Sleep(3 * connPoll)
		w.conns(w.sockB, 0)
	}()
	d, err := w.s.Revert(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	w.wantLink(w.sockA, "after Revert")
	if d.Left != 0 || !strings.Contains(d.Detail, "no connection open to "+w.sockB) {
		t.Errorf("Revert's wait = %+v; want the new slot's connection gone", d)
	}
	if n, _ := os.ReadFile(filepath.Join(w.proc.root, "net", "unix")); strings.Count(string(n), "\n") != 2 {
		t.Errorf("Revert returned while the new slot still had a connection:\n%s", n)
	}
}

func TestSocketDrainTimesOut(t *testing.T) {
	w := newSocketWorld(t, false)
	if _, _, err := w.steps(w.plan(w.sockB)); err != nil {
		t.Fatal(err)
	}
	w.conns(w.sockA, 2)
	d := w.s.Drain(t.Context())
	if d.Left != 2 || !strings.Contains(d.Warn, "2 connections still open to "+w.sockA) || !strings.Contains(d.Warn, "cuts them") {
		t.Errorf("Drain = %+v; want 2 left, a warning that stopping the slot cuts them", d)
	}
}

func TestSocketConversion(t *testing.T) {
	w := newSocketWorld(t, true)
	l, err := w.s.Read()
	if err != nil || !slices.Equal(l.Addrs, []Addr{Unix(w.sockA)}) {
		t.Fatalf("Read = %+v, %v; want slot A's socket for its listed port", l, err)
	}
	ch, err := w.s.Plan([]Backend{{Addr: Unix(w.sockB)}}, "")
	if err != nil {
		t.Fatal(err)
	}
	if got := stepNames(ch); !slices.Equal(got, []string{"link", "validate", "reload", "confirm"}) {
		t.Errorf("steps %v", got)
	}
	for _, part := range []string{"-    server 127.0.0.1:4000 max_fails=0;", "+    server unix:" + w.link + " max_fails=0;", "+" + w.sockB} {
		if !strings.Contains(ch.Diff, part) {
			t.Errorf("Diff lacks %q:\n%s", part, ch.Diff)
		}
	}
	if _, failed, err := w.steps(ch); err != nil {
		t.Fatalf("step %s: %v", failed, err)
	}
	w.wantLink(w.sockB, "after the conversion")
	w.wantReloads(1)

	if _, err := w.s.Revert(t.Context()); err != nil {
		t.Fatal(err)
	}
	w.wantFile(w.orig, "after Revert")
	w.wantLink("", "after Revert")
	w.wantReloads(2)
}

func TestSocketRefusals(t *testing.T) {
	tests := []struct {
		name  string
		setup func(w *socketWorld)
		parts []string
	}{
		{"the link is a file", func(w *socketWorld) {
			os.Remove(w.link)
			write(t, w.link, nil)
		}, []string{"is a regular file, not a symlink", "move it away"}},
		{"the link points elsewhere", func(w *socketWorld) {
			os.Remove(w.link)
			os.Symlink("/run/other.sock", w.link)
		}, []string{"points at /run/other.sock, which is not a slot's socket", "ln -sfn"}},
		{"the block lists the link and a port", func(w *socketWorld) {
			write(t, w.app, fmt.Appendf(nil, "upstream app {\n    server unix:%s;\n    server 127.0.0.1:4001;\n}\n", w.link))
		}, []string{"beside the slots' ports", "remove the other server lines"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newSocketWorld(t, false)
			tt.setup(w)
			_, err := w.s.Read()
			wantErr(t, err, nil, tt.parts...)
		})
	}
	t.Run("weights", func(t *testing.T) {
		w := newSocketWorld(t, false)
		w.s.Read()
		_, err := w.s.Plan([]Backend{{Addr: Unix(w.sockA), Weight: 90}, {Addr: Unix(w.sockB), Weight: 10}}, "")
		wantErr(t, err, nil, "no weights", `mode = "reload"`)
	})
}

func TestSocketChecks(t *testing.T) {
	failed := func(checks []Check) map[string]string {
		m := map[string]string{}
		for _, c := range checks {
			if c.Err != nil {
				m[c.Name] = c.Err.Error()
			}
		}
		return m
	}
	t.Run("keepalive", func(t *testing.T) {
		for _, tt := range []struct {
			name, lines string
			drain       time.Duration // drain-timeout
			says        []string      // the check's error; none: it passes
		}{
			{"bounded well inside drain-timeout", "keepalive 16;\n    keepalive_time 10s;\n    keepalive_timeout 5s;", 20 * time.Second, nil},
			{"bounded in nginx's other units", "keepalive 16;\n    keepalive_time 250ms;\n    keepalive_timeout 1;", 2 * time.Second, nil},
			{"without keepalive_time", "keepalive 16;\n    keepalive_timeout 10s;", 30 * time.Second,
				[]string{"app.conf:3: upstream app has keepalive but no keepalive_time", `add "keepalive_time 10s;" and "keepalive_timeout 10s;"`, "half of drain-timeout 30s"}},
			{"without either bound", "keepalive 16;", 30 * time.Second, []string{"app.conf:3: upstream app has keepalive but no keepalive_time"}},
			{"a bound over half of drain-timeout", "keepalive 16;\n    keepalive_time 10s;\n    keepalive_timeout 20s;", 30 * time.Second,
				[]string{"app.conf:5: keepalive_timeout 20s is longer than half of drain-timeout 30s", "set keepalive_timeout to at most 15s"}},
			{"a bound that is no time", "keepalive 16;\n    keepalive_time soon;\n    keepalive_timeout 5s;", 30 * time.Second, []string{"app.conf:4: keepalive_time:", `"soon" is not a time`}},
		} {
			t.Run(tt.name, func(t *testing.T) {
				w := newSocketWorld(t, false)
				w.r.DrainTimeout = tt.drain
				write(t, w.app, fmt.Appendf(nil, "upstream app {\n    server unix:%s;\n    %s\n}\n", w.link, tt.lines))
				w.s.Read()
				got := failed(w.s.Checks(t.Context()))["upstream keepalive bounded"]
				if tt.says == nil && got != "" {
					t.Errorf("keepalive check failed: %q", got)
				}
				for _, part := range tt.says {
					if !strings.Contains(got, part) {
						t.Errorf("keepalive check %q does not say %q", got, part)
					}
				}
			})
		}
	})
	t.Run("nginx -t only before the conversion", func(t *testing.T) {
		for _, tcp := range []bool{false, true} {
			w := newSocketWorld(t, tcp)
			w.s.Read()
			w.s.Checks(t.Context())
			if want := map[bool]int{false: 0, true: 1}[tcp]; w.run.tests != want {
				t.Errorf("converting %t: nginx -t ran %d times, want %d", tcp, w.run.tests, want)
			}
		}
	})
	t.Run("workers cannot reach the socket", func(t *testing.T) {
		w := newSocketWorld(t, false)
		w.workersRunAs(33)
		for _, dir := range []string{filepath.Dir(w.link), filepath.Dir(w.sockA)} {
			for ; dir != os.TempDir(); dir = filepath.Dir(dir) { // t.TempDir's are 0700
				if err := os.Chmod(dir, 0o755); err != nil {
					t.Fatal(err)
				}
			}
		}
		if got := failed(w.s.Checks(t.Context())); len(got) != 0 {
			t.Errorf("checks failed %v; want all to pass: temp dirs are searchable", got)
		}
		run := filepath.Dir(w.sockA)
		os.Chmod(run, 0o700)
		got := failed(w.s.Checks(t.Context()))["nginx can reach the sockets"]
		if !strings.Contains(got, "cannot search "+run) || !strings.Contains(got, "chmod o+x "+run) {
			t.Errorf("reach check with %s 0700: %q", run, got)
		}
		os.Chmod(run, 0o755)
		if err := os.Chmod(w.sockB, 0o600); err != nil {
			t.Fatal(err)
		}
		_, failed, err := w.steps(w.plan(w.sockB))
		wantErr(t, err, nil, "cannot connect to "+w.sockB, "mode 0666")
		if failed != "link" {
			t.Errorf("failed step %q", failed)
		}
		w.wantLink(w.sockA, "after a refused link")
	})
}

func TestSocketUpstreamFailuresAreTheLinksTarget(t *testing.T) {
	w := newSocketWorld(t, false)
	ch := w.plan(w.sockB)
	watchNew, watchOld := w.s.Watch(t.Context(), Unix(w.sockB)), w.s.Watch(t.Context(), Unix(w.sockA))
	if _, _, err := w.steps(ch); err != nil {
		t.Fatal(err)
	}
	w.appendLog(`2026/01/02 03:04:06 [error] 801#801: *3 upstream prematurely closed connection while reading response header from upstream, client: 127.0.0.1, server: , request: "GET / HTTP/1.1", upstream: "http://unix:` + w.link + `:/", host: "x"`)
	if n, _ := watchNew.Failures(); n != 1 {
		t.Errorf("failures of the new slot = %d, want 1", n)
	}
	if n, _ := watchOld.Failures(); n != 0 {
		t.Errorf("failures of the old slot = %d, want 0: the link no longer points at it", n)
	}
}

// TestSocketWatchStartsOnceTheOldSlotIsDrained: with upstream keepalive
// the old slot answers on nginx's cached connections after the link moves,
// and nginx logs those answers under the link too; the new slot's watch
// counts only what comes after the drain.
func TestSocketWatchStartsOnceTheOldSlotIsDrained(t *testing.T) {
	w := newSocketWorld(t, false)
	ch := w.plan(w.sockB)
	watch := w.s.Watch(t.Context(), Unix(w.sockB))
	if _, _, err := w.steps(ch); err != nil {
		t.Fatal(err)
	}
	failure := `2026/01/02 03:04:06 [error] 801#801: *3 upstream prematurely closed connection while reading response header from upstream, client: 127.0.0.1, server: , request: "GET / HTTP/1.1", upstream: "http://unix:` + w.link + `:/", host: "x"`
	w.appendLog(failure) // on a connection cached to the old slot
	if d := w.s.Drain(t.Context()); d.Left != 0 {
		t.Fatalf("drain: %+v", d)
	}
	if n, _ := watch.Failures(); n != 0 {
		t.Errorf("failures of the new slot after the drain = %d, want 0: the one before it was the old slot's", n)
	}
	w.appendLog(failure)
	if n, _ := watch.Failures(); n != 1 {
		t.Errorf("failures of the new slot = %d, want 1", n)
	}
}

// TestSocketResumedConversion: an earlier switch wrote the block to list
// the link and stopped before the reload took; told so, the plan reloads
// nginx again (the file needs no write).
func TestSocketResumedConversion(t *testing.T) {
	w := newSocketWorld(t, false) // the file lists the link already
	if _, err := w.s.Read(); err != nil {
		t.Fatal(err)
	}
	ch, err := w.s.Plan([]Backend{{Addr: Unix(w.sockA)}}, w.app)
	if err != nil {
		t.Fatal(err)
	}
	if got := stepNames(ch); !slices.Equal(got, []string{"link", "validate", "reload", "confirm"}) {
		t.Fatalf("steps %v; want the reload again", got)
	}
	if _, failed, err := w.steps(ch); err != nil {
		t.Fatalf("step %s: %v", failed, err)
	}
	w.wantReloads(1)
	w.wantFile(w.orig, "after the resumed conversion")
}

// TestSocketLinkStepFailsBeforeTheRename: nothing moved, so Revert has
// nothing to undo and does not fail.
func TestSocketLinkStepFailsBeforeTheRename(t *testing.T) {
	w := newSocketWorld(t, true)
	w.s = NewSocket(w.r.Nginx, "app", filepath.Join(t.TempDir(), "missing", "app.sock"), w.s.Slots)
	_, failed, err := w.steps(w.plan(w.sockB))
	if failed != "link" || err == nil {
		t.Fatalf("step %q failed with %v; want the link step to fail", failed, err)
	}
	if _, err := w.s.Revert(t.Context()); err != nil {
		t.Errorf("Revert after a link that never moved: %v", err)
	}
	w.wantReloads(0)
}

// TestSocketConversionGoesToTheOtherSlot: the slot the block lists by its
// port listens there, not on its socket: converting to it is refused.
func TestSocketConversionGoesToTheOtherSlot(t *testing.T) {
	w := newSocketWorld(t, true)
	if _, err := w.s.Read(); err != nil {
		t.Fatal(err)
	}
	_, err := w.s.Plan([]Backend{{Addr: Unix(w.sockA)}}, "")
	wantErr(t, err, nil, "lists that slot by its port", "switch to the other slot first")
}

func TestSocketLinkDirMustBeRoots(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the link's directory is checked when edgeswitch runs as root")
	}
	w := newSocketWorld(t, false)
	dir := filepath.Dir(w.link)
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	w.s.Read()
	for _, c := range w.s.Checks(t.Context()) {
		if c.Name == "socket-link's directory root's" {
			wantErr(t, c.Err, nil, "writable by group or others", "chmod go-w "+dir)
			return
		}
	}
	t.Error("no check of the link's directory")
}
