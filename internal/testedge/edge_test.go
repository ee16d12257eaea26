package testedge

import (
	"bytes"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	sddbus "github.com/coreos/go-systemd/v22/dbus"

	"github.com/edgeswitch/edgeswitch/nginx"
)

// TestSwitchByHand does what edgeswitch automates, under load: start the
// idle slot, point the upstream at it, reload nginx. Then Close must leave
// nothing of the edge behind.
func TestSwitchByHand(t *testing.T) {
	// A second edge alive throughout: edges must not clash, and it keeps
	// the user manager up so we can ask it about e after e.Close.
	other := New(t, Options{})
	e := New(t, Options{})
	ctx := t.Context()
	p0, p1 := e.Ports[0], e.Ports[1]
	mgr.Lock()
	if mgr.started != 0 {
		t.Logf("user manager: started by this test (pid %d)", mgr.started)
	} else {
		t.Log("user manager: reused")
	}
	mgr.Unlock()

	if got := slotOf(t, e.URL("/")); got != p0 {
		t.Fatalf("nginx answers from slot %d, want %d", got, p0)
	}
	// The path edgeswitch takes: go-systemd over the session bus, in this process.
	conn, err := sddbus.NewUserConnectionContext(ctx)
	if err != nil {
		t.Fatalf("go-systemd cannot reach the user manager: %v", err)
	}
	defer conn.Close()
	if p, err := conn.GetUnitPropertyContext(ctx, e.NginxUnit, "ActiveState"); err != nil || p.Value.Value() != "active" {
		t.Fatalf("%s ActiveState over D-Bus: %v %v, want active", e.NginxUnit, p, err)
	}

	load := RunLoad(ctx, LoadOptions{URL: e.URL(""), Clients: 8})
	defer load.Stop()

	if _, err := e.Systemctl(ctx, "start", e.SlotUnit(p1)); err != nil {
		t.Fatal(err)
	}
	WaitFor(t, "slot "+strconv.Itoa(p1)+" healthy", func() bool {
		return status(t, "http://127.0.0.1:"+strconv.Itoa(p1)+"/health") == http.StatusOK
	})
	conf, err := os.ReadFile(e.UpstreamFile)
	if err != nil {
		t.Fatal(err)
	}
	from, to := "server 127.0.0.1:"+strconv.Itoa(p0)+";", "server 127.0.0.1:"+strconv.Itoa(p1)+";"
	if !bytes.Contains(conf, []byte(from)) {
		t.Fatalf("%s lacks %q:\n%s", e.UpstreamFile, from, conf)
	}
	if err := os.WriteFile(e.UpstreamFile, bytes.Replace(conf, []byte(from), []byte(to), 1), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Systemctl(ctx, "reload", e.NginxUnit); err != nil {
		t.Fatal(err)
	}
	WaitFor(t, "nginx answering from slot "+strconv.Itoa(p1), func() bool { return slotOf(t, e.URL("/")) == p1 })
	// The load's clients reach the new slot once their connections to the
	// old workers are done: a wait for that, not a sleep (200 ms was seen
	// to pass with none there on a busy machine).
	WaitFor(t, "the load answered from slot "+strconv.Itoa(p1), func() bool { return load.Snapshot().BySlot[strconv.Itoa(p1)] > 0 })

	s := load.Stop()
	t.Logf("load through the switch: %v", s)
	if s.Failed != 0 {
		t.Errorf("%d failed requests, want none (both slots were up throughout)", s.Failed)
	}
	if s.BySlot[strconv.Itoa(p0)] == 0 || s.BySlot[strconv.Itoa(p1)] == 0 {
		t.Errorf("answers by slot %v, want some from both %d and %d", s.BySlot, p0, p1)
	}

	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	out, err := other.Systemctl(ctx, "list-units", "--all", "--plain", "--no-legend", "es-"+e.id+"-*", e.appSlice())
	if err != nil || strings.TrimSpace(out) != "" {
		t.Errorf("units left after Close: %q %v", out, err)
	}
	for _, f := range e.unitFiles {
		if _, err := os.Stat(f); !os.IsNotExist(err) {
			t.Errorf("unit file %s left after Close (%v)", f, err)
		}
	}
	if procs := processesUnder(t, e.Dir); len(procs) > 0 {
		t.Errorf("processes left after Close:\n%s", strings.Join(procs, "\n"))
	}
	if got := slotOf(t, other.URL("/")); got != other.Ports[0] {
		t.Errorf("the other edge answers from slot %d, want %d", got, other.Ports[0])
	}
}

// TestSetAppArgs checks that AppArgs reach the slots and that SetAppArgs
// changes them for slots started afterwards.
func TestSetAppArgs(t *testing.T) {
	e := New(t, Options{AppArgs: []string{"-ready-after=1h"}})
	ctx := t.Context()
	p0, p1 := e.Ports[0], e.Ports[1]
	if got := status(t, "http://127.0.0.1:"+strconv.Itoa(p0)+"/health"); got != http.StatusServiceUnavailable {
		t.Errorf("slot %d /health: %d, want 503 from -ready-after=1h", p0, got)
	}

	if err := e.SetAppArgs(ctx, "-crash"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Systemctl(ctx, "start", e.SlotUnit(p1)); err != nil {
		t.Fatal(err)
	}
	WaitFor(t, e.SlotUnit(p1)+" failed", func() bool {
		out, _ := e.Systemctl(ctx, "is-failed", e.SlotUnit(p1))
		return strings.TrimSpace(out) == "failed"
	})
	if log := tail(e.appLog(p1), 5); !strings.Contains(log, "crashing on purpose") {
		t.Errorf("slot log does not tell the crash:\n%s", log)
	}

	if err := e.SetAppArgs(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Systemctl(ctx, "start", e.SlotUnit(p1)); err != nil {
		t.Fatal(err)
	}
	WaitFor(t, "slot "+strconv.Itoa(p1)+" healthy", func() bool {
		return status(t, "http://127.0.0.1:"+strconv.Itoa(p1)+"/health") == http.StatusOK
	})
}

func TestExecQuote(t *testing.T) {
	tests := []struct{ in, want string }{
		{"-ready-after=300ms", "-ready-after=300ms"},
		{"-addr=127.0.0.1:1", "-addr=127.0.0.1:1"},
		{"two words", `"two words"`},
		{"100%", `"100%%"`},
		{"$HOME", `"$$HOME"`},
		{`a"b`, `"a\"b"`},
		{"", `""`},
	}
	for _, tt := range tests {
		if got := execQuote(tt.in); got != tt.want {
			t.Errorf("execQuote(%q) = %s, want %s", tt.in, got, tt.want)
		}
	}
}

// TestFurtherAppsOptions checks what newEdge makes of Options.Apps: names,
// files and ports of their own, and refusals of what would clash.
func TestFurtherAppsOptions(t *testing.T) {
	dir := t.TempDir()
	e, err := newEdge(Options{Dir: dir, Apps: []AppOptions{{Name: "tpi"}, {Name: "web", File: "web.conf", Ports: [2]int{0, 5001}}}})
	if err != nil {
		t.Fatal(err)
	}
	tpi, web := e.Apps[0], e.Apps[1]
	if tpi.UpstreamFile != e.UpstreamFile || web.UpstreamFile != filepath.Join(dir, "nginx", "conf.d", "web.conf") {
		t.Errorf("upstream files %s and %s, want %s and conf.d/web.conf", tpi.UpstreamFile, web.UpstreamFile, e.UpstreamFile)
	}
	if tpi.Unit != "es-"+e.id+"-tpi@.service" || tpi.SlotUnit(4000) != "es-"+e.id+"-tpi@4000.service" {
		t.Errorf("tpi's unit %s, instance %s", tpi.Unit, tpi.SlotUnit(4000))
	}
	seen := map[string]bool{e.ListenAddr: true}
	for _, p := range e.Ports {
		seen[strconv.Itoa(p)] = true
	}
	for _, a := range e.Apps {
		for _, v := range []string{a.ListenAddr, strconv.Itoa(a.Ports[0]), strconv.Itoa(a.Ports[1])} {
			if seen[v] || strings.HasSuffix(v, ":0") || v == "0" {
				t.Errorf("app %s: %s is used twice or zero", a.Name, v)
			}
			seen[v] = true
		}
	}
	if web.Ports[1] != 5001 {
		t.Errorf("web's second port %d, want 5001 as given", web.Ports[1])
	}
	for _, bad := range [][]AppOptions{
		{{Name: "app"}},
		{{Name: "Tpi"}},
		{{Name: "a b"}},
		{{Name: "tpi"}, {Name: "tpi"}},
		{{Name: "tpi", File: "tpi.txt"}},
		{{Name: "tpi", File: "../tpi.conf"}},
		{{Name: "tpi", File: "app.conf"}},
		{{Name: "tpi", Ports: [2]int{5000, 5000}}},
	} {
		if _, err := newEdge(Options{Dir: dir, Apps: bad}); err == nil {
			t.Errorf("newEdge accepts Apps %+v", bad)
		}
	}
}

// slotOf is the X-Slot of a fresh GET, 0 when there is no good answer.
func slotOf(t *testing.T, url string) int {
	t.Helper()
	c := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get(url)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0
	}
	n, _ := strconv.Atoi(resp.Header.Get("X-Slot"))
	return n
}

func status(t *testing.T, url string) int {
	t.Helper()
	c := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get(url)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// processesUnder lists live processes whose command line mentions dir:
// the edge's nginx (-c dir/...) and demoapp (dir/bin/demoapp).
func processesUnder(t *testing.T, dir string) []string {
	t.Helper()
	paths, err := filepath.Glob("/proc/[0-9]*/cmdline")
	if err != nil {
		t.Fatal(err)
	}
	var found []string
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil || len(b) == 0 { // gone, or a zombie
			continue
		}
		if cmd := strings.ReplaceAll(string(b), "\x00", " "); strings.Contains(cmd, dir) {
			found = append(found, filepath.Base(filepath.Dir(p))+": "+cmd)
		}
	}
	return found
}

func TestLastBoot(t *testing.T) {
	e := &Edge{Dir: t.TempDir()}
	log := `demoapp: slot 4000 listening on 127.0.0.1:4000; started 2026-01-01T00:00:00Z, healthy from 2026-01-01T00:00:00.25Z
demoapp: slot 4000 stopped
demoapp: slot 4000 listening on 127.0.0.1:4000; started 2026-01-01T00:01:00Z, healthy from 2026-01-01T00:01:00.3Z
demoapp: slot 4000 listening on 127.0.0.1:4000; started 2026-01-01T00:02:00Z, never healthy
`
	if err := os.WriteFile(e.appLog(4000), []byte(log), 0o644); err != nil {
		t.Fatal(err)
	}
	b, err := e.LastBoot(4000)
	if err != nil {
		t.Fatal(err)
	}
	if want := time.Date(2026, 1, 1, 0, 2, 0, 0, time.UTC); !b.Started.Equal(want) || !b.Healthy.IsZero() {
		t.Errorf("got %+v, want started %s and never healthy", b, want)
	}
	if err := os.WriteFile(e.appLog(4000), []byte(log[:strings.Index(log, "demoapp: slot 4000 listening on 127.0.0.1:4000; started 2026-01-01T00:02")]), 0o644); err != nil {
		t.Fatal(err)
	}
	if b, err = e.LastBoot(4000); err != nil || b.Healthy.Sub(b.Started) != 300*time.Millisecond {
		t.Errorf("got %+v, %v; want healthy 300ms after the second start", b, err)
	}
	if _, err := e.LastBoot(4001); err == nil {
		t.Error("no log: want an error")
	}
}

// TestAccessLogOption: the edge's nginx logs nothing by default, and with
// Options.AccessLog logs to Edge.AccessLog in a format edgeswitch's bake
// reads (nginx -T of the config, as the bake looks it up).
func TestAccessLogOption(t *testing.T) {
	for _, on := range []bool{false, true} {
		dir := t.TempDir()
		e, err := newEdge(Options{Dir: dir, AccessLog: on})
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range []string{"nginx/conf.d", "nginx/tmp"} {
			if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		if err := e.writeNginxConfig(); err != nil {
			t.Fatal(err)
		}
		conf, err := os.ReadFile(e.NginxConf)
		if err != nil {
			t.Fatal(err)
		}
		want, path := "    access_log off;\n", ""
		if on {
			path = filepath.Join(dir, "nginx", "access.log")
			want = "    " + accessLogFormat + "\n    access_log " + path + " edgeswitch;\n"
		}
		if e.AccessLog != path || !strings.Contains(string(conf), want) || strings.Count(string(conf), "access_log ") != 1 {
			t.Errorf("AccessLog %v: Edge.AccessLog %q, want %q; nginx.conf lacks %q:\n%s", on, e.AccessLog, path, want, conf)
		}
		if !on || testing.Short() {
			continue
		}
		// edgeswitch finds the log, as its bake does.
		logs, err := nginx.AccessLogs(t.Context(), nginx.ExecRunner, NginxBin, e.NginxConf)
		if err != nil || len(logs) != 1 || logs[0].Path != path || logs[0].Format != "edgeswitch" {
			t.Errorf("nginx.AccessLogs = %+v, %v; want %s in format edgeswitch", logs, err, path)
		}
	}
}
