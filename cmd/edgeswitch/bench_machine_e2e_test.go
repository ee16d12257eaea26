package main

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/edgeswitch/edgeswitch/internal/testedge"
)

// The failed requests of BenchmarkFailedRequests on the production path:
// a machine (systemd as PID 1, Debian's unchanged nginx.service, nginx's
// workers as www-data) set up as README says (machine_e2e_test.go), with
// edgeswitch run inside it and the load from the host through Machine.Dial.

// What socket mode needs on the machine beside README's set-up.
const (
	machineSocket     = "/run/app/{port}.sock"
	machineSocketLink = "/var/lib/edgeswitch/app.sock"
)

// machineSocketUnit is README's template unit with the demo app on a unix
// socket. Both instances share /run/app: without RuntimeDirectoryPreserve,
// stopping one would remove the other's socket with the directory. The
// demo app makes its socket 0666, for nginx's www-data workers.
var machineSocketUnit = strings.Replace(machineUnit, "ExecStart=/usr/local/bin/demoapp -port %i\n",
	"ExecStart=/usr/local/bin/demoapp -port %i -socket /run/app/%i.sock\nRuntimeDirectory=app\nRuntimeDirectoryPreserve=yes\n", 1)

// machineBareReload is handswitch.sh reload for Debian's nginx.service:
// `systemctl reload nginx` and a wait for its old workers.
const machineBareReload = `old=$(pgrep -P "$(cat /run/nginx.pid)")
systemctl reload nginx.service
for p in $old; do
	while kill -0 "$p" 2>/dev/null; do sleep 0.02; done
done`

// machineBenchDropIn lifts the slots' start limit for the benchmarks.
const machineBenchDropIn = "/etc/systemd/system/app@.service.d/bench.conf"

// machineStrategy is one way to move traffic on the machine; socket ones
// run after the machine has been turned to socket mode.
type machineStrategy struct {
	name   string
	socket bool
	move   func(b *testing.B, m *testedge.Machine)
}

var machineStrategies = []machineStrategy{
	{name: "edgeswitch", move: func(b *testing.B, m *testedge.Machine) { machineSwitch(b, m) }},
	{name: "bare-reload", move: func(b *testing.B, m *testedge.Machine) { mustIn(b, m, "sh", "-ec", machineBareReload) }},
	// Last: the machine stays in socket mode.
	{name: "socket", socket: true, move: func(b *testing.B, m *testedge.Machine) { machineSwitch(b, m, machineSocketFlags...) }},
}

var machineSocketFlags = []string{"--mode", "socket", "--socket", machineSocket, "--socket-link", machineSocketLink}

// BenchmarkMachineFailedRequests counts the requests that fail while 32
// keep-alive clients send GETs or POSTs through the machine's nginx and
// each strategy switches b.N times, as BenchmarkFailedRequests does on the
// sandbox edge: edgeswitch in reload mode, bare reloads of Debian's
// nginx.service (the floor for POSTs of that unit), and edgeswitch in
// socket mode. One machine serves them all, booted once.
func BenchmarkMachineFailedRequests(b *testing.B) {
	m := testedge.NewMachine(b, testedge.MachineOptions{})
	if err := m.InstallBinaries(b.Context()); err != nil {
		b.Fatal(err)
	}
	setUpAsREADME(b, m, "edgeswitch")
	noStartLimit(b, m)
	socketMode := false
	for _, s := range machineStrategies {
		for _, method := range []string{http.MethodGet, http.MethodPost} {
			b.Run("strategy="+s.name+"/method="+method, func(b *testing.B) {
				switch {
				case s.socket && !socketMode:
					toSocketMode(b, m)
					socketMode = true
				case !s.socket && socketMode:
					b.Fatal("the machine is in socket mode already: the strategies in reload mode come first")
				}
				machineLive(b, m)
				load := machineBenchLoad(b, m, method)
				countFailures(b, load, s.name+" "+method+" on the machine", func(int) { s.move(b, m) })
			})
		}
	}
}

// noStartLimit lifts systemd's start limit (5 starts in 10 s) off the
// slots with a drop-in, so README's unit stays as it is: benchmarks and
// tests of 20 switches in a row start each slot more often than that.
func noStartLimit(t testing.TB, m *testedge.Machine) {
	t.Helper()
	installIn(t, m, machineBenchDropIn, "[Unit]\nStartLimitIntervalSec=0\n")
	mustIn(t, m, "systemctl", "daemon-reload")
}

// machineSwitch runs `edgeswitch switch` in the machine, on README's
// settings, at the benchmarks' pacing.
func machineSwitch(b testing.TB, m *testedge.Machine, flags ...string) {
	b.Helper()
	argv := append([]string{"edgeswitch", "switch", "--health-interval", healthInterval.String()}, flags...)
	if r := inMachine(b, m, argv...); r.code != 0 {
		journal := inMachine(b, m, "journalctl", "--no-pager", "-n", "30", "-u", "app@*.service")
		b.Fatalf("in machine: %s: exit %d\n%s\nthe slots' journal:\n%s", strings.Join(argv, " "), r.code, r.stderr, journal.stdout)
	}
}

// machineBenchLoad drives the benchmarks' clients through the machine's
// nginx until the benchmark stops it.
func machineBenchLoad(b *testing.B, m *testedge.Machine, method string) *testedge.Load {
	b.Helper()
	ctx, cancel := context.WithTimeout(b.Context(), 10*time.Minute)
	b.Cleanup(cancel)
	var body []byte
	if method == http.MethodPost {
		body = []byte(`{"order": 42}`)
	}
	return testedge.RunLoad(ctx, testedge.LoadOptions{URL: machineURL, Clients: benchClients, Method: method, Path: benchPath, Body: body, Dial: m.Dial})
}

// toSocketMode turns README's set-up to socket mode the supported way: the
// template unit runs the app on a unix socket, the upstream's keepalive
// gets the bounds socket mode needs, and a
// first `edgeswitch switch --mode socket` starts the other slot on its
// socket and turns the upstream's server into the link, with one reload.
func toSocketMode(b testing.TB, m *testedge.Machine) {
	b.Helper()
	if bb, ok := b.(*testing.B); ok {
		bb.StopTimer()
		defer bb.StartTimer()
	}
	installIn(b, m, machineUnitPath, machineSocketUnit)
	mustIn(b, m, "systemctl", "daemon-reload")
	conf := mustIn(b, m, "cat", machineAppConf)
	const keepalive = "    keepalive 16;\n"
	if !strings.Contains(conf, keepalive) {
		b.Fatalf("%s has no %q:\n%s", machineAppConf, keepalive, conf)
	}
	installIn(b, m, machineAppConf, testedge.BoundKeepalive(conf))
	mustIn(b, m, "sh", "-ec", "nginx -t -q && "+machineBareReload)
	machineSwitch(b, m, machineSocketFlags...)
	if conf := mustIn(b, m, "cat", machineAppConf); !strings.Contains(conf, "server unix:"+machineSocketLink+";") {
		b.Fatalf("after the first switch in socket mode %s does not list the link:\n%s", machineAppConf, conf)
	}
}
