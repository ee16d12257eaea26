package swap

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alecthomas/kong"
	"github.com/coreos/go-systemd/v22/journal"
	"github.com/google/go-cmp/cmp"
)

func TestCheckRefusesSettingsThatCannotWork(t *testing.T) {
	tests := []struct {
		name   string
		change func(*Options)
		says   string
	}{
		{"both ports equal", func(o *Options) { o.Ports = []int{4000, 4000} }, "both slot ports are 4000"},
		{"a port out of range", func(o *Options) { o.Ports[1] = 70000 }, "port 70000 is out of range"},
		{"a unit that is not a template", func(o *Options) { o.Unit = "app.service" }, "not a template unit"},
		{"a health path without a slash", func(o *Options) { o.HealthPath = "health" }, "must start with /"},
		{"a health status that is not a code", func(o *Options) { o.HealthStatus = "2xx" }, "health-status"},
		{"a zero health interval", func(o *Options) { o.HealthInterval = 0 }, "must be positive"},
		{"an empty health body", func(o *Options) { o.HealthBody = new("") }, "health-body is empty"},
		{"a 5xx share over 100%", func(o *Options) { o.BakeMax5xx = 120 }, "bake-max-5xx 120% is not a share"},
		{"a relative warm-up path", func(o *Options) { o.Warmup = []string{"/", "index.jsp"} }, `warmup ["/" "index.jsp"]: each warm-up path must be absolute`},
		{"negative warm-up requests", func(o *Options) { o.Warmup, o.WarmupRequests = []string{"/"}, -1 }, "warmup-requests -1"},
		{"too many warm-up requests", func(o *Options) { o.Warmup, o.WarmupRequests = []string{"/"}, 10001 }, "from 0 (one per warmup path) to 10000"},
		{"warm-up requests without paths", func(o *Options) { o.WarmupRequests = 50 }, "warmup-requests 50 without warmup"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := defaults()
			tt.change(&o)
			err := o.Check()
			if !errors.Is(err, ErrUsage) || ExitCode(err) != 2 || !strings.Contains(err.Error(), tt.says) {
				t.Errorf("Check() = %v (exit %d), want ErrUsage saying %q", err, ExitCode(err), tt.says)
			}
		})
	}
	if err := defaults().Check(); err != nil {
		t.Errorf("the defaults do not pass Check: %v", err)
	}
}

func TestSlotUnit(t *testing.T) {
	for unit, want := range map[string]string{
		"app@.service":      "app@4001.service",
		"shop-web@.service": "shop-web@4001.service",
		"app@":              "app@4001.service",
	} {
		o := defaults()
		o.Unit = unit
		if got := o.SlotUnit(4001); got != want {
			t.Errorf("SlotUnit(4001) with unit %s = %s, want %s", unit, got, want)
		}
	}
}

func TestParseStatus(t *testing.T) {
	got, err := parseStatus("200-299, 301")
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff([]statusRange{{200, 299}, {301, 301}}, got, cmp.AllowUnexported(statusRange{})); d != "" {
		t.Error(d)
	}
	for _, bad := range []string{"", "abc", "299-200", "99", "200-600"} {
		if _, err := parseStatus(bad); err == nil {
			t.Errorf("parseStatus(%q) accepted", bad)
		}
	}
}

// flaky answers 503 for the first n requests, then 200.
func flaky(n int32) *httptest.Server {
	var seen atomic.Int32
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if seen.Add(1) <= n {
			http.Error(w, "warming up", http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ok"))
	}))
}

func healthFor(t *testing.T, srv *httptest.Server, interval time.Duration) healthCheck {
	t.Helper()
	u, _ := url.Parse(srv.URL)
	port, _ := strconv.Atoi(u.Port())
	o := defaults()
	o.HealthPath, o.HealthInterval = "/health", interval
	return newHealthCheck(o, o.slot(port), srv.Client())
}

