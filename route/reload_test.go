package route

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coreos/go-systemd/v22/dbus"
	godbus "github.com/godbus/dbus/v5"
	"github.com/google/go-cmp/cmp"

	"github.com/edgeswitch/edgeswitch/nginx"
	"github.com/edgeswitch/edgeswitch/upstream"
)

// The reload router against fakes of everything it touches: a config tree
// in a temp dir, nginx -t as a Runner, systemd as a Systemd, and /proc as a
// tree of <pid>/stat files. Each test starts from the same world: nginx.conf
// includes conf.d/app.conf, which lists slot 4000; the master (800) has two
// workers (801, 802); a reload asked of systemd starts a new generation of
// workers unless the test says otherwise.

var _ Systemd = (*dbus.Conn)(nil)

const (
	slotA    = "127.0.0.1:4000"
	slotB    = "127.0.0.1:4001"
	unit     = "nginx.service"
	masterID = 800
)

// appConf is the file that holds the upstream block: a comment before it,
// server parameters and another directive in it, so a byte-minimal edit
// has something to keep.
const appConf = `# the app's two slots; edgeswitch moves the server line
upstream app {
    server 127.0.0.1:4000 max_fails=0;
    keepalive 8;
}
`

// oldEmerg is in the error log before the reload: it must not be blamed on
// this one.
const (
	oldEmerg  = "2026/01/02 03:04:05 [emerg] 800#800: an old failure that is not this reload's"
	bindEmerg = "2026/01/02 03:14:15 [emerg] 800#800: bind() to 0.0.0.0:80 failed (98: Address already in use)"
	// nginx's last word once its five tries at the bind have failed.
	bindFinal = "2026/01/02 03:14:17 [emerg] 800#800: still could not bind()"
)

// fakeRunner is nginx for the Runner: -t passes, except on call failTest
// (counting -t calls from 1), where it answers like nginx refusing a config.
type fakeRunner struct {
	mu       sync.Mutex
	failTest int
	notFound bool   // the binary is missing
	version  string // what nginx -V prints
	dump     string // what nginx -T prints
	dumpErr  error  // and how it fails, if it does
	tests    int
	calls    []string
}

func (f *fakeRunner) run(ctx context.Context, name string, args ...string) ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, strings.Join(append([]string{name}, args...), " "))
	if f.notFound {
		return nil, fmt.Errorf("exec: %q: %w", name, exec.ErrNotFound)
	}
	if len(args) > 0 && args[0] == "-t" {
		f.tests++
		if f.tests == f.failTest {
			return []byte("nginx: [emerg] host not found in upstream \"app\" in /etc/nginx/nginx.conf:9\nnginx: configuration file /etc/nginx/nginx.conf test failed\n"),
				errors.New("exit status 1")
		}
	}
	if len(args) == 1 && args[0] == "-V" {
		return []byte(f.version), nil
	}
	if len(args) > 0 && args[0] == "-T" {
		return []byte(f.dump), f.dumpErr
	}
	return nil, nil
}

// fakeSystemd is a systemd manager with one unit, nginx.service. A reload
// runs onReload (n counts reloads from 1) and reports the job it returns
// on the channel ("" for none), or returns its error.
type fakeSystemd struct {
	mainPID  uint32
	state    string   // ActiveState
	then     []string // ActiveStates of later calls, in turn; state once they run out
	err      error    // returned by the property calls
	onReload func(n int) (job string, err error)
	reloads  int
	calls    []string
}

func (f *fakeSystemd) ReloadUnitContext(ctx context.Context, name string, mode string, ch chan<- string) (int, error) {
	f.calls = append(f.calls, "reload "+name+" "+mode)
	f.reloads++
	job, err := f.onReload(f.reloads)
	if err != nil {
		return 0, err
	}
	if job != "" {
		ch <- job
	}
	return f.reloads, nil
}

func (f *fakeSystemd) GetServicePropertyContext(ctx context.Context, unit string, propertyName string) (*dbus.Property, error) {
	f.calls = append(f.calls, "get "+unit+" "+propertyName)
	if f.err != nil {
		return nil, f.err
	}
	return &dbus.Property{Name: propertyName, Value: godbus.MakeVariant(f.mainPID)}, nil
}

func (f *fakeSystemd) GetUnitPropertiesContext(ctx context.Context, unit string) (map[string]interface{}, error) {
	f.calls = append(f.calls, "properties "+unit)
	if f.err != nil {
		return nil, f.err
	}
	state := f.state
	if len(f.then) > 0 {
		f.state, f.then = f.then[0], f.then[1:]
	}
	return map[string]interface{}{"Id": unit, "ActiveState": state}, nil
}

// fakeProc is a /proc tree. Every change is a rename or a removal, so that
// a reader polling it never sees a half-written stat file.
type fakeProc struct {
	t    *testing.T
	root string
}

