package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
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

	"github.com/edgeswitch/edgeswitch/internal/testedge"
	"github.com/edgeswitch/edgeswitch/swap"
)

// The tests of several apps on one host run the real binary against an
// edge with two apps, api (upstream app, the edge's first app) and tpi (a
// further app of the edge, its upstream named after it), each with its own
// template unit, slot ports and nginx server, described by one config file
// with an [app.NAME] table each, as the shell script this tool replaces
// ran them.

// twoAppEdge starts an edge whose second app is tpi, its upstream in file
// (empty: the first app's file) and its slots run with tpiArgs.
func twoAppEdge(t *testing.T, file string, apiArgs, tpiArgs []string) (*testedge.Edge, *testedge.App) {
	t.Helper()
	e := testedge.New(t, testedge.Options{AppArgs: apiArgs, Apps: []testedge.AppOptions{{Name: "tpi", File: file, AppArgs: tpiArgs}}})
	return e, e.Apps[0]
}

// appsConfig is the config file of the edge's two apps: the host-wide
// settings and the defaults at the top (then top), a table per app (then
// tpiExtra, inside tpi's table, the last).
func appsConfig(e *testedge.Edge, top, tpiExtra string) string {
	tpi := e.Apps[0]
	return fmt.Sprintf(`# host-wide
user = true
nginx-conf = %q
nginx-bin = %q
nginx-unit = %q
state-dir = %q
# defaults of every app
health-path = "/health"
health-timeout = "5s"
%s
[app.api]
upstream = "app"
unit = %q
ports = [%d, %d]

[app.tpi]
unit = %q
ports = [%d, %d]
%s`, e.NginxConf, testedge.NginxBin, e.NginxUnit, e.StateDir, top,
		e.AppUnit, e.Ports[0], e.Ports[1], tpi.Unit, tpi.Ports[0], tpi.Ports[1], tpiExtra)
}

// writeAppsConfig writes text as the config file name in the edge's
// directory (root's, 0600, as edgeswitch requires of a config file run as
// root) and returns its path.
func writeAppsConfig(t *testing.T, e *testedge.Edge, name, text string) string {
	t.Helper()
	p := filepath.Join(e.Dir, name)
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// runApps runs the binary with the config file conf and args.
func runApps(t testing.TB, e *testedge.Edge, conf string, args ...string) result {
	t.Helper()
	return runWith(t, e.Env, append([]string{"-c", conf}, args...)...)
}

// startApps starts the binary with the config file conf and args in the
// background, like startSwitch.
func startApps(t testing.TB, e *testedge.Edge, conf string, args ...string) *running {
	t.Helper()
	return start(t, e, nil, append([]string{"-c", conf}, args...)...)
}

// slotAt asks nginx which slot answers url now.
func slotAt(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s through nginx: %v", url, err)
	}
	defer resp.Body.Close()
	return resp.Header.Get("X-Slot")
}

// getBody is the X-Slot and body of GET url through nginx.
func getBody(t *testing.T, url string) (slot, body string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s through nginx: %v", url, err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	if _, err := b.ReadFrom(resp.Body); err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return resp.Header.Get("X-Slot"), b.String()
}

// loadAt drives clients keep-alive GET clients at base until the test
// stops it.
func loadAt(t *testing.T, base string, clients int) *testedge.Load {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Minute)
	t.Cleanup(cancel)
	return testedge.RunLoad(ctx, testedge.LoadOptions{URL: base, Clients: clients})
}

// timedSwitch is one `switch APP --json`, each JSON line stamped with the
// test's clock as it arrived, so that two switches' steps can be compared.
type timedSwitch struct {
	app        string
	code       int
	stderr     string
	start, end time.Time // the process's run
	to         int       // the result's slot
	steps      map[string]stepWindow
}

// stepWindow is when a step ran: its event arrives as it ends, with its
// duration.
type stepWindow struct{ from, to time.Time }