func TestHealthWaitsUntilTheAppAnswers(t *testing.T) {
	srv := flaky(3)
	defer srv.Close()
	h := healthFor(t, srv, time.Millisecond)
	var polls []string
	n, err := h.wait(t.Context(), func() error { return nil }, func(n int, last string) { polls = append(polls, last) })
	if err != nil || n != 4 {
		t.Fatalf("wait = %d, %v; want healthy at poll 4", n, err)
	}
	if len(polls) != 3 || !strings.Contains(polls[0], "503") || !strings.Contains(polls[0], "warming up") {
		t.Errorf("failed polls reported as %q", polls)
	}
}

func TestHealthFailsFastWhenTheUnitDies(t *testing.T) {
	srv := flaky(1 << 30)
	defer srv.Close()
	h := healthFor(t, srv, time.Millisecond)
	died := errors.New("app@4001.service is failed")
	n, err := h.wait(t.Context(), func() error { return died }, func(int, string) {})
	if !errors.Is(err, died) || n != 1 || !strings.Contains(err.Error(), "503") {
		t.Errorf("wait = %d, %v; want the unit's death at once with the last answer", n, err)
	}
}

func TestHealthGivesUpAtTheDeadlineWithTheLastAnswer(t *testing.T) {
	srv := flaky(1 << 30)
	defer srv.Close()
	h := healthFor(t, srv, time.Millisecond)
	ctx, cancel := context.WithTimeoutCause(t.Context(), 50*time.Millisecond, errors.New("health-timeout 50ms"))
	defer cancel()
	_, err := h.wait(ctx, func() error { return nil }, func(int, string) {})
	if err == nil || !strings.Contains(err.Error(), "health-timeout 50ms") || !strings.Contains(err.Error(), "503") {
		t.Errorf("wait = %v; want the timeout and the last answer", err)
	}
}

func TestLockNamesTheHolder(t *testing.T) {
	dir := t.TempDir()
	release, err := lock("/proc", dir, "app", "app")
	if err != nil {
		t.Fatal(err)
	}
	_, err = lock("/proc", dir, "app", "app")
	if ExitCode(err) != 2 || !strings.Contains(err.Error(), "pid "+strconv.Itoa(os.Getpid())) {
		t.Errorf("second lock = %v, want exit 2 naming pid %d", err, os.Getpid())
	}
	other, err := lock("/proc", dir, "api", "api")
	if err != nil {
		t.Errorf("another upstream's lock is blocked: %v", err)
	} else {
		other()
	}
	release()
	again, err := lock("/proc", dir, "app", "app")
	if err != nil {
		t.Fatalf("lock after release: %v", err)
	}
	again()
}

// TestADryRunLooksWithoutWriting: a dry run creates no state dir and no
// lock file, takes a shared lock on one that is there, and fails fast,
// naming the holder, while a switch runs.
func TestADryRunLooksWithoutWriting(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	release, err := lockToLook("/proc", dir, "app", "app")
	if err != nil {
		t.Fatal(err)
	}
	release()
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("a dry run made the state dir (%v)", err)
	}
	held, err := lock("/proc", dir, "app", "app")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lockToLook("/proc", dir, "app", "app"); ExitCode(err) != 2 || !strings.Contains(err.Error(), "pid "+strconv.Itoa(os.Getpid())) {
		t.Errorf("dry run beside a switch = %v, want exit 2 naming pid %d", err, os.Getpid())
	}
	held()
	if err := os.Chmod(filepath.Join(dir, lockFile("app")), 0o400); err != nil {
		t.Fatal(err)
	}
	look, err := lockToLook("/proc", dir, "app", "app")
	if err != nil {
		t.Fatalf("dry run with a lock file it may only read: %v", err)
	}
	look()
}

