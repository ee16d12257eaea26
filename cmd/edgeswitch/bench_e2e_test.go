package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/edgeswitch/edgeswitch/internal/testedge"
	"golang.org/x/perf/benchmath"
)

// The benchmarks run edgeswitch on the sandbox edge beside the switches an
// operator would otherwise write (testdata/handswitch.sh). `make bench` runs
// them with -benchtime 20x and writes BENCHMARKS.md from their output
// (internal/benchreport); an op is one switch.

const (
	benchClients = 32
	// benchPath is what the load asks for: an app that takes 10 ms per
	// request, so requests are always in flight when a slot goes away.
	benchPath = "/?sleep=10ms"
	// benchGap lets traffic settle on the new slot between switches.
	benchGap = 200 * time.Millisecond
	// healthInterval and workerPoll pace both edgeswitch and the scripts.
	healthInterval = 100 * time.Millisecond
	workerPoll     = 20 * time.Millisecond
)

// strategy is one way to move traffic from slot from to slot to.
type strategy struct {
	name    string
	socket  bool                                 // on an edge whose slots listen on unix sockets
	prepare func(b *testing.B, e *testedge.Edge) // before the load starts; may be nil
	move    func(b *testing.B, e *testedge.Edge, from, to int)
}

var strategies = []strategy{
	{name: "socket", socket: true, move: func(b *testing.B, e *testedge.Edge, _, _ int) { benchSocketSwitch(b, e) }},
	{name: "edgeswitch", move: func(b *testing.B, e *testedge.Edge, _, _ int) { benchSwitch(b, e) }},
	{name: "careful-script", move: script("careful")},
	{name: "naive", move: script("naive")},
	{name: "both-listed-kill", prepare: listBothPorts, move: script("kill")},
	{name: "bare-reload", move: script("reload")},
}

// BenchmarkFailedRequests counts the requests that fail while 32 keep-alive
// clients send GETs or POSTs through nginx and each strategy switches b.N
// times. socket is edgeswitch's socket mode, on an edge whose upstream
// lists the link from the start: it moves the link and never reloads
// nginx. bare-reload only reloads nginx: the floor for POSTs of this nginx
// unit, which a reload that closes idle keep-alive connections can cut.
func BenchmarkFailedRequests(b *testing.B) {
	for _, s := range strategies {
		for _, method := range []string{http.MethodGet, http.MethodPost} {
			b.Run("strategy="+s.name+"/method="+method, func(b *testing.B) {
				e := benchEdge(b, s.socket)
				if s.prepare != nil {
					s.prepare(b, e)
				}
				load := startLoad(b, e, benchClients, method, benchPath)
				countFailures(b, load, s.name+" "+method, func(i int) { s.move(b, e, e.Ports[i%2], e.Ports[(i+1)%2]) })
			})
		}
	}
}

// countFailures switches b.N times (move) under load, with a gap after
// each that is not timed, then stops the load and reports the failed and
// sent requests per switch.
func countFailures(b *testing.B, load *testedge.Load, what string, move func(i int)) {
	b.Helper()
	time.Sleep(benchGap)
	b.ResetTimer()
	for i := range b.N {
		move(i)
		b.StopTimer()
		time.Sleep(benchGap)
		b.StartTimer()
	}
	b.StopTimer()
	st := load.Stop()
	b.ReportMetric(float64(st.Failed)/float64(b.N), "failed/op")
	b.ReportMetric(float64(st.Requests)/float64(b.N), "requests/op")
	if st.Failed > 0 {
		b.Logf("%s, %d switches: %s", what, b.N, st)
	}
}

// BenchmarkSwitchOverhead times edgeswitch and the careful hand-written
// switch, alternating which goes first, each minus the app's own time to
// become healthy (from its start to its first possible healthy answer). An
// op is one switch of each, both with the same app readiness.
func BenchmarkSwitchOverhead(b *testing.B) {
	e := testedge.New(b, testedge.Options{})
	var ours, hand, ratio []float64
	ourSwitch := func(to int) float64 { return overhead(b, e, func() { benchSwitch(b, e) }, to) }
	handSwitch := func(from, to int) float64 {
		return overhead(b, e, func() { handswitch(b, e, "careful", from, to) }, to)
	}
	a, z := e.Ports[0], e.Ports[1] // each op goes a -> z -> a
	b.ResetTimer()
	for i := range b.N {
		setReadyAfter(b, e, i)
		var o, h float64
		if i%2 == 0 {
			o = ourSwitch(z)
			h = handSwitch(z, a)
		} else {
			h = handSwitch(a, z)
			o = ourSwitch(a)
		}
		ours, hand, ratio = append(ours, o), append(hand, h), append(ratio, o/h)
	}
	b.StopTimer()
	b.ReportMetric(median(ours), "edgeswitch-ms")
	b.ReportMetric(median(hand), "hand-ms")
	b.ReportMetric(median(ratio), "ratio")
}