// switchTimed runs `edgeswitch -c conf --json switch app`. It runs in a
// goroutine of its own, so it reports errors rather than failing the test.
func switchTimed(e *testedge.Edge, bin, conf, app string) (timedSwitch, error) {
	ts := timedSwitch{app: app, steps: map[string]stepWindow{}}
	cmd := exec.Command(bin, "-c", conf, "--json", "switch", app)
	cmd.Env = append(os.Environ(), e.Env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return ts, err
	}
	ts.start = time.Now()
	if err := cmd.Start(); err != nil {
		return ts, err
	}
	var bad []string
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		at := time.Now()
		var line struct {
			Event  *swap.Event
			Result *struct{ To int }
		}
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			bad = append(bad, sc.Text())
			continue
		}
		switch {
		case line.Event != nil:
			ts.steps[line.Event.Step] = stepWindow{at.Add(-line.Event.Took), at}
		case line.Result != nil:
			ts.to = line.Result.To
		}
	}
	err = cmd.Wait()
	ts.end = time.Now()
	ts.stderr = stderr.String()
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		ts.code = exit.ExitCode()
	case err != nil:
		return ts, err
	}
	if len(bad) > 0 {
		return ts, fmt.Errorf("switch %s printed lines that are not JSON: %q", app, bad)
	}
	return ts, nil
}

// overlap is how long two windows overlap; negative: the gap between them.
func overlap(a, b stepWindow) time.Duration {
	from, to := a.from, a.to
	if b.from.After(from) {
		from = b.from
	}
	if b.to.Before(to) {
		to = b.to
	}
	return to.Sub(from)
}