func newFakeProc(t *testing.T) *fakeProc {
	t.Helper()
	p := &fakeProc{t: t, root: t.TempDir()}
	if err := os.Mkdir(filepath.Join(p.root, "self"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(p.root, "meminfo"), []byte("MemTotal: 1 kB\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// start adds a live process pid with parent ppid.
func (p *fakeProc) start(pid, ppid int) {
	p.t.Helper()
	dir := filepath.Join(p.root, strconv.Itoa(pid))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		p.t.Error(err)
		return
	}
	stat := fmt.Sprintf("%d (nginx) S %d %d %d 0 -1 4194624 105 0 0 0 1 2 0 0 20 0 1 0 3064 11235328 412 18446744073709551615\n", pid, ppid, pid, pid)
	tmp := filepath.Join(dir, ".stat.tmp")
	if err := os.WriteFile(tmp, []byte(stat), 0o644); err != nil {
		p.t.Error(err)
		return
	}
	if err := os.Rename(tmp, filepath.Join(dir, "stat")); err != nil {
		p.t.Error(err)
	}
}

// exit removes pid, as once its parent reaped it.
func (p *fakeProc) exit(pids ...int) {
	p.t.Helper()
	for _, pid := range pids {
		if err := os.RemoveAll(filepath.Join(p.root, strconv.Itoa(pid))); err != nil {
			p.t.Error(err)
		}
	}
}

// world is one switch's surroundings.
type world struct {
	t       *testing.T
	conf    string // nginx.conf
	app     string // conf.d/app.conf, which holds the block
	errLog  string
	orig    []byte // app.conf as written
	edited  []byte // app.conf listing slotB
	proc    *fakeProc
	sd      *fakeSystemd
	run     *fakeRunner
	r       *Reload
	gen     int   // generations started by reloads
	workers []int // the master's current workers
}

func newWorld(t *testing.T) *world {
	t.Helper()
	dir := t.TempDir()
	w := &world{t: t, errLog: filepath.Join(t.TempDir(), "error.log"), proc: newFakeProc(t), run: &fakeRunner{}}
	w.conf = filepath.Join(dir, "nginx.conf")
	w.app = filepath.Join(dir, "conf.d", "app.conf")
	w.orig = []byte(appConf)
	w.edited = []byte(strings.Replace(appConf, "127.0.0.1:4000", "127.0.0.1:4001", 1))
	mainConf := fmt.Sprintf(`error_log %s warn;
events {}
http {
    include conf.d/*.conf;
    server {
        listen 80;
        location / { proxy_pass http://app; }
    }
}
`, w.errLog)
	write(t, w.conf, []byte(mainConf))
	if err := os.Mkdir(filepath.Dir(w.app), 0o755); err != nil {
		t.Fatal(err)
	}
	write(t, w.app, w.orig)
	write(t, w.errLog, []byte(oldEmerg+"\n"))

	w.proc.start(700, 1) // not nginx
	w.proc.start(masterID, 1)
	w.workers = []int{801, 802}
	for _, pid := range w.workers {
		w.proc.start(pid, masterID)
	}
	w.sd = &fakeSystemd{mainPID: masterID, state: "active", onReload: func(int) (string, error) {
		w.newGeneration()
		return "done", nil
	}}
	w.r = &Reload{
		Nginx: &Nginx{
			NginxConf:     w.conf,
			NginxBin:      "nginx",
			NginxUnit:     unit,
			ReloadTimeout: 100 * time.Millisecond,
			DrainTimeout:  50 * time.Millisecond,
			Systemctl:     "systemctl",
			Systemd:       w.sd,
			Run:           w.run.run,
			Procs:         nginx.Procs{Root: w.proc.root},
		},
		Upstream: "app",
		Slots:    []Addr{TCP(slotA), TCP(slotB)},
	}
	return w
}

func write(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// newGeneration is what nginx does on a reload it accepts: new workers
// under the master. The old ones keep running until a test makes them
// exit, as draining workers do.
func (w *world) newGeneration() {
	w.gen++
	var fresh []int
	for i := 1; i <= 2; i++ {
		pid := 900 + 10*w.gen + i
		w.proc.start(pid, masterID)
		fresh = append(fresh, pid)
	}
	w.workers = fresh
}

// appendLog adds a line to nginx's error log, as the master does.
func (w *world) appendLog(line string) {
	f, err := os.OpenFile(w.errLog, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		w.t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(line + "\n"); err != nil {
		w.t.Fatal(err)
	}
}

// plan reads the block and plans the switch to slotB.
func (w *world) plan() *Change {
	w.t.Helper()
	if _, err := w.r.Read(); err != nil {
		w.t.Fatal(err)
	}
	ch, err := w.r.Plan([]Backend{{Addr: TCP(slotB)}}, "")
	if err != nil {
		w.t.Fatal(err)
	}
	return ch
}

// steps runs ch's steps in order until one fails, and returns the details
// of those that passed, the name of the one that failed and its error.
func (w *world) steps(ch *Change) (details []string, failed string, err error) {
	w.t.Helper()
	for _, s := range ch.Steps {
		detail, err := s.Do(w.t.Context())
		if err != nil {
			return details, s.Name, err
		}
		details = append(details, s.Name+": "+detail)
	}
	return details, "", nil
}

// wantFile fails the test unless the block's file holds want.
func (w *world) wantFile(want []byte, when string) {
	w.t.Helper()
	got, err := os.ReadFile(w.app)
	if err != nil {
		w.t.Fatalf("%s: %v", when, err)
	}
	if !bytes.Equal(got, want) {
		w.t.Errorf("%s: %s holds (-want +got):\n%s", when, w.app, cmp.Diff(string(want), string(got)))
	}
	w.noTempFiles()
}

// noTempFiles fails the test if an atomic write left its temp file behind
// in conf.d, where nginx's include glob would not see it but people would.
func (w *world) noTempFiles() {
	w.t.Helper()
	entries, err := os.ReadDir(filepath.Dir(w.app))
	if err != nil {
		return
	}
	for _, e := range entries {
		if e.Name() != "app.conf" {
			w.t.Errorf("%s left in conf.d", e.Name())
		}
	}
}

// wantReloads fails the test unless systemd was asked for n reloads.
func (w *world) wantReloads(n int) {
	w.t.Helper()
	if w.sd.reloads != n {
		w.t.Errorf("%d reloads asked of systemd, want %d (calls %q)", w.sd.reloads, n, w.sd.calls)
	}
}

// wantTests fails the test unless nginx -t ran n times, always on the main
// config.
func (w *world) wantTests(n int) {
	w.t.Helper()
	var want []string
	for range n {
		want = append(want, "nginx -t -q -c "+w.conf)
	}
	if diff := cmp.Diff(want, w.run.calls); diff != "" {
		w.t.Errorf("nginx runs (-want +got):\n%s", diff)
	}
}

// wantErr fails the test unless err wraps is (when not nil) and holds
// every part.
func wantErr(t *testing.T, err, is error, parts ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want one with %q", parts)
	}
	if is != nil && !errors.Is(err, is) {
		t.Errorf("error %q does not wrap %q", err, is)
	}
	for _, part := range parts {
		if !strings.Contains(err.Error(), part) {
			t.Errorf("error %q does not contain %q", err, part)
		}
	}
}

func TestRead(t *testing.T) {
	t.Run("the block is found through the include", func(t *testing.T) {
		w := newWorld(t)
		got, err := w.r.Read()
		if err != nil {
			t.Fatal(err)
		}
		want := Listing{File: w.app, Line: 2, Addrs: []Addr{TCP(slotA)}}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("listing (-want +got):\n%s", diff)
		}
	})
	t.Run("an upstream that is not there names the ones that are", func(t *testing.T) {
		w := newWorld(t)
		w.r.Upstream = "api"
		got, err := w.r.Read()
		wantErr(t, err, upstream.ErrNotFound, "no upstream api in "+w.conf, "found: app")
		if diff := cmp.Diff(Listing{}, got); diff != "" {
			t.Errorf("listing (-want +got):\n%s", diff)
		}
	})
}

func TestChecks(t *testing.T) {
	tests := []struct {
		name    string
		prepare func(w *world)
		testIs  error
		test    []string // parts of the nginx -t check's error
		noHint  bool     // nginx -t fails for another reason than the config
		unit    string   // the unit check's whole error
	}{
		{
			name: "a valid config and an active unit pass",
		},
		{
			name:    "an invalid config is fixed first",
			prepare: func(w *world) { w.run.failTest = 1 },
			testIs:  nginx.ErrInvalid,
			test:    []string{`[emerg] host not found in upstream "app"`, "; fix the config first, edgeswitch changes nothing while nginx -t fails"},
		},
		{
			name:    "a missing nginx is not called an invalid config",
			prepare: func(w *world) { w.run.notFound = true },
			testIs:  exec.ErrNotFound,
			test:    []string{"set nginx-bin"},
			noHint:  true,
		},
		{
			name:    "an inactive unit is started by hand, with the systemctl of its manager",
			prepare: func(w *world) { w.sd.state, w.r.Systemctl = "inactive", "systemctl --user" },
			unit:    "nginx.service is inactive; edgeswitch never starts nginx: start it (systemctl --user start nginx.service), then switch",
		},
		{
			name:    "a unit that another switch is reloading is waited for",
			prepare: func(w *world) { w.sd.state, w.sd.then = "reloading", []string{"reloading", "active"} },
		},
		{
			name: "a reload that does not end within reload-timeout is named as such, not as a stopped nginx",
			prepare: func(w *world) {
				w.sd.state, w.r.ReloadTimeout, w.r.Systemctl = "reloading", 50*time.Millisecond, "systemctl --user"
			},
			unit: "nginx.service is still reloading after 50ms (reload-timeout); see systemctl --user status nginx.service, and switch once it says active",
		},
		{
			name:    "a starting unit is not started again",
			prepare: func(w *world) { w.sd.state, w.r.Systemctl = "activating", "systemctl" },
			unit:    "nginx.service is starting; switch once systemctl status nginx.service says active",
		},
		{
			name:    "a stopping unit is started once it has stopped",
			prepare: func(w *world) { w.sd.state, w.r.Systemctl = "deactivating", "systemctl" },
			unit:    "nginx.service is stopping; edgeswitch never starts nginx: once it has stopped, start it (systemctl start nginx.service), then switch",
		},
		{
			name:    "a unit whose state cannot be read says why",
			prepare: func(w *world) { w.sd.err = errors.New("connection closed") },
			unit:    "state of nginx.service: connection closed",
		},
		{
			name:    "without D-Bus the unit cannot be checked",
			prepare: func(w *world) { w.r.Systemd = nil },
			unit:    "D-Bus not reachable",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newWorld(t)
			if tt.prepare != nil {
				tt.prepare(w)
			}
			checks := w.r.Checks(t.Context())
			if len(checks) != 2 {
				t.Fatalf("got %d checks, want 2: %+v", len(checks), checks)
			}
			test, active := checks[0], checks[1]
			if test.Name != "nginx -t" || test.OK != w.conf+" ok" {
				t.Errorf("nginx -t check is %q, %q", test.Name, test.OK)
			}
			if active.Name != "nginx.service active" || active.OK != "active" {
				t.Errorf("unit check is %q, %q", active.Name, active.OK)
			}
			if tt.test == nil {
				if test.Err != nil {
					t.Errorf("nginx -t: %v", test.Err)
				}
			} else {
				wantErr(t, test.Err, tt.testIs, tt.test...)
				if hint := "fix the config first"; tt.noHint && strings.Contains(test.Err.Error(), hint) {
					t.Errorf("error %q says %q", test.Err, hint)
				}
			}
			if tt.unit == "" {
				if active.Err != nil {
					t.Errorf("unit: %v", active.Err)
				}
			} else if active.Err == nil || active.Err.Error() != tt.unit {
				t.Errorf("unit check error %v, want %q", active.Err, tt.unit)
			}
			w.wantReloads(0) // checks never act
			w.wantFile(w.orig, "after the checks")
		})
	}
}

func TestPlan(t *testing.T) {
	t.Run("the change is shown as a diff and nothing is touched", func(t *testing.T) {
		w := newWorld(t)
		ch := w.plan()
		if ch.File != w.app || !ch.Changed {
			t.Errorf("change of %s, changed %v; want %s, true", ch.File, ch.Changed, w.app)
		}
		for _, line := range []string{
			"--- " + w.app + "\n",
			"+++ " + w.app + "\n",
			"-    server 127.0.0.1:4000 max_fails=0;\n",
			"+    server 127.0.0.1:4001 max_fails=0;\n",
			"     keepalive 8;\n",
		} {
			if !strings.Contains(ch.Diff, line) {
				t.Errorf("diff does not contain %q:\n%s", line, ch.Diff)
			}
		}
		var steps []string
		for _, s := range ch.Steps {
			steps = append(steps, fmt.Sprintf("%s whole=%v", s.Name, s.Whole))
		}
		if diff := cmp.Diff([]string{"validate whole=false", "reload whole=true", "confirm whole=true"}, steps); diff != "" {
			t.Errorf("steps (-want +got):\n%s", diff)
		}
		w.wantFile(w.orig, "after Plan")
		w.wantTests(0)
		w.wantReloads(0)
	})
	t.Run("a block that lists only the target stays as it is", func(t *testing.T) {
		w := newWorld(t)
		if _, err := w.r.Read(); err != nil {
			t.Fatal(err)
		}
		ch, err := w.r.Plan([]Backend{{Addr: TCP(slotA)}}, "")
		if err != nil {
			t.Fatal(err)
		}
		if ch.Changed || ch.Diff != "" || ch.File != w.app {
			t.Errorf("change of %s, changed %v, diff %q; want %s unchanged", ch.File, ch.Changed, ch.Diff, w.app)
		}
		detail, err := ch.Steps[0].Do(t.Context())
		if err != nil || detail != "unchanged" {
			t.Errorf("validate: %q, %v; want unchanged", detail, err)
		}
		if _, err := w.r.Revert(t.Context()); err != nil {
			t.Errorf("revert: %v", err)
		}
		w.wantFile(w.orig, "after validate and Revert")
		w.wantTests(0)
	})
	t.Run("no backend is refused", func(t *testing.T) {
		w := newWorld(t)
		if _, err := w.r.Read(); err != nil {
			t.Fatal(err)
		}
		ch, err := w.r.Plan(nil, "")
		wantErr(t, err, nil, "upstream app: a plan lists at least one slot")
		if ch != nil {
			t.Errorf("got change %+v", ch)
		}
	})
	t.Run("a canary then the new slot alone: two plans of one switch, one revert", func(t *testing.T) {
		w := newWorld(t)
		if _, err := w.r.Read(); err != nil {
			t.Fatal(err)
		}
		canary, err := w.r.Plan([]Backend{{Addr: TCP(slotA), Weight: 90}, {Addr: TCP(slotB), Weight: 10}}, "")
		if err != nil {
			t.Fatal(err)
		}
		alone, err := w.r.Plan([]Backend{{Addr: TCP(slotB)}}, "")
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(canary.Diff, "+    server 127.0.0.1:4001 weight=10;") || !strings.Contains(alone.Diff, "+    server 127.0.0.1:4001 max_fails=0;") {
			t.Errorf("diffs:\n%s\n%s", canary.Diff, alone.Diff)
		}
		if _, failed, err := w.steps(canary); err != nil {
			t.Fatalf("canary step %s: %v", failed, err)
		}
		w.wantFile([]byte(strings.Replace(appConf, "127.0.0.1:4000 max_fails=0;", "127.0.0.1:4000 weight=90 max_fails=0;\n    server 127.0.0.1:4001 weight=10;", 1)), "with the canary")
		if _, failed, err := w.steps(alone); err != nil {
			t.Fatalf("step %s: %v", failed, err)
		}
		w.wantFile([]byte(strings.Replace(appConf, "127.0.0.1:4000 max_fails=0;", "127.0.0.1:4001 max_fails=0;", 1)), "with the new slot alone, as a plain switch leaves it")
		if _, err := w.r.Revert(t.Context()); err != nil {
			t.Fatalf("revert: %v", err)
		}
		w.wantFile(w.orig, "after Revert")
	})
	t.Run("a target that is not a slot is refused", func(t *testing.T) {
		w := newWorld(t)
		if _, err := w.r.Read(); err != nil {
			t.Fatal(err)
		}
		_, err := w.r.Plan([]Backend{{Addr: TCP("127.0.0.1:5000")}}, "")
		wantErr(t, err, upstream.ErrTarget)
	})
}

func TestSwitch(t *testing.T) {
	t.Run("the new config is written, tested, reloaded and confirmed", func(t *testing.T) {
		w := newWorld(t)
		ch := w.plan()
		details, failed, err := w.steps(ch)
		if err != nil {
			t.Fatalf("step %s: %v", failed, err)
		}
		want := []string{
			"validate: nginx -t ok",
			"reload: nginx.service (master 800, 2 workers)",
			"confirm: 2 new workers",
		}
		if diff := cmp.Diff(want, details); diff != "" {
			t.Errorf("step details (-want +got):\n%s", diff)
		}
		w.wantFile(w.edited, "after the switch")
		w.wantTests(1)
		w.wantReloads(1)
		if diff := cmp.Diff([]string{"get nginx.service MainPID", "reload nginx.service replace"}, w.sd.calls); diff != "" {
			t.Errorf("systemd calls (-want +got):\n%s", diff)
		}

		// The old workers finish their requests a little later.
		w.r.DrainTimeout = 5 * time.Second
		done := make(chan struct{})
		go func() {
			defer close(done)
			time.Sleep(30 * time.Millisecond)
			w.proc.exit(801, 802)
		}()
		start := time.Now()
		d := w.r.Drain(t.Context())
		<-done
		if !strings.HasPrefix(d.Detail, "2 old workers gone after ") || d.Left != 0 || d.Warn != "" {
			t.Errorf("drain = %+v, want 2 old workers gone after some time", d)
		}
		if elapsed := time.Since(start); elapsed > 2*time.Second {
			t.Errorf("drain took %s, want about 30ms", elapsed)
		}
		w.wantTests(1) // a quick drain never runs nginx -T
		w.wantReloads(1)
		w.wantFile(w.edited, "after the drain")
	})

	t.Run("an old worker that never exits is reported after the drain timeout", func(t *testing.T) {
		w := newWorld(t)
		if _, failed, err := w.steps(w.plan()); err != nil {
			t.Fatalf("step %s: %v", failed, err)
		}
		w.proc.exit(801)
		w.conns(2)
		d := w.r.Drain(t.Context())
		want := Drained{
			Detail: "1 of 2 old workers still running after drain-timeout 50ms",
			Left:   2,
			Warn:   "2 connections still open to 127.0.0.1:4000 (streams or long requests held by old nginx workers); stopping the slot now cuts them; without worker_shutdown_timeout, old nginx workers keep streams open until they end (setting it bounds that)",
		}
		if diff := cmp.Diff(want, d); diff != "" {
			t.Errorf("drain (-want +got):\n%s", diff)
		}
	})

	t.Run("a file changed by someone else after Plan is left to them", func(t *testing.T) {
		w := newWorld(t)
		ch := w.plan()
		theirs := []byte(strings.Replace(appConf, "keepalive 8", "keepalive 16", 1))
		write(t, w.app, theirs)
		_, failed, err := w.steps(ch)
		if failed != "validate" {
			t.Fatalf("step %q failed, want validate", failed)
		}
		wantErr(t, err, nil, w.app+" changed while the new slot started", "run the switch again")
		w.wantFile(theirs, "after validate")
		if _, err := w.r.Revert(t.Context()); err != nil {
			t.Errorf("revert: %v", err)
		}
		w.wantFile(theirs, "after Revert")
		w.wantTests(0)
		w.wantReloads(0)
	})

	t.Run("a file removed after Plan is not written back", func(t *testing.T) {
		w := newWorld(t)
		ch := w.plan()
		if err := os.Remove(w.app); err != nil {
			t.Fatal(err)
		}
		_, _, err := w.steps(ch)
		wantErr(t, err, nil, w.app+" changed while the new slot started (open "+w.app+": no such file or directory)")
		if _, err := w.r.Revert(t.Context()); err != nil {
			t.Errorf("revert: %v", err)
		}
		if _, err := os.Stat(w.app); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("after Revert %s: %v, want it still gone", w.app, err)
		}
		w.wantReloads(0)
	})

	t.Run("a config nginx -t refuses is restored and never reloaded", func(t *testing.T) {
		w := newWorld(t)
		w.run.failTest = 2 // the checks pass on the old config, the new one fails
		for _, c := range w.r.Checks(t.Context()) {
			if c.Err != nil {
				t.Fatalf("check %s: %v", c.Name, c.Err)
			}
		}
		_, failed, err := w.steps(w.plan())
		if failed != "validate" {
			t.Fatalf("step %q failed, want validate", failed)
		}
		wantErr(t, err, nginx.ErrInvalid, `host not found in upstream "app"`)
		w.wantFile(w.edited, "after validate") // nginx -t ran on the new bytes
		if _, err := w.r.Revert(t.Context()); err != nil {
			t.Fatalf("revert: %v", err)
		}
		w.wantFile(w.orig, "after Revert")
		w.wantTests(2)
		w.wantReloads(0)
		if _, err := w.r.Revert(t.Context()); err != nil {
			t.Errorf("second revert: %v", err)
		}
		w.wantFile(w.orig, "after a second Revert")
	})

	for _, tt := range []struct {
		name   string
		reload func(n int) (string, error)
		is     error
		msg    string
	}{
		{
			name:   "a reload systemd refuses",
			reload: func(int) (string, error) { return "", errors.New("Unit nginx.service not loaded.") },
			is:     nginx.ErrReload,
			msg:    "nginx reload failed: nginx.service: Unit nginx.service not loaded.",
		},
		{
			name:   "a reload job that fails",
			reload: func(int) (string, error) { return "failed", nil },
			is:     nginx.ErrReload,
			msg:    "nginx reload failed: nginx.service: job failed",
		},
		{
			name:   "a reload job that never reports",
			reload: func(int) (string, error) { return "", nil },
			is:     context.DeadlineExceeded,
			msg:    "reload nginx.service: waiting for the job: context deadline exceeded",
		},
	} {
		t.Run(tt.name+" without a new generation is undone without a second reload", func(t *testing.T) {
			w := newWorld(t)
			w.sd.onReload = tt.reload
			_, failed, err := w.steps(w.plan())
			if failed != "reload" {
				t.Fatalf("step %q failed, want reload", failed)
			}
			wantErr(t, err, tt.is, tt.msg)
			if _, err := w.r.Revert(t.Context()); err != nil {
				t.Fatalf("revert: %v", err)
			}
			w.wantFile(w.orig, "after Revert")
			w.wantReloads(1)
		})
	}

	t.Run("a reload nginx rejects fails at its emerg line, long before the timeout", func(t *testing.T) {
		w := newWorld(t)
		w.r.ReloadTimeout = time.Minute
		w.sd.onReload = func(int) (string, error) {
			w.appendLog("2026/01/02 03:14:15 [notice] 800#800: signal process started")
			w.appendLog(bindEmerg)
			w.appendLog(bindFinal)
			w.appendLog("2026/01/02 03:14:15 [notice] 800#800: signal 1 (SIGHUP) received, reconfiguring")
			return "done", nil // systemd delivered the signal; the master keeps its workers
		}
		start := time.Now()
		_, failed, err := w.steps(w.plan())
		if failed != "confirm" {
			t.Fatalf("step %q failed, want confirm", failed)
		}
		// Bounded, not timed: a poll or two, far from the minute of the timeout.
		if elapsed := time.Since(start); elapsed > 30*time.Second {
			t.Errorf("confirm gave up after %s; nginx's refusal was in the log from the start", elapsed)
		}
		wantErr(t, err, nginx.ErrRejected, "nginx did not apply the new config: "+bindFinal+" (see "+w.errLog+")")
		if strings.Contains(err.Error(), oldEmerg) {
			t.Errorf("error %q blames the line from before the reload", err)
		}
		if _, err := w.r.Revert(t.Context()); err != nil {
			t.Fatalf("revert: %v", err)
		}
		w.wantFile(w.orig, "after Revert")
		w.wantReloads(1)
		// The error log came from the config: nginx -V was not needed.
		w.wantTests(1)
	})

	t.Run("a rejected reload finds the error log from nginx -V when the config names none", func(t *testing.T) {
		w := newWorld(t)
		conf, err := os.ReadFile(w.conf)
		if err != nil {
			t.Fatal(err)
		}
		_, rest, _ := bytes.Cut(conf, []byte("\n"))
		write(t, w.conf, rest)
		w.run.version = "nginx version: nginx/1.26.3\nconfigure arguments: --prefix=/usr/share/nginx --error-log-path=" + w.errLog + " --with-threads\n"
		w.sd.onReload = func(int) (string, error) {
			w.appendLog(bindEmerg)
			w.appendLog(bindFinal)
			return "done", nil
		}
		_, _, err = w.steps(w.plan())
		wantErr(t, err, nginx.ErrRejected, ": "+bindFinal+" (see "+w.errLog+")")
		if diff := cmp.Diff([]string{"nginx -t -q -c " + w.conf, "nginx -V"}, w.run.calls); diff != "" {
			t.Errorf("nginx runs (-want +got):\n%s", diff)
		}
		if _, err := w.r.Revert(t.Context()); err != nil {
			t.Fatalf("revert: %v", err)
		}
		w.wantFile(w.orig, "after Revert")
		w.wantReloads(1)
	})

	t.Run("a rejected reload without an emerg line points at the log", func(t *testing.T) {
		w := newWorld(t)
		w.sd.onReload = func(int) (string, error) { return "done", nil }
		_, _, err := w.steps(w.plan())
		wantErr(t, err, nginx.ErrRejected, "nginx did not apply the new config: no new workers under master 800 after 100ms (see "+w.errLog+")")
		if _, err := w.r.Revert(t.Context()); err != nil {
			t.Fatalf("revert: %v", err)
		}
		w.wantFile(w.orig, "after Revert")
		w.wantReloads(1)
	})

	t.Run("a master that exits during the reload fails the confirm", func(t *testing.T) {
		w := newWorld(t)
		w.sd.onReload = func(int) (string, error) {
			w.proc.exit(801, 802, masterID)
			return "done", nil
		}
		_, failed, err := w.steps(w.plan())
		if failed != "confirm" {
			t.Fatalf("step %q failed, want confirm", failed)
		}
		wantErr(t, err, nginx.ErrNotActive, "nginx master 800 exited during the reload")
		if errors.Is(err, nginx.ErrRejected) {
			t.Errorf("error %q says nginx rejected the config", err)
		}
		if _, err := w.r.Revert(t.Context()); err != nil {
			t.Fatalf("revert: %v", err)
		}
		w.wantFile(w.orig, "after Revert")
	})

	t.Run("a switch undone after nginx took the new config is reloaded back", func(t *testing.T) {
		w := newWorld(t)
		if _, failed, err := w.steps(w.plan()); err != nil {
			t.Fatalf("step %s: %v", failed, err)
		}
		w.wantFile(w.edited, "after the steps")
		// Something later in the switch failed: the caller reverts.
		if _, err := w.r.Revert(t.Context()); err != nil {
			t.Fatalf("revert: %v", err)
		}
		w.wantFile(w.orig, "after Revert")
		w.wantReloads(2)
		if _, err := w.r.Revert(t.Context()); err != nil {
			t.Errorf("second revert: %v", err)
		}
		w.wantReloads(2)
	})

	t.Run("a reload that failed after nginx started new workers is reloaded back", func(t *testing.T) {
		w := newWorld(t)
		w.sd.onReload = func(n int) (string, error) {
			w.newGeneration()
			if n == 1 {
				return "failed", nil
			}
			return "done", nil
		}
		_, failed, err := w.steps(w.plan())
		if failed != "reload" {
			t.Fatalf("step %q failed, want reload", failed)
		}
		wantErr(t, err, nginx.ErrReload)
		if _, err := w.r.Revert(t.Context()); err != nil {
			t.Fatalf("revert: %v", err)
		}
		w.wantFile(w.orig, "after Revert")
		w.wantReloads(2)
	})

	t.Run("nginx that cannot be looked at after the reload is reloaded back", func(t *testing.T) {
		w := newWorld(t)
		if _, failed, err := w.steps(w.plan()); err != nil {
			t.Fatalf("step %s: %v", failed, err)
		}
		if err := os.RemoveAll(w.proc.root); err != nil {
			t.Fatal(err)
		}
		if _, err := w.r.Revert(t.Context()); err != nil {
			t.Fatalf("revert: %v", err)
		}
		w.wantFile(w.orig, "after Revert")
		w.wantReloads(2)
	})

	t.Run("a failed reload back says nginx may run the new config", func(t *testing.T) {
		w := newWorld(t)
		w.sd.onReload = func(n int) (string, error) {
			if n == 1 {
				w.newGeneration()
				return "done", nil
			}
			return "failed", nil
		}
		if _, failed, err := w.steps(w.plan()); err != nil {
			t.Fatalf("step %s: %v", failed, err)
		}
		_, err := w.r.Revert(t.Context())
		wantErr(t, err, nginx.ErrReload, "nginx may be running the new config and reloading it back failed")
		w.wantFile(w.orig, "after Revert")
		w.wantReloads(2)
	})

	t.Run("a file that cannot be restored after nginx took it says so", func(t *testing.T) {
		w := newWorld(t)
		if _, failed, err := w.steps(w.plan()); err != nil {
			t.Fatalf("step %s: %v", failed, err)
		}
		// Root may write anywhere: a directory that is gone cannot be
		// written to by anyone.
		if err := os.RemoveAll(filepath.Dir(w.app)); err != nil {
			t.Fatal(err)
		}
		_, err := w.r.Revert(t.Context())
		wantErr(t, err, os.ErrNotExist, "nginx may be running the new config and "+w.app+" could not be restored")
		w.wantReloads(1) // not reloaded onto a file that still lists the new slot
	})

	t.Run("a file that cannot be restored before nginx took it says so", func(t *testing.T) {
		w := newWorld(t)
		w.run.failTest = 1
		if _, failed, _ := w.steps(w.plan()); failed != "validate" {
			t.Fatalf("step %q failed, want validate", failed)
		}
		if err := os.RemoveAll(filepath.Dir(w.app)); err != nil {
			t.Fatal(err)
		}
		_, err := w.r.Revert(t.Context())
		wantErr(t, err, os.ErrNotExist, "restore "+w.app+": ", "nginx still runs the old config, but the file lists the new slot")
		w.wantReloads(0)
	})

	// What stops the reload step before the reload is asked: the file is
	// restored and nothing is reloaded.
	for _, tt := range []struct {
		name  string
		setup func(w *world)
		is    error
		says  []string
	}{
		{"a master without workers in /proc cannot be confirmed",
			func(w *world) { w.proc.exit(801, 802) }, // as hidepid=2 hides them from a non-root user
			nginx.ErrNotActive, []string{"nginx master 800 shows no workers in /proc (mounted with hidepid?)", "run edgeswitch as root"}},
		{"a unit without a main process is not reloaded",
			func(w *world) { w.sd.mainPID = 0 },
			nginx.ErrNotActive, []string{"nginx.service has no main process"}},
		{"a /proc that cannot be read stops the reload before it is asked",
			func(w *world) { w.r.Procs.Root = filepath.Join(w.proc.root, "missing") },
			os.ErrNotExist, []string{"list processes"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			w := newWorld(t)
			tt.setup(w)
			_, failed, err := w.steps(w.plan())
			if failed != "reload" {
				t.Fatalf("step %q failed, want reload", failed)
			}
			wantErr(t, err, tt.is, tt.says...)
			if _, err := w.r.Revert(t.Context()); err != nil {
				t.Fatalf("revert: %v", err)
			}
			w.wantFile(w.orig, "after Revert")
			w.wantReloads(0)
		})
	}

	t.Run("Revert before any step changes nothing", func(t *testing.T) {
		w := newWorld(t)
		w.plan()
		if _, err := w.r.Revert(t.Context()); err != nil {
			t.Fatalf("revert: %v", err)
		}
		w.wantFile(w.orig, "after Revert")
		w.wantTests(0)
		w.wantReloads(0)
	})
}

// TestAChangeElsewhereInTheFileIsKept: another writer (another app's
// switch, whose upstream is in the same file) changed the file after Plan.
// validate makes the edit again on the file as it is, and Revert undoes
// only this switch's own edit: their change stays both times.
func TestAChangeElsewhereInTheFileIsKept(t *testing.T) {
	w := newWorld(t)
	ch := w.plan()
	theirs := appConf + "upstream api { server 127.0.0.1:5000; }\n"
	write(t, w.app, []byte(theirs))
	if _, err := ch.Steps[0].Do(t.Context()); err != nil {
		t.Fatalf("validate on a file changed elsewhere: %v", err)
	}
	w.wantFile([]byte(strings.Replace(theirs, "127.0.0.1:4000 max_fails", "127.0.0.1:4001 max_fails", 1)), "after validate")
	if _, err := w.r.Revert(t.Context()); err != nil {
		t.Fatalf("revert: %v", err)
	}
	w.wantFile([]byte(theirs), "after Revert")

	// Their block changed too after the write: it is theirs to mend.
	w = newWorld(t)
	ch = w.plan()
	if _, err := ch.Steps[0].Do(t.Context()); err != nil {
		t.Fatal(err)
	}
	now, _ := os.ReadFile(w.app)
	touched := strings.Replace(string(now), "keepalive 8", "keepalive 16", 1)
	write(t, w.app, []byte(touched))
	if _, err := w.r.Revert(t.Context()); err == nil || !strings.Contains(err.Error(), "changed by someone else") {
		t.Errorf("revert over someone's change to the block = %v, want it refused", err)
	}
	w.wantFile([]byte(touched), "after the refused Revert")
}

// TestAnswersCountTheNewSlotsFromTheAccessLog: a bake's 5xx watch counts
// the answers logged after its first look, per slot, where an access log
// records $upstream_addr and $upstream_status; none such, no count.
func TestAnswersCountTheNewSlotsFromTheAccessLog(t *testing.T) {
	w := newWorld(t)
	if total, bad := w.r.Watch(t.Context(), TCP(slotB)).Answers(); total != 0 || bad != 0 {
		t.Errorf("Answers without an access log that records upstreams = %d, %d; want 0, 0", total, bad)
	}
	log := filepath.Join(t.TempDir(), "access.log")
	line := func(addr, status string) string {
		return `127.0.0.1 [25/Nov/2026:02:00:00 +0000] "GET / HTTP/1.1" ` + status + " " + addr + " " + status + " 0.001\n"
	}
	write(t, log, []byte(line(slotB, "500"))) // before the first look: not counted
	w = newWorld(t)
	w.run.dump = "# configuration file " + w.conf + ":\nhttp {\n" +
		`log_format edgeswitch '$remote_addr [$time_local] "$request" $status $upstream_addr $upstream_status $request_time';` + "\n" +
		"access_log " + log + " edgeswitch;\n}\n"
	watch := w.r.Watch(t.Context(), TCP(slotB))
	if total, _ := watch.Answers(); total != 0 {
		t.Errorf("first look counted %d answers from before it", total)
	}
	f, err := os.OpenFile(log, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(line(slotB, "200") + line(slotB, "502") + line(slotA, "500") + line(slotB, "200"))
	f.Close()
	if total, bad := watch.Answers(); total != 3 || bad != 1 {
		t.Errorf("Answers(%s) = %d, %d; want 3 answers, 1 of them 5xx", slotB, total, bad)
	}
}

// TestDrain: how a drain that does not end at once is told. The world's
// old workers (801, 802) stay unless a case makes them exit; conns are the
// connections open to slot A (the old one), in the temp /proc's tables.
func TestDrain(t *testing.T) {
	for _, tt := range []struct {
		name    string
		prepare func(w *world)
		cancel  bool // the wait is cut short
		want    Drained
		dumped  bool // nginx -T ran
	}{
		{
			name:    "a connection an old worker holds is counted and its cut is foretold",
			prepare: func(w *world) { w.conns(1) },
			want: Drained{
				Detail: "2 of 2 old workers still running after drain-timeout 50ms",
				Left:   1,
				Warn:   "1 connection still open to 127.0.0.1:4000 (a stream or long request held by an old nginx worker); stopping the slot now cuts it; without worker_shutdown_timeout, old nginx workers keep streams open until they end (setting it bounds that)",
			},
			dumped: true,
		},
		{
			name: "one old worker",
			prepare: func(w *world) {
				w.proc.exit(802) // before the reload
				w.conns(1)
			},
			want: Drained{
				Detail: "1 old worker still running after drain-timeout 50ms",
				Left:   1,
				Warn:   "1 connection still open to 127.0.0.1:4000 (a stream or long request held by an old nginx worker); stopping the slot now cuts it; without worker_shutdown_timeout, old nginx workers keep streams open until they end (setting it bounds that)",
			},
			dumped: true,
		},
		{
			name: "a worker_shutdown_timeout longer than drain-timeout is named",
			prepare: func(w *world) {
				w.conns(3)
				w.run.dump = "# configuration file " + w.conf + ":\nworker_shutdown_timeout 1m;\nevents {}\n"
			},
			want: Drained{
				Detail: "2 of 2 old workers still running after drain-timeout 50ms",
				Left:   3,
				Warn:   "3 connections still open to 127.0.0.1:4000 (streams or long requests held by old nginx workers); stopping the slot now cuts them; worker_shutdown_timeout 1m is longer than drain-timeout 50ms",
			},
			dumped: true,
		},
		{
			name: "old workers that outlive a shorter worker_shutdown_timeout are told",
			prepare: func(w *world) {
				w.conns(1)
				w.run.dump = "# configuration file " + w.conf + ":\nworker_shutdown_timeout 10ms;\nevents {}\n"
			},
			want: Drained{
				Detail: "2 of 2 old workers still running after drain-timeout 50ms",
				Left:   1,
				Warn:   "1 connection still open to 127.0.0.1:4000 (a stream or long request held by an old nginx worker); stopping the slot now cuts it; the old workers outlived worker_shutdown_timeout 10ms",
			},
			dumped: true,
		},
		{
			name: "an nginx -T that fails leaves worker_shutdown_timeout unsaid",
			prepare: func(w *world) {
				w.conns(1)
				w.run.dumpErr = errors.New("exit status 1")
			},
			want: Drained{
				Detail: "2 of 2 old workers still running after drain-timeout 50ms",
				Left:   1,
				Warn:   "1 connection still open to 127.0.0.1:4000 (a stream or long request held by an old nginx worker); stopping the slot now cuts it",
			},
			dumped: true,
		},
		{
			name:    "old workers with no connection to the old slot leave nothing to cut",
			prepare: func(w *world) { w.conns(0) },
			want:    Drained{Detail: "2 of 2 old workers still running after drain-timeout 50ms, no connection open to 127.0.0.1:4000"},
			dumped:  true,
		},
		{
			name: "a socket table that cannot be read counts the old workers instead",
			want: Drained{
				Detail: "2 of 2 old workers still running after drain-timeout 50ms",
				Left:   2,
				Warn:   "2 old nginx workers may still proxy to 127.0.0.1:4000 (the connections could not be counted: count connections to 127.0.0.1:4000: open PROC/net/tcp: no such file or directory); stopping the slot now may cut a request; without worker_shutdown_timeout, old nginx workers keep streams open until they end (setting it bounds that)",
			},
			dumped: true,
		},
		{
			name:    "a rerun whose file listed the new slot already: the old workers are what is known",
			prepare: func(w *world) { write(t, w.app, w.edited) },
			want: Drained{
				Detail: "2 of 2 old workers still running after drain-timeout 50ms",
				Left:   2,
				Warn:   "2 old nginx workers may still proxy to the slot that lost the traffic; stopping it now may cut a request",
			},
			dumped: true,
		},
		{
			name: "drain-timeout 0: no wait, and no nginx -T to delay the stop",
			prepare: func(w *world) {
				w.conns(1)
				w.r.DrainTimeout = 0
			},
			want: Drained{
				Detail: "2 of 2 old workers still running after drain-timeout 0s",
				Left:   1,
				Warn:   "1 connection still open to 127.0.0.1:4000 (a stream or long request held by an old nginx worker); stopping the slot now cuts it",
			},
		},
		{
			name:    "a wait cut short says so",
			prepare: func(w *world) { w.conns(1) },
			cancel:  true,
			want: Drained{
				Detail: "2 of 2 old workers still running when the wait was cut short after T",
				Left:   1,
				Warn:   "1 connection still open to 127.0.0.1:4000 (a stream or long request held by an old nginx worker); stopping the slot now cuts it",
			},
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			w := newWorld(t)
			if tt.prepare != nil {
				tt.prepare(w)
			}
			if _, failed, err := w.steps(w.plan()); err != nil {
				t.Fatalf("step %s: %v", failed, err)
			}
			ctx, cancel := context.WithCancel(t.Context())
			if tt.cancel {
				cancel()
			}
			defer cancel()
			d := w.r.Drain(ctx)
			d.Warn = strings.ReplaceAll(d.Warn, w.proc.root, "PROC")
			d.Detail = regexp.MustCompile(`cut short after \S+$`).ReplaceAllString(d.Detail, "cut short after T")
			if diff := cmp.Diff(tt.want, d); diff != "" {
				t.Errorf("drain (-want +got):\n%s", diff)
			}
			if dumped := slices.Contains(w.run.calls, "nginx -T -q -c "+w.conf); dumped != tt.dumped {
				t.Errorf("nginx -T ran: %t, want %t (calls %q)", dumped, tt.dumped, w.run.calls)
			}
		})
	}

	t.Run("a slow drain that ends at worker_shutdown_timeout says so, and reads it once", func(t *testing.T) {
		w := newWorld(t)
		w.conns(1)
		w.run.dump = "# configuration file " + w.conf + ":\nworker_shutdown_timeout 1100ms;\nevents {}\n"
		w.r.DrainTimeout = 5 * time.Second
		if _, failed, err := w.steps(w.plan()); err != nil {
			t.Fatalf("step %s: %v", failed, err)
		}
		time.AfterFunc(1150*time.Millisecond, func() { w.proc.exit(801, 802) })
		d := w.r.Drain(t.Context())
		if !regexp.MustCompile(`^2 old workers gone after 1\.\ds, at worker_shutdown_timeout 1\.1s$`).MatchString(d.Detail) || d.Left != 0 || d.Warn != "" {
			t.Errorf("drain = %+v, want 2 old workers gone at worker_shutdown_timeout", d)
		}
		w.r.Drain(t.Context()) // nothing left to wait for
		var dumps int
		for _, c := range w.run.calls {
			if strings.HasPrefix(c, "nginx -T") {
				dumps++
			}
		}
		if dumps != 1 {
			t.Errorf("nginx -T ran %d times, want once (calls %q)", dumps, w.run.calls)
		}
	})
}

// conns writes the kernel's socket tables into the fake /proc with n
// connections open to slot A, besides some that must not count: one to
// slot B, one to slot A that nginx closed (CLOSE_WAIT), and the listeners.
func (w *world) conns(n int) {
	w.t.Helper()
	tcp := "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n" +
		tcpLine(slotA, "0.0.0.0:0", 0x0A) + tcpLine(slotB, "0.0.0.0:0", 0x0A) +
		tcpLine(slotB, "127.0.0.1:50000", 0x01) + tcpLine(slotA, "127.0.0.1:50001", 0x08)
	for i := range n {
		tcp += tcpLine(slotA, fmt.Sprintf("127.0.0.1:%d", 51000+i), 0x01)
	}
	unix := "Num       RefCount Protocol Flags    Type St Inode Path\n"
	dir := filepath.Join(w.proc.root, "net")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		w.t.Fatal(err)
	}
	for name, text := range map[string]string{"tcp": tcp, "tcp6": strings.Replace(tcp, "local_address rem_address", "local_address                         remote_address", 1), "unix": unix} {
		if name == "tcp6" {
			text = text[:strings.IndexByte(text, '\n')+1] // no IPv6 connections
		}
		write(w.t, filepath.Join(dir, name), []byte(text))
	}
}

