package main

// The production path, end to end: systemd as PID 1 with Debian's unchanged
// nginx.service (internal/testedge's Machine), set up exactly as README's
// "Installing on a real host" says for Debian, with edgeswitch run inside
// the machine on its defaults (system bus, /etc/nginx/nginx.conf,
// /var/lib/edgeswitch, nginx.service, /etc/edgeswitch/edgeswitch.toml).
// The load comes from the host through Machine.Dial to nginx on the
// machine's own 127.0.0.1:80.
//
// The tests but the .deb's share one machine (SharedMachine) and leave it
// as they found it: slot 4000 or 4001 live, its unit active and enabled,
// the other inactive and disabled, nginx's config as README's steps left
// it. The .deb's test boots a machine of its own, on which edgeswitch comes
// only from the package.

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgeswitch/edgeswitch/internal/testedge"
)

func TestMain(m *testing.M) { os.Exit(testedge.MachineMain(m)) }

// What README's steps install, on Debian's layout.
const (
	machineUnitPath = "/etc/systemd/system/app@.service"
	machineAppConf  = "/etc/nginx/conf.d/app.conf"
	machineSite     = "/etc/nginx/sites-available/default"
	machineSiteLink = "/etc/nginx/sites-enabled/default"
	machineConfig   = "/etc/edgeswitch/edgeswitch.toml"
	machineURL      = "http://127.0.0.1:80"
)

// machineUnit is README step 2's template unit, with the demo app as the
// app (its ExecStart is the one line that differs).
const machineUnit = `[Unit]
Description=app on port %i
After=network.target

[Service]
Type=exec
ExecStart=/usr/local/bin/demoapp -port %i
Restart=on-failure
TimeoutStopSec=30

[Install]
WantedBy=multi-user.target
`

// machineUpstream is README step 3's upstream, listing the first slot.
const machineUpstream = `upstream app {
    server 127.0.0.1:4000;
    keepalive 16;
}
`

// machineLocation is README step 4's body of the default site's location /.
const machineLocation = `	location / {
		proxy_pass http://app;
		proxy_http_version 1.1;
		proxy_set_header Connection "";
	}
`

// machineSettings is README step 5's file, as printed there.
const machineSettings = `unit = "app@.service"
ports = [4000, 4001]
health-path = "/health"   # a cheap endpoint of the app; the default is /
`

var machineSlots = []string{"4000", "4001"}

func otherSlot(s string) string {
	if s == machineSlots[0] {
		return machineSlots[1]
	}
	return machineSlots[0]
}

func slotUnit(s string) string { return "app@" + s + ".service" }

// machineCtx bounds one command or request: not t.Context(), which ends
// before the test's cleanups, and they too run commands in the machine.
func machineCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 2*time.Minute)
}

// inMachine runs argv inside the machine and returns its exit code and
// output; only a command that cannot be run at all fails the test.
func inMachine(t testing.TB, m *testedge.Machine, argv ...string) result {
	t.Helper()
	ctx, cancel := machineCtx()
	defer cancel()
	cmd, err := m.Command(ctx, argv...)
	if err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	r := result{stdout: stdout.String(), stderr: stderr.String()}
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		r.code = exit.ExitCode()
	case err != nil:
		t.Fatalf("in machine %s: %s: %v", m.Name, strings.Join(argv, " "), err)
	}
	return r
}

// mustIn runs argv inside the machine and fails the test unless it exits 0.
func mustIn(t testing.TB, m *testedge.Machine, argv ...string) string {
	t.Helper()
	r := inMachine(t, m, argv...)
	if r.code != 0 {
		t.Fatalf("in machine: %s: exit %d\n%s%s", strings.Join(argv, " "), r.code, r.stdout, r.stderr)
	}
	return r.stdout
}