func TestHistoryKeepsEachUpstreamsAttempts(t *testing.T) {
	dir := t.TempDir()
	for _, r := range []Record{
		{Upstream: "app", From: ptr(4000), To: 4001, Result: "switched"},
		{Upstream: "api", From: ptr(5000), To: 5001, Result: "failed", Error: "health"},
		{Upstream: "app", From: ptr(4001), To: 4000, Result: "switched"},
	} {
		if err := appendHistory(dir, r); err != nil {
			t.Fatal(err)
		}
	}
	got, err := History(dir, "app", nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[1].To != 4000 {
		t.Errorf("History(app) = %+v", got)
	}
	if _, err := os.Stat(filepath.Join(dir, historyFile)); err != nil {
		t.Error(err)
	}
}

func ptr(p int) *int { return &p }

func TestAFailedOrStuckSwitchIsAnErrorInTheJournal(t *testing.T) {
	for result, want := range map[string]journal.Priority{
		"switched": journal.PriInfo, "unchanged": journal.PriInfo, "failed": journal.PriErr, "stuck": journal.PriErr, "rolled-back": journal.PriErr,
	} {
		if got := (Record{Result: result}).priority(); got != want {
			t.Errorf("%s: priority %d, want %d", result, got, want)
		}
	}
}

// defaults are the settings as their tags define them, as the CLI parses
// an empty command line: the tags are the one place they are written.
func defaults() Options {
	var c struct {
		Options `embed:""`
	}
	p, err := kong.New(&c)
	if err == nil {
		_, err = p.Parse(nil)
	}
	if err != nil {
		panic(err) // the tags are wrong
	}
	return c.Options
}

// TestLocksAreRootsAlone: the lock files are 0600 in a lock dir of mode
// 0711, so that only their owner may open one (an flock needs only a read
// descriptor) while anyone may stat one to find its holder.
func TestLocksAreRootsAlone(t *testing.T) {
	dir := t.TempDir()
	release, err := lock("/proc", dir, "app", "app")
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	if err := prepareStateDir(dir); err != nil {
		t.Fatal(err)
	}
	nginxRelease, err := lockNginx(t.Context(), "/proc", dir)
	if err != nil {
		t.Fatal(err)
	}
	defer nginxRelease()
	for path, want := range map[string]os.FileMode{
		filepath.Join(dir, lockDir):         0o711,
		filepath.Join(dir, lockFile("app")): 0o600,
		filepath.Join(dir, nginxLockFile):   0o600,
	} {
		if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != want {
			t.Errorf("%s: %v (%v), want mode %v", path, fi.Mode().Perm(), err, want)
		}
	}
	if got := lockHolder("/proc", filepath.Join(dir, lockFile("app"))); got != os.Getpid() {
		t.Errorf("lockHolder = %d, want this process, %d", got, os.Getpid())
	}
}

// TestALockDirMadeUnderAStrictUmaskIsOpenedForSearch: a lock dir of 0700
// (umask 077, or by hand) would hide the holders from status run by
// another user; it is set to 0711.
func TestALockDirMadeUnderAStrictUmaskIsOpenedForSearch(t *testing.T) {
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, lockDir), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := prepareStateDir(dir); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Join(dir, lockDir)); err != nil || fi.Mode().Perm() != 0o711 {
		t.Errorf("lock dir mode %v (%v), want 0711", fi.Mode().Perm(), err)
	}
	if err := os.Remove(filepath.Join(dir, lockDir)); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, lockDir), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := prepareStateDir(dir); ExitCode(err) != 2 || !strings.Contains(err.Error(), "is not a directory: remove it") {
		t.Errorf("a file where the lock dir goes = %v, want exit 2 saying to remove it", err)
	}
}