// tcpLine is a line of /proc/net/tcp: addresses as the kernel prints them,
// 32-bit words in host byte order.
func tcpLine(local, remote string, st int) string {
	hex := func(hostport string) string {
		ap := netip.MustParseAddrPort(hostport)
		b := ap.Addr().As4()
		return fmt.Sprintf("%08X:%04X", binary.NativeEndian.Uint32(b[:]), ap.Port())
	}
	return fmt.Sprintf("   0: %s %s %02X 00000000:00000000 00:00000000 00000000     0        0 12345 1 0000000000000000 20 4 30 10 -1\n", hex(local), hex(remote), st)
}

// TestAFailedPromotionIsReloadedBack: a canary's reload took, then the
// promotion's reload did not: nginx runs the canary's weights, so Revert
// must reload it back to the block Read found, not only restore the file.
func TestAFailedPromotionIsReloadedBack(t *testing.T) {
	w := newWorld(t)
	w.r.ReloadTimeout = 100 * time.Millisecond
	if _, err := w.r.Read(); err != nil {
		t.Fatal(err)
	}
	canary, err := w.r.Plan([]Backend{{Addr: TCP(slotA), Weight: 90}, {Addr: TCP(slotB), Weight: 10}}, "")
	if err != nil {
		t.Fatal(err)
	}
	alone, err := w.r.Plan([]Backend{{Addr: TCP(slotB)}}, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, failed, err := w.steps(canary); err != nil {
		t.Fatalf("canary step %s: %v", failed, err)
	}
	w.sd.onReload = func(n int) (string, error) {
		if n == 3 { // the reload back
			w.newGeneration()
		}
		return "done", nil // the promotion's: signalled, never taken
	}
	if _, failed, err := w.steps(alone); failed != "confirm" || !errors.Is(err, nginx.ErrRejected) {
		t.Fatalf("promotion failed at %q with %v, want confirm rejected", failed, err)
	}
	got, err := w.r.Revert(t.Context())
	if err != nil {
		t.Fatalf("revert: %v", err)
	}
	w.wantFile(w.orig, "after Revert")
	w.wantReloads(3)
	// The workers from before the reload back (the canary's, which proxied
	// to slot B too, and the first ones) never exit here.
	want := Drained{
		Detail: "4 of 4 old workers still running after drain-timeout 50ms",
		Left:   4,
		Warn:   "4 old nginx workers may still proxy to 127.0.0.1:4001 (the connections could not be counted: count connections to 127.0.0.1:4001: open PROC/net/tcp: no such file or directory); stopping the slot now may cut a request; without worker_shutdown_timeout, old nginx workers keep streams open until they end (setting it bounds that)",
	}
	got.Warn = strings.ReplaceAll(got.Warn, w.proc.root, "PROC")
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Revert's wait (-want +got):\n%s", diff)
	}
}