func installIn(t testing.TB, m *testedge.Machine, path, text string) {
	t.Helper()
	if err := m.Install(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

// machineGet sends one GET / to nginx in the machine on a new connection
// and returns the status and the slot that answered (X-Slot).
func machineGet(ctx context.Context, m *testedge.Machine) (int, string, error) {
	tr := &http.Transport{DialContext: m.Dial, DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	client := &http.Client{Timeout: 2 * time.Second, Transport: tr}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, machineURL+"/", nil)
	if err != nil {
		return 0, "", err
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, resp.Header.Get("X-Slot"), nil
}

// machineLive is the slot nginx answers from now; it fails the test unless
// GET / answers 200 from a slot.
func machineLive(t testing.TB, m *testedge.Machine) string {
	t.Helper()
	ctx, cancel := machineCtx()
	defer cancel()
	code, slot, err := machineGet(ctx, m)
	if err != nil || code != http.StatusOK || !slices.Contains(machineSlots, slot) {
		t.Fatalf("GET / through the machine's nginx: status %d, X-Slot %q, %v", code, slot, err)
	}
	return slot
}

// machineLoad drives clients keep-alive GET clients through the machine's
// nginx until the test stops it.
func machineLoad(t testing.TB, m *testedge.Machine, clients int) *testedge.Load {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Minute)
	t.Cleanup(cancel)
	return testedge.RunLoad(ctx, testedge.LoadOptions{URL: machineURL, Clients: clients, Dial: m.Dial})
}

// machineUnits is each slot's and nginx's ActiveState and whether it
// starts at boot, "active enabled", as systemctl says them.
func machineUnits(t testing.TB, m *testedge.Machine) map[string]string {
	t.Helper()
	units := []string{slotUnit(machineSlots[0]), slotUnit(machineSlots[1]), "nginx.service"}
	// Both exit non-zero unless every unit is active / enabled: read the
	// answers, one line per unit.
	active := strings.Fields(inMachine(t, m, append([]string{"systemctl", "is-active"}, units...)...).stdout)
	enabled := strings.Fields(inMachine(t, m, append([]string{"systemctl", "is-enabled"}, units...)...).stdout)
	if len(active) != len(units) || len(enabled) != len(units) {
		t.Fatalf("systemctl is-active / is-enabled %v: %q, %q", units, active, enabled)
	}
	states := map[string]string{}
	for i, u := range units {
		states[u] = active[i] + " " + enabled[i]
	}
	return states
}

// assertSlotUnits checks that live's unit runs and starts at boot and the
// other slot's does neither.
func assertSlotUnits(t testing.TB, m *testedge.Machine, live, when string) {
	t.Helper()
	st := machineUnits(t, m)
	if got := st[slotUnit(live)]; got != "active enabled" {
		t.Errorf("%s: live %s is %q, want \"active enabled\"", when, slotUnit(live), got)
	}
	if got := st[slotUnit(otherSlot(live))]; got != "inactive disabled" {
		t.Errorf("%s: idle %s is %q, want \"inactive disabled\"", when, slotUnit(otherSlot(live)), got)
	}
}

// machineFiles is the SHA-256 of every file under /etc/nginx and
// /etc/systemd/system in the machine, and the target of every symlink
// there (sites-enabled/default; the links that enable units). hashTree
// does this for the sandbox edge's files on the host; the machine's must
// be read inside it, where its absolute symlinks resolve.
func machineFiles(t testing.TB, m *testedge.Machine) map[string]string {
	t.Helper()
	out := mustIn(t, m, "sh", "-c",
		"find /etc/nginx /etc/systemd/system -type l -printf 'link %p %l\\n' && "+
			"find /etc/nginx /etc/systemd/system -type f -exec sha256sum {} +")
	files := map[string]string{}
	s := bufio.NewScanner(strings.NewReader(out))
	for s.Scan() {
		f := strings.Fields(s.Text())
		switch {
		case len(f) == 3 && f[0] == "link":
			files[f[1]] = "-> " + f[2]
		case len(f) == 2:
			files[f[1]] = f[0]
		default:
			t.Fatalf("cannot read %q", s.Text())
		}
	}
	return files
}

// assertSameFiles fails for each file that changed, appeared or went.
func assertSameFiles(t testing.TB, before, after map[string]string) {
	t.Helper()
	for _, p := range slices.Sorted(maps.Keys(before)) {
		if a, ok := after[p]; !ok {
			t.Errorf("%s is gone", p)
		} else if a != before[p] {
			t.Errorf("%s changed (%s, was %s)", p, a, before[p])
		}
	}
	for _, p := range slices.Sorted(maps.Keys(after)) {
		if _, ok := before[p]; !ok {
			t.Errorf("%s appeared", p)
		}
	}
}

// editDefaultSite is README step 4 on Debian's default site: the body of
// its one (uncommented) `location / { }`, with try_files, becomes the
// proxy to the upstream.
func editDefaultSite(t testing.TB, site string) string {
	t.Helper()
	const open = "\tlocation / {\n"
	if n := strings.Count(site, "\n"+open); n != 1 {
		t.Fatalf("%s has %d `location / {` blocks, want Debian's one:\n%s", machineSite, n, site)
	}
	i := strings.Index(site, "\n"+open) + 1
	j := strings.Index(site[i:], "\n\t}\n")
	if j < 0 {
		t.Fatalf("%s: no end of `location / {`", machineSite)
	}
	j += i + len("\n\t}\n")
	if body := site[i:j]; !strings.Contains(body, "try_files $uri $uri/ =404;") {
		t.Fatalf("%s: `location / {` has no try_files $uri $uri/ =404;, not Debian's default site:\n%s", machineSite, body)
	}
	return site[:i] + machineLocation + site[j:]
}

// setUpAsREADME follows README's "Installing on a real host" on the
// machine, steps 2 to 6, with es as the edgeswitch binary (step 1 is the
// caller's): the template unit, the upstream, the default site, the
// settings file, then `edgeswitch check` and `edgeswitch switch --to 4000`.
// A step that does not work as written fails the test and says which.
func setUpAsREADME(t testing.TB, m *testedge.Machine, es string) {
	t.Helper()
	// 2. The template unit, and daemon-reload.
	installIn(t, m, machineUnitPath, machineUnit)
	mustIn(t, m, "systemctl", "daemon-reload")
	// 3. The upstream in conf.d, listing the first slot.
	installIn(t, m, machineAppConf, machineUpstream)
	// 4. Debian's default site proxies location / to it; it stays
	// reached through the sites-enabled symlink. Then nginx -t && reload.
	if got := strings.TrimSpace(mustIn(t, m, "readlink", machineSiteLink)); got != machineSite {
		t.Fatalf("README step 4: %s links to %q, want %s", machineSiteLink, got, machineSite)
	}
	installIn(t, m, machineSite, editDefaultSite(t, mustIn(t, m, "cat", machineSite)))
	if r := inMachine(t, m, "sh", "-c", "nginx -t && systemctl reload nginx"); r.code != 0 {
		t.Fatalf("README step 4: nginx -t && systemctl reload nginx: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	// 5. The settings file.
	installIn(t, m, machineConfig, machineSettings)
	// 6. edgeswitch check, then the first slot.
	if r := inMachine(t, m, es, "check"); r.code != 0 {
		t.Errorf("README step 6: `edgeswitch check` after steps 1-5 (no slot started yet) exits %d, want 0:\n%s%s", r.code, r.stdout, r.stderr)
	}
	r := inMachine(t, m, es, "switch", "--to", "4000")
	if r.code != 0 {
		t.Fatalf("README step 6: `edgeswitch switch --to 4000`: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	t.Logf("README step 6: edgeswitch switch --to 4000:\n%s%s", r.stderr, r.stdout)
	if got := machineLive(t, m); got != "4000" {
		t.Errorf("after switch --to 4000 nginx answers from slot %s", got)
	}
	assertSlotUnits(t, m, "4000", "after switch --to 4000")
	if r := inMachine(t, m, es, "check"); r.code != 0 {
		t.Errorf("`edgeswitch check` with slot 4000 live: exit %d, want 0:\n%s%s", r.code, r.stdout, r.stderr)
	}
}

// readyMachine is the shared machine, set up as README says (by the first
// test that asks) with the binaries of this tree in /usr/local/bin.
func readyMachine(t *testing.T) *testedge.Machine {
	t.Helper()
	m := testedge.SharedMachine(t)
	machineSetUp.Lock()
	defer machineSetUp.Unlock()
	switch {
	case machineSetUp.failed:
		t.Fatal("setting up the shared machine as README says failed in an earlier test")
	case !machineSetUp.done:
		machineSetUp.failed = true // until it returns
		if err := m.InstallBinaries(t.Context()); err != nil {
			t.Fatal(err)
		}
		setUpAsREADME(t, m, "edgeswitch")
		machineSetUp.failed, machineSetUp.done = false, true
	}
	return m
}

var machineSetUp struct {
	sync.Mutex
	done, failed bool
}

// TestMachineInstalledAsREADMESays is the set-up on its own: README's
// steps on Debian's layout, `check` passing, the first slot served.
func TestMachineInstalledAsREADMESays(t *testing.T) {
	m := readyMachine(t)
	if got := mustIn(t, m, "sh", "-c", "command -v edgeswitch"); strings.TrimSpace(got) != "/usr/local/bin/edgeswitch" {
		t.Errorf("edgeswitch is %q", got)
	}
	// Debian's nginx.service, unchanged, is what edgeswitch reloads.
	got := mustIn(t, m, "systemctl", "show", "-p", "FragmentPath", "-p", "DropInPaths", "nginx.service")
	if want := "FragmentPath=/lib/systemd/system/nginx.service\nDropInPaths=\n"; got != want {
		t.Errorf("nginx.service:\n%swant\n%s", got, want)
	}
	if r := inMachine(t, m, "edgeswitch", "status"); r.code != 0 {
		t.Errorf("status: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}

// TestMachineSwitchesUnderLoad switches 20 times under 32 keep-alive GET
// clients: no request fails, traffic alternates, the old slot stops and
// only the live slot starts at boot after each switch.
func TestMachineSwitchesUnderLoad(t *testing.T) {
	m := readyMachine(t)
	const switches = 20
	live := machineLive(t, m)
	load := machineLoad(t, m, 32)
	// Deliberate load, not a wait for progress: the first switch meets
	// connections in use and requests in flight.
	time.Sleep(200 * time.Millisecond)
	start := time.Now()
	for i := range switches {
		from, to := live, otherSlot(live)
		r := inMachine(t, m, "edgeswitch", "switch")
		if r.code != 0 {
			t.Fatalf("switch %d (%s -> %s): exit %d\n%s", i+1, from, to, r.code, r.stderr)
		}
		if got := machineLive(t, m); got != to {
			t.Errorf("after switch %d (%s -> %s) nginx answers from slot %s", i+1, from, to, got)
		}
		assertSlotUnits(t, m, to, fmt.Sprintf("after switch %d (%s -> %s)", i+1, from, to))
		live = to
		if i == switches-1 {
			t.Logf("switch %d:\n%s", i+1, r.stderr)
		}
	}
	took := time.Since(start)
	stats := load.Stop()
	t.Logf("%d switches in %v (%v each) under 32 keep-alive GET clients: %s", switches, took.Round(time.Millisecond), (took / switches).Round(time.Millisecond), stats)
	if stats.Failed != 0 || stats.Requests < 1000 {
		t.Errorf("want 0 failed of many requests, got %s", stats)
	}
	for _, s := range machineSlots {
		if stats.BySlot[s] == 0 {
			t.Errorf("no answer from slot %s: %s", s, stats)
		}
	}
}

// TestMachineFailurePaths breaks one thing at a time on the machine and
// checks the designed exit code and message, that traffic stayed on the
// live slot without a failed request, and that every file under
// /etc/nginx and /etc/systemd/system, every unit's state and whether it
// starts at boot are as they were.
func TestMachineFailurePaths(t *testing.T) {
	const reloadTimeout = 60 * time.Second
	m := readyMachine(t)
	// dropIn makes the idle slot's unit run the demo app with args, by a
	// drop-in for that instance, and removes it when the test ends.
	dropIn := func(t *testing.T, target string, args string) {
		dir := "/etc/systemd/system/" + slotUnit(target) + ".d"
		installIn(t, m, dir+"/machine-test.conf", "[Service]\nExecStart=\nExecStart=/usr/local/bin/demoapp -port %i "+args+"\n")
		mustIn(t, m, "systemctl", "daemon-reload")
		t.Cleanup(func() {
			mustIn(t, m, "rm", "-r", dir)
			mustIn(t, m, "systemctl", "daemon-reload")
		})
	}
	// conf puts a file into conf.d and removes it when the test ends.
	conf := func(t *testing.T, name, text string) {
		installIn(t, m, "/etc/nginx/conf.d/"+name, text)
		t.Cleanup(func() { mustIn(t, m, "rm", "/etc/nginx/conf.d/"+name) })
	}
	// takePort has a process in the machine hold 127.0.0.1:8088 until the
	// test ends or release is called; nginx -t binds nothing, so only a
	// reload finds out that a listen on it cannot be had.
	takePort := func(t *testing.T) (release func()) {
		var once sync.Once
		release = func() {
			once.Do(func() { mustIn(t, m, "systemctl", "stop", "machine-test-holder.service") })
		}
		mustIn(t, m, "systemd-run", "--unit=machine-test-holder.service", "/usr/local/bin/demoapp", "-port", "8088")
		t.Cleanup(release)
		waitListening(t, m, "127.0.0.1:8088")
		return release
	}
	var release func()
	var gaveUp int
	tests := []struct {
		name  string
		setup func(t *testing.T, target string)
		flags []string
		code  int
		says  string
		// within bounds the switch's run, for failures it must see
		// before a timeout: only a switch that waited the timeout out
		// takes that long, however busy the machine.
		within    time.Duration
		nginxDown bool
		// after runs once the switch has exited, before the checks.
		after func(t *testing.T)
	}{
		{
			name:  "the new slot crashes at start",
			setup: func(t *testing.T, target string) { dropIn(t, target, "-crash") },
			code:  1, says: "the app exited",
		},
		{
			name:  "the new slot never becomes healthy",
			setup: func(t *testing.T, target string) { dropIn(t, target, "-never-ready") },
			flags: []string{"--health-timeout", "3s"},
			code:  1, says: "503",
		},
		{
			name: "nginx -t fails because another file of the config is broken",
			setup: func(t *testing.T, _ string) {
				conf(t, "broken.conf", "server { listen 127.0.0.1:8081; bogus_directive on; }\n")
			},
			code: 2, says: `unknown directive "bogus_directive"`,
		},
		{
			name: "nginx.service is stopped",
			setup: func(t *testing.T, _ string) {
				mustIn(t, m, "systemctl", "stop", "nginx.service")
				t.Cleanup(func() { mustIn(t, m, "systemctl", "start", "nginx.service") })
			},
			code: 2, says: "never starts nginx", nginxDown: true,
		},
		{
			name: "nginx rejects the reload: a new listen's port is taken",
			setup: func(t *testing.T, _ string) {
				takePort(t)
				// The port is held until nginx has given up the reload (its
				// bind retries), as in a real conflict; then it goes.
				t.Cleanup(func() { waitNginxGaveUp(t, m, gaveUp) })
				gaveUp = nginxGaveUpCount(t, m)
				conf(t, "taken.conf", "server { listen 127.0.0.1:8088; return 204; }\n")
			},
			// nginx logs the refusal at once and then retries the bind
			// for about 2.5 s; the switch must fail then, not wait out the
			// reload timeout.
			flags: []string{"--reload-timeout", reloadTimeout.String()},
			code:  1, says: "bind()", within: reloadTimeout,
		},
		{
			// nginx retries a failed bind() 5 times, 500 ms apart, within
			// the one reload. A port freed in that window (the process
			// holding it exits or is restarted) lets the reload succeed
			// late: nginx then runs the config that lists the new slot,
			// whatever the switch did after the first bind() error.
			name: "the taken port is freed while nginx still retries the bind",
			setup: func(t *testing.T, target string) {
				release = takePort(t)
				// Whatever nginx ended up running, it runs the files
				// again when the test ends.
				t.Cleanup(func() {
					mustIn(t, m, "systemctl", "reload", "nginx.service")
					waitServes(t, m, otherSlot(target))
				})
				conf(t, "taken.conf", "server { listen 127.0.0.1:8088; return 204; }\n")
			},
			after: func(t *testing.T) {
				release()
				// Deliberate: the whole of nginx's retry window (5 x 500 ms)
				// and more passes before traffic is checked.
				time.Sleep(3500 * time.Millisecond)
			},
			flags: []string{"--reload-timeout", reloadTimeout.String()},
			code:  1, says: "bind()", within: reloadTimeout,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			live := machineLive(t, m)
			target := otherSlot(live)
			// After the set-up is undone, the machine serves as before.
			t.Cleanup(func() {
				if got := machineLive(t, m); got != live {
					t.Errorf("after the test nginx answers from slot %s, want %s", got, live)
				}
				if r := inMachine(t, m, "edgeswitch", "status"); r.code != 0 {
					t.Errorf("after the test, status: exit %d\n%s%s", r.code, r.stdout, r.stderr)
				}
			})
			tt.setup(t, target)
			files, units := machineFiles(t, m), machineUnits(t, m)
			var load *testedge.Load
			if !tt.nginxDown {
				load = machineLoad(t, m, 8)
			}
			t0 := time.Now()
			r := inMachine(t, m, append([]string{"edgeswitch", "switch"}, tt.flags...)...)
			took := time.Since(t0)
			t.Logf("exit %d after %v:\n%s", r.code, took.Round(time.Millisecond), r.stderr)
			if tt.after != nil {
				tt.after(t)
			}
			if r.code != tt.code || !strings.Contains(r.stderr, tt.says) {
				t.Errorf("exit %d, want %d, with a message saying %q", r.code, tt.code, tt.says)
			}
			if tt.within > 0 && took > tt.within {
				t.Errorf("the switch failed after %s, want within %s", took, tt.within)
			}
			if load != nil {
				stats := load.Stop()
				t.Logf("load: %s", stats)
				if stats.Failed != 0 || stats.Requests == 0 {
					t.Errorf("traffic was interrupted: %s", stats)
				}
				ctx, cancel := machineCtx()
				defer cancel()
				if code, slot, err := machineGet(ctx, m); code != http.StatusOK || slot != live {
					t.Errorf("after the failed switch GET / answers %d from slot %q (%v), want 200 from slot %s", code, slot, err, live)
				}
			}
			assertSameFiles(t, files, machineFiles(t, m))
			if got := machineUnits(t, m); !maps.Equal(got, units) {
				t.Errorf("units: %v, were %v", got, units)
			}
		})
	}
}

// nginxGaveUpCount counts nginx's "still could not bind()": the line it
// logs when a reload (or start) has given up binding a listen.
func nginxGaveUpCount(t testing.TB, m *testedge.Machine) int {
	t.Helper()
	return strings.Count(mustIn(t, m, "cat", "/var/log/nginx/error.log"), "still could not bind()")
}

// waitNginxGaveUp waits until nginx has logged one more "still could not
// bind()" than before.
func waitNginxGaveUp(t testing.TB, m *testedge.Machine, before int) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); nginxGaveUpCount(t, m) <= before; {
		if time.Now().After(deadline) {
			t.Errorf("nginx did not give up its reload within 10 s (no new \"still could not bind()\" in its error log)")
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitServes waits until GET / through nginx answers 200 from slot: a
// reload's job is done when nginx has the signal, before its new workers
// serve.
func waitServes(t testing.TB, m *testedge.Machine, slot string) {
	t.Helper()
	ctx, cancel := machineCtx()
	defer cancel()
	for deadline := time.Now().Add(10 * time.Second); ; {
		code, got, err := machineGet(ctx, m)
		if code == http.StatusOK && got == slot {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET / through nginx answers %d from slot %q (%v), not 200 from slot %s, 10 s after the reload", code, got, err, slot)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitListening waits until something in the machine accepts connections
// on addr.
func waitListening(t testing.TB, m *testedge.Machine, addr string) {
	t.Helper()
	ctx, cancel := machineCtx()
	defer cancel()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := m.Dial(ctx, "tcp", addr)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("nothing listens on %s in the machine: %v", addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestMachineRebootBringsBackTheLiveSlot reboots with slot 4001 live: with
// no manual step, the app answers through nginx from 4001 and only 4001's
// unit runs. Then a rollback to 4000 and another reboot: 4000 serves.
func TestMachineRebootBringsBackTheLiveSlot(t *testing.T) {
	m := readyMachine(t)
	if machineLive(t, m) != "4001" {
		if r := inMachine(t, m, "edgeswitch", "switch", "--to", "4001"); r.code != 0 {
			t.Fatalf("switch --to 4001: exit %d\n%s", r.code, r.stderr)
		}
	}
	rebootServes(t, m, "4001")
	r := inMachine(t, m, "edgeswitch", "rollback")
	if r.code != 0 {
		t.Fatalf("rollback after the reboot: exit %d\n%s", r.code, r.stderr)
	}
	if got := machineLive(t, m); got != "4000" {
		t.Fatalf("after rollback nginx answers from slot %s, want 4000", got)
	}
	assertSlotUnits(t, m, "4000", "after rollback")
	rebootServes(t, m, "4000")
}

// rebootServes powers the machine off, boots it again, and checks that GET
// / answers 200 from slot live with nothing done by hand, and that only
// live's unit runs. It logs the time from the start of the boot to the
// first 200 from the app through nginx.
func rebootServes(t *testing.T, m *testedge.Machine, live string) {
	t.Helper()
	ctx := t.Context()
	if err := m.PowerOff(ctx); err != nil {
		t.Fatal(err)
	}
	type answer struct {
		after time.Duration
		slot  string
	}
	served := make(chan answer, 1)
	pollCtx, stopPolling := context.WithCancel(ctx)
	defer stopPolling()
	start := time.Now()
	go func() {
		for pollCtx.Err() == nil {
			if m.PID() != 0 { // the boot has begun
				if code, slot, err := machineGet(pollCtx, m); err == nil && code == http.StatusOK {
					served <- answer{time.Since(start), slot}
					return
				}
			}
			time.Sleep(10 * time.Millisecond)
		}
	}()
	if err := m.Boot(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case a := <-served:
		t.Logf("reboot with slot %s live: first 200 from the app through nginx %v after the boot began (slot %s); boot to running and nginx answering %v",
			live, a.after.Round(time.Millisecond), a.slot, m.BootTime().Round(time.Millisecond))
		if a.slot != live {
			t.Errorf("the first answer after the reboot came from slot %q, want %s", a.slot, live)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("no 200 through nginx within 30 s of the boot")
	}
	if got := machineLive(t, m); got != live {
		t.Errorf("after the reboot nginx answers from slot %s, want %s", got, live)
	}
	assertSlotUnits(t, m, live, "after the reboot")
	if r := inMachine(t, m, "edgeswitch", "status"); r.code != 0 {
		t.Errorf("status after the reboot: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}

// TestMachineStatusNamesTheFix: status exits 0 when all is well; with the
// live slot stopped by hand it exits 1 and says what to run.
func TestMachineStatusNamesTheFix(t *testing.T) {
	m := readyMachine(t)
	live := machineLive(t, m)
	r := inMachine(t, m, "edgeswitch", "status")
	t.Logf("status:\n%s%s", r.stdout, r.stderr)
	if r.code != 0 {
		t.Errorf("status with slot %s live and healthy: exit %d, want 0", live, r.code)
	}
	mustIn(t, m, "systemctl", "stop", slotUnit(live))
	t.Cleanup(func() {
		mustIn(t, m, "systemctl", "start", slotUnit(live))
		waitListening(t, m, "127.0.0.1:"+live)
		if r := inMachine(t, m, "edgeswitch", "status"); r.code != 0 {
			t.Errorf("status with slot %s started again: exit %d\n%s%s", live, r.code, r.stdout, r.stderr)
		}
	})
	r = inMachine(t, m, "edgeswitch", "status")
	t.Logf("status with %s stopped by hand:\n%s%s", slotUnit(live), r.stdout, r.stderr)
	if r.code != 1 {
		t.Errorf("status with the live slot stopped: exit %d, want 1", r.code)
	}
	want := "systemctl start " + slotUnit(live)
	found := false
	for line := range strings.Lines(r.stdout) {
		if f := strings.Fields(line); len(f) > 0 && f[0] == "problem" && strings.Contains(line, want) {
			found = true
		}
	}
	if !found {
		t.Errorf("no problem line naming %q", want)
	}
}

// TestMachineDeb builds the .deb with `make deb`, installs it with dpkg on
// a fresh machine where no other edgeswitch is installed, and switches
// with /usr/bin/edgeswitch on README's set-up.
func TestMachineDeb(t *testing.T) {
	m := testedge.NewMachine(t, testedge.MachineOptions{})
	ctx := t.Context()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	dist := t.TempDir()
	build := exec.CommandContext(ctx, "make", "-C", root, "deb")
	build.Env = append(os.Environ(), "DIST="+dist)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("make deb: %v\n%s", err, out)
	}
	debs, _ := filepath.Glob(filepath.Join(dist, "edgeswitch_*.deb"))
	if len(debs) != 1 {
		t.Fatalf("make deb wrote %v, want one .deb", debs)
	}
	version, err := exec.Command("dpkg-deb", "--field", debs[0], "Version").Output()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("built %s", filepath.Base(debs[0]))
	deb, err := os.ReadFile(debs[0])
	if err != nil {
		t.Fatal(err)
	}

	// Only the demo app from this tree: edgeswitch comes from the package.
	if err := m.InstallBinaries(ctx); err != nil {
		t.Fatal(err)
	}
	mustIn(t, m, "rm", "/usr/local/bin/edgeswitch")
	if r := inMachine(t, m, "test", "-e", "/var/lib/edgeswitch"); r.code == 0 {
		t.Fatal("/var/lib/edgeswitch exists before the package is installed")
	}
	if err := m.Install("/var/tmp/edgeswitch.deb", deb, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("dpkg -i:\n%s", mustIn(t, m, "dpkg", "-i", "/var/tmp/edgeswitch.deb"))
	if got := mustIn(t, m, "dpkg-query", "-W", "-f", "${Status} ${Version}", "edgeswitch"); got != "install ok installed "+strings.TrimSpace(string(version)) {
		t.Errorf("dpkg-query: %q", got)
	}
	const es = "/usr/bin/edgeswitch"
	if got := strings.TrimSpace(mustIn(t, m, es, "--version")); got != strings.TrimSpace(string(version)) {
		t.Errorf("%s --version: %q, want the package's %q", es, got, version)
	}
	if r := inMachine(t, m, es, "version"); r.code != 0 || strings.TrimSpace(r.stdout) != strings.TrimSpace(string(version)) {
		t.Errorf("%s version (design.md's `version` command): exit %d, %q, want %q\n%s", es, r.code, r.stdout, version, r.stderr)
	}
	if got := strings.TrimSpace(mustIn(t, m, "stat", "-c", "%F %a %U %G", "/var/lib/edgeswitch")); got != "directory 755 root root" {
		t.Errorf("/var/lib/edgeswitch: %s, want directory 755 root root", got)
	}
	if r := inMachine(t, m, "test", "-f", "/usr/share/man/man1/edgeswitch.1.gz"); r.code != 0 {
		t.Error("no /usr/share/man/man1/edgeswitch.1.gz")
	}
	if r := inMachine(t, m, "man", "-w", "edgeswitch"); r.code != 0 || strings.TrimSpace(r.stdout) != "/usr/share/man/man1/edgeswitch.1.gz" {
		t.Errorf("man -w edgeswitch: exit %d, %q %s", r.code, r.stdout, r.stderr)
	}
	if got := strings.TrimSpace(mustIn(t, m, "sh", "-c", "command -v edgeswitch")); got != es {
		t.Errorf("edgeswitch on PATH is %q, want %s", got, es)
	}

	setUpAsREADME(t, m, es)
	load := machineLoad(t, m, 8)
	time.Sleep(200 * time.Millisecond) // deliberate load before the switch
	r := inMachine(t, m, es, "switch")
	stats := load.Stop()
	t.Logf("%s switch:\n%s%s\nload: %s", es, r.stderr, r.stdout, stats)
	if r.code != 0 {
		t.Fatalf("%s switch: exit %d", es, r.code)
	}
	if got := machineLive(t, m); got != "4001" {
		t.Errorf("after the switch nginx answers from slot %s, want 4001", got)
	}
	assertSlotUnits(t, m, "4001", "after the switch with the package's edgeswitch")
	if stats.Failed != 0 || stats.BySlot["4001"] == 0 {
		t.Errorf("load during the switch: %s", stats)
	}
}

// TestMachineSocketMode converts README's set-up to socket mode on a
// machine of its own (Debian's nginx.service, workers as www-data), with
// the mode in the settings file; then switches 20 times under 32
// keep-alive POST clients: none fails and nginx keeps its workers. A
// reboot brings back the slot the link points at, and only its unit.
func TestMachineSocketMode(t *testing.T) {
	m := testedge.NewMachine(t, testedge.MachineOptions{})
	if err := m.InstallBinaries(t.Context()); err != nil {
		t.Fatal(err)
	}
	setUpAsREADME(t, m, "edgeswitch")
	noStartLimit(t, m)
	toSocketMode(t, m)
	installIn(t, m, machineConfig, machineSettings+"mode = \"socket\"\nsocket = \""+machineSocket+"\"\n")
	if r := inMachine(t, m, "edgeswitch", "check"); r.code != 0 {
		t.Errorf("check in socket mode: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	workers := mustIn(t, m, "sh", "-c", "pgrep -P $(cat /run/nginx.pid) | sort")
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Minute)
	defer cancel()
	load := testedge.RunLoad(ctx, testedge.LoadOptions{URL: machineURL, Clients: 32, Method: http.MethodPost, Body: []byte(`{"order": 42}`), Dial: m.Dial})
	time.Sleep(200 * time.Millisecond) // deliberate load: the first swap meets requests in flight
	for i := range 20 {
		live := machineLive(t, m)
		r := inMachine(t, m, "edgeswitch", "switch")
		if r.code != 0 {
			t.Fatalf("socket switch %d: exit %d\n%s", i+1, r.code, r.stderr)
		}
		if i == 0 {
			t.Logf("a socket-mode switch on the machine:\n%s", r.stderr)
		}
		assertSlotUnits(t, m, otherSlot(live), fmt.Sprintf("after socket switch %d", i+1))
	}
	stats := load.Stop()
	t.Logf("POST load over 20 socket-mode switches: %s", stats)
	if stats.Failed != 0 || stats.Requests < 1000 {
		t.Errorf("want 0 failed of many POSTs, got %s", stats)
	}
	if got := mustIn(t, m, "sh", "-c", "pgrep -P $(cat /run/nginx.pid) | sort"); got != workers {
		t.Errorf("nginx's workers went from %q to %q: socket mode must not reload", workers, got)
	}
	live := machineLive(t, m)
	rebootServes(t, m, live)
	if got := strings.TrimSpace(mustIn(t, m, "readlink", machineSocketLink)); got != strings.ReplaceAll(machineSocket, "{port}", live) {
		t.Errorf("after the reboot the link points at %s, want slot %s's socket", got, live)
	}
}
