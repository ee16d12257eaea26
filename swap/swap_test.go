package swap

import (
	"context"
	"errors"
	"github.com/alecthomas/kong"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

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
	release, err := lock(dir, "app", "app")
	if err != nil {
		t.Fatal(err)
	}
	_, err = lock(dir, "app", "app")
	if ExitCode(err) != 2 || !strings.Contains(err.Error(), "pid "+strconv.Itoa(os.Getpid())) {
		t.Errorf("second lock = %v, want exit 2 naming pid %d", err, os.Getpid())
	}
	other, err := lock(dir, "api", "api")
	if err != nil {
		t.Errorf("another upstream's lock is blocked: %v", err)
	} else {
		other()
	}
	release()
	again, err := lock(dir, "app", "app")
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
	release, err := lockToLook(dir, "app", "app")
	if err != nil {
		t.Fatal(err)
	}
	release()
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("a dry run made the state dir (%v)", err)
	}
	held, err := lock(dir, "app", "app")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lockToLook(dir, "app", "app"); ExitCode(err) != 2 || !strings.Contains(err.Error(), "pid "+strconv.Itoa(os.Getpid())) {
		t.Errorf("dry run beside a switch = %v, want exit 2 naming pid %d", err, os.Getpid())
	}
	held()
	if err := os.Chmod(filepath.Join(dir, "app.lock"), 0o444); err != nil {
		t.Fatal(err)
	}
	look, err := lockToLook(dir, "app", "app")
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
	got, err := History(dir, "app")
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