// appsStatus runs `status --json` (every app) and returns each app's
// status by name; the output must be one {"apps": [...]} object.
func appsStatus(t *testing.T, e *testedge.Edge, conf string) map[string]swap.Status {
	t.Helper()
	r := runApps(t, e, conf, "status", "--json")
	if r.code != 0 {
		t.Fatalf("status --json: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	var all struct{ Apps []swap.Status }
	if err := json.Unmarshal([]byte(r.stdout), &all); err != nil || strings.Count(strings.TrimSpace(r.stdout), "\n") != 0 {
		t.Fatalf("status --json of two apps is not one {\"apps\": [...]} line (%v):\n%s", err, r.stdout)
	}
	byApp := map[string]swap.Status{}
	for _, st := range all.Apps {
		byApp[st.App] = st
	}
	if len(all.Apps) != 2 || len(byApp) != 2 || byApp["api"].App == "" || byApp["tpi"].App == "" {
		t.Fatalf("status --json does not show apps api and tpi once each:\n%s", r.stdout)
	}
	return byApp
}

// textBlocks splits the text status of several apps into each app's block.
func textBlocks(t *testing.T, out string) map[string]string {
	t.Helper()
	blocks := map[string]string{}
	for _, b := range strings.Split(out, "== app ")[1:] {
		name, body, _ := strings.Cut(b, "\n")
		blocks[name] = body
	}
	if !strings.HasPrefix(out, "== app ") || len(blocks) != 2 {
		t.Fatalf("status of two apps is not a block per app under \"== app NAME\":\n%s", out)
	}
	return blocks
}

// TestAppsSwitchedConcurrentlyUnderLoad switches api and tpi 20 times each
// at the same time, each app under 32 keep-alive GET clients through its
// own nginx server, with both upstreams in one nginx file and then in two.
// No switch may fail, no request may fail, no app's traffic may reach the
// other's slots, status must tell where each app's traffic goes after every
// round, and the two switches must really run at the same time: their
// health steps (300 ms each: the slots are ready 300 ms after they start)
// overlap.
func TestAppsSwitchedConcurrentlyUnderLoad(t *testing.T) {
	const rounds = 20
	for _, tt := range []struct{ name, file string }{
		{"both upstreams in one nginx file", ""},
		{"the upstreams in two nginx files", "tpi.conf"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ready := []string{"-ready-after=300ms"}
			e, tpi := twoAppEdge(t, tt.file, ready, ready)
			if tt.file == "" {
				text, err := os.ReadFile(e.UpstreamFile)
				if err != nil || !strings.Contains(string(text), "upstream app {") || !strings.Contains(string(text), "upstream tpi {") {
					t.Fatalf("%s does not hold both upstreams (%v):\n%s", e.UpstreamFile, err, text)
				}
			} else if tpi.UpstreamFile == e.UpstreamFile {
				t.Fatalf("tpi's upstream is in %s, want a file of its own", tpi.UpstreamFile)
			}
			conf := writeAppsConfig(t, e, "apps.toml", appsConfig(e, "", ""))
			bin := binary(t)
			urls := map[string]string{"api": e.URL("/"), "tpi": tpi.URL("/")}
			ports := map[string][2]int{"api": e.Ports, "tpi": tpi.Ports}
			files := map[string]string{"api": e.UpstreamFile, "tpi": tpi.UpstreamFile}
			upstreams := map[string]string{"api": "app", "tpi": "tpi"}

			loads := map[string]*testedge.Load{"api": loadAt(t, e.URL(""), 32), "tpi": loadAt(t, tpi.URL(""), 32)}
			// Deliberate load, not a wait for progress: the first switches
			// meet connections in use and requests in flight.
			time.Sleep(200 * time.Millisecond)

			var healthOverlaps, switchOverlaps []time.Duration
			t0 := time.Now()
			for i := range rounds {
				want := map[string]int{"api": e.Ports[(i+1)%2], "tpi": tpi.Ports[(i+1)%2]}
				got := map[string]timedSwitch{}
				var mu sync.Mutex
				var wg sync.WaitGroup
				var errs []error
				for _, app := range []string{"api", "tpi"} {
					wg.Go(func() {
						ts, err := switchTimed(e, bin, conf, app)
						mu.Lock()
						defer mu.Unlock()
						got[app] = ts
						errs = append(errs, err)
					})
				}
				wg.Wait()
				if err := errors.Join(errs...); err != nil {
					t.Fatalf("round %d: %v", i+1, err)
				}
				for _, app := range []string{"api", "tpi"} {
					ts := got[app]
					if ts.code != 0 || ts.to != want[app] {
						t.Fatalf("round %d: switch %s: exit %d to slot %d, want 0 to slot %d\n%s", i+1, app, ts.code, ts.to, want[app], ts.stderr)
					}
					if _, ok := ts.steps["health"]; !ok {
						t.Fatalf("round %d: switch %s --json printed no health event", i+1, app)
					}
				}
				healthOverlaps = append(healthOverlaps, overlap(got["api"].steps["health"], got["tpi"].steps["health"]))
				switchOverlaps = append(switchOverlaps, overlap(stepWindow{got["api"].start, got["api"].end}, stepWindow{got["tpi"].start, got["tpi"].end}))

				// Where each app's traffic goes, and what status says of it.
				sts := appsStatus(t, e, conf)
				for _, app := range []string{"api", "tpi"} {
					serving := slotAt(t, urls[app])
					st := sts[app]
					if serving != strconv.Itoa(want[app]) {
						t.Errorf("round %d: nginx serves %s from slot %s, want %d", i+1, app, serving, want[app])
					}
					if st.Live == nil || strconv.Itoa(*st.Live) != serving || !slices.Equal(st.Listed, []int{want[app]}) {
						t.Errorf("round %d: status --json of %s: live %v listed %v, but its traffic goes to slot %s", i+1, app, st.Live, st.Listed, serving)
					}
					if st.Upstream != upstreams[app] || st.File != files[app] || len(st.Problems) != 0 {
						t.Errorf("round %d: status --json of %s: upstream %s in %s, problems %q; want upstream %s in %s, no problem",
							i+1, app, st.Upstream, st.File, st.Problems, upstreams[app], files[app])
					}
					for _, s := range st.Slots {
						if wantActive := map[bool]string{true: "active", false: "inactive"}[s.Port == want[app]]; s.Active != wantActive || !slices.Contains(portsOf(ports, app), s.Port) {
							t.Errorf("round %d: status --json of %s: slot %d is %s, want %s", i+1, app, s.Port, s.Active, wantActive)
						}
					}
				}
				r := runApps(t, e, conf, "status")
				if r.code != 0 {
					t.Fatalf("round %d: status: exit %d\n%s%s", i+1, r.code, r.stdout, r.stderr)
				}
				for app, block := range textBlocks(t, r.stdout) {
					if !strings.Contains(block, fmt.Sprintf("live      slot %d\n", want[app])) || !strings.Contains(block, "upstream  "+upstreams[app]+" at "+files[app]) {
						t.Errorf("round %d: status's block of %s does not show upstream %s live on slot %d:\n%s", i+1, app, upstreams[app], want[app], block)
					}
				}
			}
			took := time.Since(t0)

			for _, app := range []string{"api", "tpi"} {
				stats := loads[app].Stop()
				t.Logf("%s: %d switches; load: %s", app, rounds, stats)
				if stats.Failed != 0 || stats.Requests < 1000 {
					t.Errorf("%s: want 0 failed of many requests, got %s", app, stats)
				}
				for slot := range stats.BySlot {
					if p, err := strconv.Atoi(slot); err != nil || !slices.Contains(portsOf(ports, app), p) {
						t.Errorf("%s's traffic reached slot %q, which is not one of its slots %v: %s", app, slot, ports[app], stats)
					}
				}
			}
			overlapped, most := 0, time.Duration(0)
			for _, d := range healthOverlaps {
				if d > 0 {
					overlapped++
				}
				most = max(most, d)
			}
			t.Logf("%d rounds of two concurrent switches in %s; health steps overlapped in %d rounds, by up to %s (each round: %v); whole switches overlapped by %v",
				rounds, took.Round(time.Millisecond), overlapped, most.Round(time.Millisecond), rounded(healthOverlaps), rounded(switchOverlaps))
			if overlapped == 0 {
				t.Errorf("the health steps of api and tpi never overlapped (%v): the switches of two apps are serialized", rounded(healthOverlaps))
			}
		})
	}
}

func rounded(ds []time.Duration) []time.Duration {
	out := make([]time.Duration, len(ds))
	for i, d := range ds {
		out[i] = d.Round(time.Millisecond)
	}
	return out
}

// TestAppsBuildCopiedByAPreStartHook is the script's flow as config only:
// a pre-start hook installs each app's new build into the idle slot's
// directory ({app} and {to} in its arguments), and the slot, started
// after it, serves that build.
func TestAppsBuildCopiedByAPreStartHook(t *testing.T) {
	e, tpi := twoAppEdge(t, "", nil, nil)
	builds, srv := filepath.Join(e.Dir, "builds"), filepath.Join(e.Dir, "srv")
	for app, ports := range map[string][2]int{"api": e.Ports, "tpi": tpi.Ports} {
		for _, p := range ports {
			if err := os.MkdirAll(filepath.Join(srv, app, strconv.Itoa(p)), 0o755); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := os.MkdirAll(builds, 0o755); err != nil {
		t.Fatal(err)
	}
	// From now on each slot serves the build installed in its directory
	// (the running first slots keep serving "slot N").
	setAppArgs(t, e, "-body-file", filepath.Join(srv, "api", "{port}", "build.txt"))
	if err := tpi.SetAppArgs(t.Context(), "-body-file", filepath.Join(srv, "tpi", "{port}", "build.txt")); err != nil {
		t.Fatal(err)
	}
	hook := fmt.Sprintf("pre-start = [\"install\", \"-m\", \"0644\", %q, %q]\n",
		filepath.Join(builds, "{app}.txt"), filepath.Join(srv, "{app}", "{to}", "build.txt"))
	conf := writeAppsConfig(t, e, "apps.toml", appsConfig(e, hook, ""))
	load := loadAt(t, e.URL(""), 8)

	deploy := func(app, build string, to int, url string) {
		t.Helper()
		writeFile(t, filepath.Join(builds, app+".txt"), build)
		r := runApps(t, e, conf, "switch", app)
		if r.code != 0 || !strings.Contains(r.stderr, "pre-start") {
			t.Fatalf("switch %s: exit %d, want 0 with the pre-start hook's line:\n%s", app, r.code, r.stderr)
		}
		installed := filepath.Join(srv, app, strconv.Itoa(to), "build.txt")
		if data, err := os.ReadFile(installed); err != nil || string(data) != build {
			t.Errorf("%s holds %q (%v), want the build %q", installed, data, err, build)
		} else if fi, _ := os.Stat(installed); fi.Mode().Perm() != 0o644 {
			t.Errorf("%s has mode %v, want 0644 as the hook installs it", installed, fi.Mode().Perm())
		}
		if slot, body := getBody(t, url); slot != strconv.Itoa(to) || body != build {
			t.Errorf("after switch %s nginx answers %q from slot %s, want the new build %q from slot %d", app, body, slot, build, to)
		}
	}
	deploy("api", "api build 2\n", e.Ports[1], e.URL("/"))
	if slot, body := getBody(t, tpi.URL("/")); slot != strconv.Itoa(tpi.Ports[0]) || body != fmt.Sprintf("slot %d\n", tpi.Ports[0]) {
		t.Errorf("api's deploy changed tpi: it answers %q from slot %s", body, slot)
	}
	deploy("tpi", "tpi build 2\n", tpi.Ports[1], tpi.URL("/"))
	deploy("api", "api build 3\n", e.Ports[0], e.URL("/"))
	if _, err := os.Stat(filepath.Join(srv, "tpi", strconv.Itoa(tpi.Ports[0]), "build.txt")); !os.IsNotExist(err) {
		t.Errorf("a build of tpi was installed into its live slot's directory (%v)", err)
	}
	if stats := load.Stop(); stats.Failed != 0 {
		t.Errorf("api's traffic was interrupted by its deploys: %s", stats)
	}
}

// TestAppsBadInputEndToEnd: what cannot work with several apps is refused
// before anything is touched: exit 2, one line naming the app, the key and
// the fix, and every file of nginx's config and of the state dir as it was.
func TestAppsBadInputEndToEnd(t *testing.T) {
	e, tpi := twoAppEdge(t, "", nil, nil)
	good := appsConfig(e, "", "")
	tests := []struct {
		name  string
		text  string   // the config file
		args  []string // after -c FILE
		names []string // each must appear in the error line
		fix   *regexp.Regexp
	}{
		{
			name:  "two apps claim the same port",
			text:  strings.Replace(good, fmt.Sprintf("ports = [%d, %d]\n", tpi.Ports[0], tpi.Ports[1]), fmt.Sprintf("ports = [%d, %d]\n", tpi.Ports[0], e.Ports[1]), 1),
			args:  []string{"switch", "tpi"},
			names: []string{"apps api and tpi", fmt.Sprintf("address 127.0.0.1:%d", e.Ports[1]), "ports"},
			fix:   regexp.MustCompile(`give each app its own ports`),
		},
		{
			name:  "two apps claim the same upstream",
			text:  good + "upstream = \"app\"\n",
			args:  []string{"switch", "tpi"},
			names: []string{"apps api and tpi", "upstream app"},
			fix:   regexp.MustCompile(`give each app its own .*upstream`),
		},
		{
			name: "two apps claim the same unit instance",
			text: strings.Replace(good, fmt.Sprintf("unit = %q\nports = [%d, %d]\n", tpi.Unit, tpi.Ports[0], tpi.Ports[1]),
				fmt.Sprintf("unit = %q\nports = [%d, %d]\nhost = \"127.0.0.2\"\n", e.AppUnit, e.Ports[0], e.Ports[1]), 1),
			args:  []string{"switch", "api"},
			names: []string{"apps api and tpi", "unit " + e.SlotUnit(e.Ports[0])},
			fix:   regexp.MustCompile(`give each app its own .*unit`),
		},
		{
			name:  "an unknown key inside an app's table",
			text:  good + "helth-path = \"/health\"\n",
			args:  []string{"switch", "tpi"},
			names: []string{"[app.tpi]", "unknown setting helth-path"},
			// Listing the settings there are is the fix for a typo.
			fix: regexp.MustCompile(`the settings are: .*health-path`),
		},
		{
			name:  "an app name that is no unit or file name",
			text:  good + "\n[app.\"../tpi\"]\nports = [7000, 7001]\n",
			args:  []string{"switch", "api"},
			names: []string{"[app.../tpi]", `app name "../tpi"`},
			fix:   regexp.MustCompile(`use letters, digits`),
		},
		{
			name:  "switch of an app that does not exist",
			text:  good,
			args:  []string{"switch", "web"},
			names: []string{"no app web", "the apps are: api, tpi"},
			fix:   regexp.MustCompile(`the apps are: api, tpi`),
		},
		{
			name:  "switch of several apps without naming one",
			text:  good,
			args:  []string{"switch"},
			names: []string{"switch acts on one app", "the apps are: api, tpi"},
			fix:   regexp.MustCompile(`name it, e\.g\. edgeswitch switch api`),
		},
		{
			name:  "rollback of several apps without naming one",
			text:  good,
			args:  []string{"rollback"},
			names: []string{"rollback acts on one app", "the apps are: api, tpi"},
			fix:   regexp.MustCompile(`name it, e\.g\. edgeswitch rollback api`),
		},
	}
	load := map[string]*testedge.Load{"api": loadAt(t, e.URL(""), 8), "tpi": loadAt(t, tpi.URL(""), 8)}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conf := writeAppsConfig(t, e, fmt.Sprintf("bad-%d.toml", i), tt.text)
			before := hashTree(t, filepath.Dir(e.NginxConf))
			beforeState := hashTree(t, e.StateDir)
			r := runApps(t, e, conf, tt.args...)
			line := errorLine(t, r.stderr)
			t.Logf("%s", line)
			if r.code != 2 {
				t.Errorf("exit %d, want 2:\n%s", r.code, r.stderr)
			}
			for _, s := range tt.names {
				if !strings.Contains(line, s) {
					t.Errorf("the error does not name %q:\n%s", s, line)
				}
			}
			if !tt.fix.MatchString(line) {
				t.Errorf("the error does not say what to do (%s):\n%s", tt.fix, line)
			}
			assertUnchanged(t, e, before)
			assertSameTree(t, e.StateDir, beforeState)
			if _, err := os.Stat(filepath.Join(e.Dir, "locks")); !os.IsNotExist(err) {
				t.Errorf("a lock was made outside the state dir (%v)", err)
			}
			if got := slotAt(t, e.URL("/")); got != strconv.Itoa(e.Ports[0]) {
				t.Errorf("api's traffic moved to slot %s", got)
			}
			if got := slotAt(t, tpi.URL("/")); got != strconv.Itoa(tpi.Ports[0]) {
				t.Errorf("tpi's traffic moved to slot %s", got)
			}
			for app, st := range map[string]string{"api": unitState(t, e, e.Ports[1]), "tpi": activeState(t, e, tpi.SlotUnit(tpi.Ports[1]))} {
				if st != "inactive" {
					t.Errorf("%s's idle slot is %s", app, st)
				}
			}
		})
	}
	for app, l := range load {
		if stats := l.Stop(); stats.Failed != 0 {
			t.Errorf("%s's traffic was interrupted: %s", app, stats)
		}
	}
}