// TestALockHeldByAnotherProgramIsNamedAsWhatItIs: a holder that is not a
// switch (root's flock by hand) is named by its program and command line,
// not taken for a switch, both by a switch and by the nginx lock's wait.
func TestALockHeldByAnotherProgramIsNamedAsWhatItIs(t *testing.T) {
	flock, err := exec.LookPath("flock")
	if err != nil {
		t.Skip("needs util-linux's flock")
	}
	dir := t.TempDir()
	if err := prepareStateDir(dir); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, lockFile("app"))
	cmd := exec.Command(flock, "--exclusive", path, "sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	for lockHolder("/proc", path) == 0 {
		time.Sleep(10 * time.Millisecond)
	}
	want := fmt.Sprintf("%s is held by pid %d (\"flock\": \"%s --exclusive %s sleep 30\"), which is not an edgeswitch switch; stop it", path, cmd.Process.Pid, flock, path)
	if _, err := lock("/proc", dir, "app", "app"); ExitCode(err) != 2 || !strings.Contains(err.Error(), want) {
		t.Errorf("lock = %v\nwant exit 2 saying %q", err, want)
	}
	if os.Geteuid() == 0 {
		if _, err := lockToLook("/proc", dir, "app", "app"); ExitCode(err) != 2 || !strings.Contains(err.Error(), want) {
			t.Errorf("lockToLook = %v\nwant exit 2 saying %q", err, want)
		}
	}
}

// TestHistoryLinesAreBounded: a long field (a 70,000-character health path
// in the error, a hook's output, control characters JSON escapes sixfold)
// is cut with a mark, and every line stays within what the reader takes.
func TestHistoryLinesAreBounded(t *testing.T) {
	long := strings.Repeat("a", 70000)
	tests := []struct {
		name string
		r    Record
	}{
		{"a long error", Record{Upstream: "app", To: 4001, Result: "failed", Error: "http://127.0.0.1:4001/" + long + " answered 404"}},
		{"an error of control characters", Record{Upstream: "app", To: 4001, Result: "failed", Error: strings.Repeat("\x01", 70000)}},
		{"a long login", Record{Upstream: "app", To: 4001, Result: "switched", Login: long}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := appendHistory(dir, tt.r); err != nil {
				t.Fatal(err)
			}
			data, err := os.ReadFile(filepath.Join(dir, historyFile))
			if err != nil {
				t.Fatal(err)
			}
			if len(data) > maxLine+1 {
				t.Errorf("the line is %d bytes, over %d", len(data), maxLine)
			}
			var warned []string
			got, err := History(dir, "app", func(w string) { warned = append(warned, w) })
			if err != nil || len(got) != 1 || len(warned) != 0 {
				t.Fatalf("History = %d records, %v, warnings %q; want the one record", len(got), err, warned)
			}
			if r := got[0]; !strings.HasSuffix(r.Error+r.Login, cutMark) || len(r.Error) > maxField+len(cutMark) || len(r.Login) > maxField+len(cutMark) {
				t.Errorf("fields of %d and %d bytes, want at most %d, ending in %q", len(r.Error), len(r.Login), maxField, cutMark)
			}
		})
	}
}