// BenchmarkSocketOverhead times edgeswitch's switch in socket mode beside
// its switch in reload mode, each on an edge of its own (the socket edge's
// slots listen on unix sockets), as BenchmarkSwitchOverhead counts it: the
// wall time minus the app's own time to become healthy. An op is one switch
// on each edge, alternating which goes first, both with the same app
// readiness; ratio is the median of the per-op ratios, socket over reload.
func BenchmarkSocketOverhead(b *testing.B) {
	reload, socket := benchEdge(b, false), benchEdge(b, true)
	var rel, sock, ratio []float64
	b.ResetTimer()
	for i := range b.N {
		setReadyAfter(b, reload, i)
		setReadyAfter(b, socket, i)
		// Both edges start on Ports[0]; op i moves each to Ports[(i+1)%2].
		var r, s float64
		reloadSwitch := func() {
			r = overhead(b, reload, func() { benchSwitch(b, reload) }, reload.Ports[(i+1)%2])
		}
		socketSwitch := func() {
			s = overhead(b, socket, func() { benchSocketSwitch(b, socket) }, socket.Ports[(i+1)%2])
		}
		if i%2 == 0 {
			reloadSwitch()
			socketSwitch()
		} else {
			socketSwitch()
			reloadSwitch()
		}
		rel, sock, ratio = append(rel, r), append(sock, s), append(ratio, s/r)
	}
	b.StopTimer()
	b.ReportMetric(median(sock), "socket-ms")
	b.ReportMetric(median(rel), "reload-ms")
	b.ReportMetric(median(ratio), "ratio")
}

// overhead runs move, a switch of e to slot to, and returns its wall time
// minus the new slot's own time to become healthy (from its start to its
// first possible healthy answer, as the app logs them), in milliseconds.
func overhead(b *testing.B, e *testedge.Edge, move func(), to int) float64 {
	b.Helper()
	start := time.Now()
	move()
	wall := time.Since(start)
	boot := lastBoot(b, e, to)
	return ms(wall - boot.Healthy.Sub(boot.Started))
}

// BenchmarkReadiness measures how long edgeswitch takes to notice that the
// new slot became healthy: from the moment the app's /health first answers
// 200 to the moment edgeswitch reports the health step done. The app's
// readiness moves from switch to switch (setReadyAfter), so the figures
// cover every phase against the polling.
func BenchmarkReadiness(b *testing.B) {
	e := testedge.New(b, testedge.Options{})
	var delays []float64
	for i := range b.N {
		setReadyAfter(b, e, i)
		to := e.Ports[(i+1)%2]
		moved := healthDoneAt(b, e)
		delays = append(delays, ms(moved.Sub(lastBoot(b, e, to).Healthy)))
	}
	b.StopTimer()
	b.ReportMetric(median(delays), "delay-ms")
	b.ReportMetric(slices.Max(delays), "max-delay-ms")
	b.ReportMetric(ms(healthInterval), "interval-ms")
}

// setReadyAfter makes the next slots healthy 200 ms after they start, plus
// 13 ms more for each op up to the tenth (0 to 117 ms): the phase of
// readiness against the polling varies, so no switch is lucky or unlucky
// every time. The steps cover a whole health interval (100 ms, the
// scripts' curl poll and edgeswitch's after a slot's first second) and,
// 13 being prime to 10, every millisecond of edgeswitch's 10 ms polls of
// a slot's first second.
func setReadyAfter(b *testing.B, e *testedge.Edge, op int) {
	b.Helper()
	b.StopTimer()
	defer b.StartTimer()
	ready := 200*time.Millisecond + readyStep*time.Duration(op%10)
	if err := e.SetAppArgs(b.Context(), "-ready-after="+ready.String()); err != nil {
		b.Fatal(err)
	}
}