// assertSameTree checks that the files under dir hash as before.
func assertSameTree(t *testing.T, dir string, before map[string]string) {
	t.Helper()
	after := hashTree(t, dir)
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

// TestAppsStatusOfOneAppNeverWaitsOnAnother: while a switch of tpi holds
// its lock (its pre-start hook waits for the test), `status api` shows
// only api and returns at once, and `status tpi` shows tpi's switch in
// progress.
func TestAppsStatusOfOneAppNeverWaitsOnAnother(t *testing.T) {
	e, tpi := twoAppEdge(t, "", nil, nil)
	hook, held, release := holdingHook(t, e.Dir)
	quoted := make([]string, len(hook))
	for i, a := range hook {
		quoted[i] = strconv.Quote(a)
	}
	conf := writeAppsConfig(t, e, "apps.toml", appsConfig(e, "", "pre-start = ["+strings.Join(quoted, ", ")+"]\n"))
	// A first switch of api: its live slot is then the one enabled at
	// boot, as status wants (the edge's first slots are not enabled).
	if r := runApps(t, e, conf, "switch", "api"); r.code != 0 {
		t.Fatalf("switch api: exit %d\n%s", r.code, r.stderr)
	}
	sw := startApps(t, e, conf, "switch", "tpi")
	sw.waitFile(t, held) // tpi's switch holds its lock, in its pre-start hook

	t0 := time.Now()
	r := runApps(t, e, conf, "status", "api")
	took := time.Since(t0)
	select {
	case <-sw.exited:
		t.Fatalf("the switch of tpi ended (%v) before status api returned: the test proves nothing\n%s", sw.err, sw.stderr())
	default:
	}
	t.Logf("status api took %s while tpi's switch ran", took.Round(time.Millisecond))
	if r.code != 0 || !strings.HasPrefix(r.stdout, "upstream  app at "+e.UpstreamFile) || strings.Contains(r.stdout, "tpi") || strings.Contains(r.stdout, "== app") {
		t.Errorf("status api: exit %d, want 0 and api's status alone:\n%s%s", r.code, r.stdout, r.stderr)
	}
	for _, want := range []string{
		fmt.Sprintf("live      slot %d\n", e.Ports[1]),
		// The port and the unit apart, whatever the port's digits.
		fmt.Sprintf("slot %d %s", e.Ports[0], e.SlotUnit(e.Ports[0])),
		fmt.Sprintf("slot %d %s", e.Ports[1], e.SlotUnit(e.Ports[1])),
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("status api does not show %q:\n%s", want, r.stdout)
		}
	}

	r = runApps(t, e, conf, "status", "--json", "api")
	var st swap.Status
	if err := json.Unmarshal([]byte(r.stdout), &st); r.code != 0 || err != nil || st.App != "api" || st.Upstream != "app" || st.Switching != 0 || strings.Contains(r.stdout, `"apps"`) {
		t.Errorf("status --json api: exit %d (%v), want 0 and api's object alone, no switch running:\n%s%s", r.code, err, r.stdout, r.stderr)
	}

	r = runApps(t, e, conf, "status", "tpi")
	want := fmt.Sprintf("switching a switch is in progress (pid %d)", sw.cmd.Process.Pid)
	if r.code != 0 || !strings.Contains(r.stdout, want) || !strings.HasPrefix(r.stdout, "upstream  tpi at ") {
		t.Errorf("status tpi: exit %d, want 0 and tpi's status alone, with %q:\n%s%s", r.code, want, r.stdout, r.stderr)
	}
	select {
	case <-sw.exited:
		t.Errorf("the switch of tpi ended before the statuses did: they may have waited on it")
	default:
	}
	writeFile(t, release, "")
	if err := sw.wait(t); err != nil {
		t.Fatalf("switch tpi: %v\n%s", err, sw.stderr())
	}
	if got := slotAt(t, tpi.URL("/")); got != strconv.Itoa(tpi.Ports[1]) {
		t.Errorf("after its switch tpi answers from slot %s, want %d", got, tpi.Ports[1])
	}
}

// portsOf is app's slot ports as a slice.
func portsOf(ports map[string][2]int, app string) []int {
	p := ports[app]
	return p[:]
}