// TestHistorySkipsADamagedOrOverLongLine: a line an older version wrote
// unbounded, a line cut by a crash and one that is not JSON are skipped,
// with one warning, and the records around them are read.
func TestHistorySkipsADamagedOrOverLongLine(t *testing.T) {
	dir := t.TempDir()
	good := func(to int) string {
		return fmt.Sprintf(`{"app":"app","upstream":"app","from":4000,"to":%d,"result":"switched","steps":[]}`, to)
	}
	over := `{"app":"app","upstream":"app","to":4001,"result":"failed","error":"` + strings.Repeat("x", 143000) + `"}`
	lines := []string{good(4001), over, `{"app":"app","upst`, "not json", good(4000)}
	if err := os.WriteFile(filepath.Join(dir, historyFile), []byte(strings.Join(lines, "\n")+"\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	var warned []string
	got, err := History(dir, "app", func(w string) { warned = append(warned, w) })
	if err != nil || len(got) != 2 || got[0].To != 4001 || got[1].To != 4000 {
		t.Fatalf("History = %+v, %v; want the two good records", got, err)
	}
	if len(warned) != 1 || !strings.Contains(warned[0], "skipped 3 damaged or over-long lines") || !strings.Contains(warned[0], "line 2") {
		t.Errorf("warnings %q, want one saying 3 lines were skipped from line 2", warned)
	}
}

// TestHistoryIsNotForEveryone: the history may quote a hook's output, so
// it is 0640, and one an earlier version made 0644 is narrowed.
func TestHistoryIsNotForEveryone(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, historyFile)
	for _, before := range []os.FileMode{0, 0o644} {
		if before != 0 {
			if err := os.Chmod(path, before); err != nil {
				t.Fatal(err)
			}
		}
		if err := appendHistory(dir, Record{Upstream: "app", To: 4001, Result: "switched"}); err != nil {
			t.Fatal(err)
		}
		if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o640 {
			t.Errorf("history mode %v (%v) after one of %v, want 0640", fi.Mode().Perm(), err, before)
		}
	}
}

// TestAHistoryOthersMayNotReadIsOnlyWarnedOf: status by a user who is not
// root cannot read the 0640 history; it says so and goes on.
func TestAHistoryOthersMayNotReadIsOnlyWarnedOf(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root reads any file: run as another user")
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, historyFile), nil, 0o000); err != nil {
		t.Fatal(err)
	}
	var warned []string
	got, err := History(dir, "app", func(w string) { warned = append(warned, w) })
	if err != nil || len(got) != 0 || len(warned) != 1 || !strings.Contains(warned[0], "run with sudo to see it") {
		t.Errorf("History = %v, %v, warnings %q; want none, with a warning to use sudo", got, err, warned)
	}
}

// TestAStickyStateDirIsRefused: /tmp's exception is for the directories
// above the state dir; in a sticky one others could still plant the files
// root is about to create.
func TestAStickyStateDirIsRefused(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: the state dir is checked only when edgeswitch runs as root")
	}
	dir := filepath.Join(t.TempDir(), "state")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o777|os.ModeSticky); err != nil {
		t.Fatal(err)
	}
	if _, err := lock("/proc", dir, "app", "app"); ExitCode(err) != 2 || !strings.Contains(err.Error(), "chmod go-w "+dir) {
		t.Errorf("lock in a sticky state dir = %v, want exit 2 saying chmod go-w %s", err, dir)
	}
}

// TestStateFilesAreWhereTheSwitchKeepsThem: the man page's FILES name the
// paths a switch of app APP really uses in the state dir.
func TestStateFilesAreWhereTheSwitchKeepsThem(t *testing.T) {
	var names []string
	for _, f := range StateFiles() {
		if f.About == "" {
			t.Errorf("%s has no description", f.Name)
		}
		names = append(names, f.Name)
	}
	want := []string{historyFile, lockDir + "/", lockFile("APP"), nginxLockFile, pendingFile("APP")}
	if d := cmp.Diff(want, names); d != "" {
		t.Errorf("StateFiles (-want +got):\n%s", d)
	}
}

// TestPercentAndTheUserManager: bake-max-5xx reads "5%" or "5" and refuses
// other text; with the user manager, hints name systemctl --user and the
// slot's [Install] wants default.target.
func TestPercentAndTheUserManager(t *testing.T) {
	for text, want := range map[string]Percent{"5%": 5, " 12.5 ": 12.5, "0": 0} {
		var p Percent
		if err := p.UnmarshalText([]byte(text)); err != nil || p != want {
			t.Errorf("Percent(%q) = %v, %v; want %v", text, p, err, want)
		}
	}
	var p Percent
	if err := p.UnmarshalText([]byte("five")); err == nil || !strings.Contains(err.Error(), `set it like "5%"`) {
		t.Errorf(`Percent("five"): %v, want an error saying how to write it`, err)
	}
	o := defaults()
	o.UserManager = true
	if o.Systemctl() != "systemctl --user" || o.journalctl() != "journalctl --user" || o.wantedBy() != "default.target" {
		t.Errorf("with the user manager: %q, %q, %q", o.Systemctl(), o.journalctl(), o.wantedBy())
	}
}