// readyStep is setReadyAfter's step from op to op.
const readyStep = 13 * time.Millisecond

// benchSwitch runs `edgeswitch switch` at the benchmarks' pacing.
func benchSwitch(b *testing.B, e *testedge.Edge) {
	b.Helper()
	if r := runWith(b, e.Env, append([]string{"switch"}, benchFlags(e)...)...); r.code != 0 {
		b.Fatalf("edgeswitch switch: exit %d\n%s", r.code, r.stderr)
	}
}

func benchFlags(e *testedge.Edge) []string {
	return edgeFlags(e, "--health-interval", healthInterval.String())
}

// benchSocketSwitch runs `edgeswitch switch --mode socket` at the
// benchmarks' pacing.
func benchSocketSwitch(b *testing.B, e *testedge.Edge) {
	b.Helper()
	if r := runWith(b, e.Env, append([]string{"switch"}, benchSocketFlags(e)...)...); r.code != 0 {
		b.Fatalf("edgeswitch switch --mode socket: exit %d\n%s", r.code, r.stderr)
	}
}

func benchSocketFlags(e *testedge.Edge) []string {
	return append(benchFlags(e), socketFlags(e)...)
}

// benchEdge is a sandbox edge; with socket, one whose slots listen on unix
// sockets, for edgeswitch's socket mode.
func benchEdge(b *testing.B, socket bool) *testedge.Edge {
	b.Helper()
	return testedge.New(b, testedge.Options{Socket: socket})
}

// socketFlags are the settings of socket mode on the edge.
func socketFlags(e *testedge.Edge) []string {
	return []string{"--mode", "socket", "--socket", e.SocketPattern, "--socket-link", e.SocketLink}
}

// healthDoneAt runs `edgeswitch switch --json` and returns when its health
// step's event arrived.
func healthDoneAt(b *testing.B, e *testedge.Edge) time.Time {
	b.Helper()
	cmd := exec.Command(binary(b), append([]string{"switch", "--json"}, benchFlags(e)...)...)
	cmd.Env = append(os.Environ(), e.Env...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	var at time.Time
	lines := bufio.NewScanner(out)
	for lines.Scan() {
		var l struct {
			Event *struct{ Step string }
		}
		if json.Unmarshal(lines.Bytes(), &l) == nil && l.Event != nil && l.Event.Step == "health" && at.IsZero() {
			at = time.Now()
		}
	}
	if err := cmd.Wait(); err != nil || at.IsZero() {
		b.Fatalf("edgeswitch switch --json: %v (health event seen: %t)\n%s", err, !at.IsZero(), stderr.String())
	}
	return at
}

// script returns a strategy's move that runs handswitch.sh mode.
func script(mode string) func(b *testing.B, e *testedge.Edge, from, to int) {
	return func(b *testing.B, e *testedge.Edge, from, to int) { handswitch(b, e, mode, from, to) }
}

// handswitch runs testdata/handswitch.sh mode against the edge.
func handswitch(b *testing.B, e *testedge.Edge, mode string, from, to int) {
	b.Helper()
	cmd := exec.Command("bash", "testdata/handswitch.sh", mode)
	cmd.Env = append(os.Environ(), e.Env...)
	cmd.Env = append(cmd.Env,
		"FROM="+strconv.Itoa(from), "TO="+strconv.Itoa(to),
		"APP_UNIT="+e.AppUnit, "NGINX_UNIT="+e.NginxUnit,
		"NGINX_BIN="+testedge.NginxBin, "NGINX_CONF="+e.NginxConf, "NGINX_PID="+e.PIDFile,
		"UPSTREAM_FILE="+e.UpstreamFile, "HEALTH_PATH=/health",
		fmt.Sprintf("INTERVAL=%g", healthInterval.Seconds()), fmt.Sprintf("POLL=%g", workerPoll.Seconds()))
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("handswitch.sh %s from %d to %d: %v\n%s", mode, from, to, err, out)
	}
}

// listBothPorts gives the edge the layout that lists both slots in the
// upstream, and reloads nginx with it.
func listBothPorts(b *testing.B, e *testedge.Edge) {
	b.Helper()
	conf, err := os.ReadFile(e.UpstreamFile)
	if err != nil {
		b.Fatal(err)
	}
	one := fmt.Sprintf("server 127.0.0.1:%d;", e.Ports[0])
	both := fmt.Sprintf("%s\n    server 127.0.0.1:%d;", one, e.Ports[1])
	if !strings.Contains(string(conf), one) {
		b.Fatalf("%s does not list %s:\n%s", e.UpstreamFile, one, conf)
	}
	if err := os.WriteFile(e.UpstreamFile, []byte(strings.Replace(string(conf), one, both, 1)), 0o644); err != nil {
		b.Fatal(err)
	}
	handswitch(b, e, "reload", 0, 0)
}

func lastBoot(b *testing.B, e *testedge.Edge, port int) testedge.Boot {
	b.Helper()
	boot, err := e.LastBoot(port)
	if err != nil || boot.Healthy.IsZero() {
		b.Fatalf("slot %d: %+v, %v; want a healthy start in its log", port, boot, err)
	}
	return boot
}

// median is the median of one run's per-op values, which go into the
// benchmark's result as one figure. It is benchmath's, as the report's
// medians over the runs are: one definition of the median, and one that is
// tested, which a helper in this file (run only on a machine with nginx
// and systemd) would not be. The interval it computes is not used here:
// the spread that counts is the one between runs, which the report shows.
func median(xs []float64) float64 {
	sample := benchmath.NewSample(slices.Clone(xs), &benchmath.DefaultThresholds) // NewSample sorts
	return benchmath.AssumeNothing.Summary(sample, 0.95).Center
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// badBuildBake is the bake of BenchmarkBadBuildFailures: long enough that
// the 5xx watch, not its end, rolls the bad build back.
const badBuildBake = 5 * time.Second

// BenchmarkBadBuildFailures counts the requests that fail on a bad build
// (demoapp -fail-root: /health answers 200, / answers 500) before the
// bake's 5xx watch rolls it back, with a bake alone (canary=0) and with a
// canary of 10% (canary=10), as TestCanaryCutsTheFailuresOfABadBuild does
// once. An op is one switch to the bad build, rolled back, under 32
// keep-alive clients that keep their pace through the 500s (LoadOptions
// Steady, as steadyLoad), so that both offer the same load; 200 ms pass
// between switches. failed/op counts every failure the clients saw from
// the start of the switch to the next one: the bad build's 500s and
// anything the two reloads cut.
func BenchmarkBadBuildFailures(b *testing.B) {
	for _, canary := range []int{0, 10} {
		b.Run("canary="+strconv.Itoa(canary), func(b *testing.B) {
			e := testedge.New(b, testedge.Options{AccessLog: true})
			// A good switch first, as in the test: the live slot is the one
			// enabled at boot, and the history has a switch.
			if r := edgeswitch(b, e, "switch"); r.code != 0 {
				b.Fatalf("first switch: exit %d\n%s", r.code, r.stderr)
			}
			if err := e.SetAppArgs(b.Context(), "-fail-root"); err != nil {
				b.Fatal(err)
			}
			flags := benchFlags(e)
			flags = append(flags, "--bake", badBuildBake.String())
			if canary > 0 {
				flags = append(flags, "--canary", strconv.Itoa(canary))
			}
			// steadyLoad's clients; it takes a *testing.T.
			load := testedge.RunLoad(b.Context(), testedge.LoadOptions{URL: e.URL(""), Clients: benchClients, Steady: true})
			binary(b) // built before the clock starts
			time.Sleep(benchGap)
			b.ResetTimer()
			start := load.Snapshot()
			for range b.N {
				r := runWith(b, e.Env, append([]string{"switch"}, flags...)...)
				if r.code != 1 || !strings.Contains(r.stderr, "rolled back: the new slot failed its bake") {
					b.Fatalf("edgeswitch switch %s: exit %d, want 1 with a rollback by the bake\n%s", strings.Join(flags[len(flags)-2:], " "), r.code, r.stderr)
				}
				b.StopTimer()
				time.Sleep(benchGap)
				b.StartTimer()
			}
			b.StopTimer()
			st := since(start, load.Stop())
			b.ReportMetric(float64(st.Failed)/float64(b.N), "failed/op")
			b.ReportMetric(float64(st.Requests)/float64(b.N), "requests/op")
			if n := st.Failed - st.Errors["status 500"]; n > 0 || st.Errors["status 500"] == 0 {
				b.Logf("canary %d%%, %d switches: %d failed other than with the bad build's 500: %s", canary, b.N, n, st)
			}
		})
	}
}
