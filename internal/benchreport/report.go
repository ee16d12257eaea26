package main

import (
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/perf/benchmath"
)

// machine is what the figures were measured on.
type machine struct {
	Date, CPU, OS, Kernel, Systemd, Nginx, Go string
	Cores                                     int
	MemGiB                                    float64
}

// target is one figure the issue tracker asked for, against its bar.
type target struct {
	what, figure string
	met          bool
	gap          string // what would close it, shown when missed
}

// report renders BENCHMARKS.md from parsed results.
type report struct {
	res     results
	m       machine
	targets []target
}

var strategies = []struct{ name, desc string }{
	{"socket", "`edgeswitch switch --mode socket`: start the new slot on its unix socket, poll its health, point the link that nginx's upstream lists at the new slot's socket (a new symlink renamed over the old one), wait until nginx holds no connection to the old slot, stop it. No reload: the sandbox edge's upstream lists the link from the start; on the machine a first switch, before the load, turned the upstream's server into the link."},
	{"edgeswitch", "`edgeswitch switch` (reload mode): start the new slot, poll its health, rewrite the upstream, `nginx -t`, reload over D-Bus, wait for the old workers to exit, stop the old slot."},
	{"careful-script", "`handswitch.sh careful`: the same steps written by hand in bash (systemctl, curl, sed, pgrep); the switch of section 2."},
	{"naive", "`handswitch.sh naive`: the careful script without the wait: the old slot is stopped right after the reload."},
	{"both-listed-kill", "`handswitch.sh kill`: the upstream lists both ports (nginx defaults: `max_fails=1`, `fail_timeout=10s`); start the new slot, poll its health with curl, SIGKILL the old one. No reload."},
	{"bare-reload", "`systemctl reload` of the nginx unit and a wait for its old workers (`handswitch.sh reload`; on the machine the same two lines of shell); no switch at all. The floor for POSTs of that nginx unit."},
}

// edge is where BenchmarkFailedRequests-like benchmarks ran.
type edge struct {
	bench      string   // benchmark name, before /strategy=
	title      string   // heading of its table
	unit       string   // its nginx unit, for the floor table
	where      string   // "on the sandbox edge", for targets
	about      string   // what it is
	strategies []string // its rows, in strategies' order
}

var edges = []edge{
	{
		bench: "BenchmarkFailedRequests", title: "On the sandbox edge", where: "sandbox edge",
		unit:       "the sandbox edge's own unit (user manager, `nginx -s reload`, 2 workers as root)",
		about:      "A systemd user manager (internal/testedge) runs nginx as a unit of the edge's own (`Type=forking`, `ExecReload=nginx -s reload`), 2 workers, the upstream with `keepalive 16`, and the slots as a template unit. Socket mode runs on an edge of the same kind whose slots listen on unix sockets and whose upstream lists one server, `unix:` the link, with `keepalive 16` bounded by `keepalive_time` and `keepalive_timeout` of 500 ms.",
		strategies: []string{"socket", "edgeswitch", "careful-script", "naive", "both-listed-kill", "bare-reload"},
	},
	{
		bench: "BenchmarkMachineFailedRequests", title: "On the production path: systemd as PID 1, Debian's nginx.service", where: "Debian's nginx.service",
		unit:       "Debian's `nginx.service`, unchanged (system manager, workers as www-data)",
		about:      "A machine (internal/testedge): systemd as PID 1 in namespaces, the system bus, Debian's unchanged `nginx.service` and `/etc/nginx`, set up as README's \"Installing on a real host\" says (the upstream with `keepalive 16` in conf.d, Debian's default site proxying to it); edgeswitch runs inside it on its defaults, the clients on the host. For socket mode, run last, the template unit runs the app on `/run/app/PORT.sock` (`RuntimeDirectory=app`, `RuntimeDirectoryPreserve=yes`: both slots share the directory), the upstream's `keepalive` gets those bounds, and a first `edgeswitch switch --mode socket`, before the load, turns its server into `unix:/var/lib/edgeswitch/app.sock`.",
		strategies: []string{"edgeswitch", "bare-reload", "socket"},
	},
}

var scaleSizes = []int{1_000, 10_000, 50_000}

const (
	maxOverheadRatio = 1.2
	maxSocketRatio   = 0.5 // socket mode's switch overhead over reload mode's
	readinessMS      = 15  // median delay to notice a slot is ready
	scaleBudgetMS    = 500 // find + edit + diff at 10,000 server blocks
	memoryBudgetMB   = 200
	minCanaryCut     = 5 // a canary of 10% cuts the failures of a bad build by this much
)

// render returns the tables, the targets and how to run them: all of
// BENCHMARKS.md but the raw output.
func (r *report) render() string {
	var b strings.Builder
	r.targets = nil
	body := r.failures() + r.overhead() + r.readiness() + r.scale() + r.badBuild()
	fmt.Fprintf(&b, "# Benchmarks\n\nWritten by `make bench` on %s. Each figure is the median of %s. In brackets, where the runs differ, is its confidence interval: the range that holds the true median with at least %.0f%% confidence, as benchmath (golang.org/x/perf) computes it without assuming a distribution. 5 runs are the fewest that give one, and with 5 or 6 it spans their lowest to their highest; figures over fewer runs have none. The raw `go test -bench` output is at the end and reads into benchstat.\n\n",
		r.m.Date, r.runs(), confidence*100)
	b.WriteString("| | |\n|---|---|\n")
	fmt.Fprintf(&b, "| machine | %s, %d cores, %.1f GiB RAM |\n", r.m.CPU, r.m.Cores, r.m.MemGiB)
	fmt.Fprintf(&b, "| system | %s, Linux %s, systemd %s |\n", r.m.OS, r.m.Kernel, r.m.Systemd)
	fmt.Fprintf(&b, "| nginx | %s |\n| Go | %s |\n\n", r.m.Nginx, r.m.Go)
	b.WriteString(r.summary())
	b.WriteString(body)
	b.WriteString(reproduce)
	return b.String()
}

// rawSection appends the benchmark output the figures came from, which
// benchstat reads as it is.
func rawSection(raw string) string {
	return "\n## Raw output\n\n```\n" + strings.TrimRight(raw, "\n") + "\n```\n"
}

// runs says how many runs each median is over.
func (r *report) runs() string {
	counts := map[int]bool{}
	for _, rs := range r.res {
		counts[len(rs)] = true
	}
	ns := slices.Sorted(maps.Keys(counts))
	if len(ns) == 1 && ns[0] == 1 {
		return "1 run (no repeats: `BENCH_COUNT=1`)"
	}
	parts := make([]string, len(ns))
	for i, n := range ns {
		parts[i] = strconv.Itoa(n)
	}
	return strings.Join(parts, " or ") + " runs (`-count`)"
}

func (r *report) summary() string {
	var b strings.Builder
	b.WriteString("## Targets\n\n| target | figure | |\n|---|---|---|\n")
	var missed []target
	for _, t := range r.targets {
		verdict := "met"
		if !t.met {
			verdict, missed = "**missed**", append(missed, t)
		}
		fmt.Fprintf(&b, "| %s | %s | %s |\n", t.what, t.figure, verdict)
	}
	b.WriteString("\n")
	for _, t := range missed {
		gap := t.gap
		if t.figure == notMeasured {
			gap = "Not measured: its benchmark did not run or did not finish; the raw output says which."
		}
		fmt.Fprintf(&b, "**Missed: %s.** %s\n\n", t.what, gap)
	}
	return b.String()
}

func (r *report) add(what, figure string, met bool, gap string) {
	r.targets = append(r.targets, target{what, figure, met, gap})
}

func (r *report) failures() string {
	var b strings.Builder
	switches := 0
	for _, e := range edges {
		for _, s := range e.strategies {
			for _, ru := range r.res[failName(e.bench, s, "GET")] {
				switches = max(switches, ru.n)
			}
		}
	}
	fmt.Fprintf(&b, "## 1. Failed requests during %d switches\n\n", switches)
	b.WriteString("32 clients, each with one keep-alive connection, send requests back to back through nginx; the app takes 10 ms to answer each, so requests are always in flight. 200 ms pass between switches. A request fails on a transport error or a 5xx; a client pauses 10 ms after a failure.\n\n")
	for _, e := range edges {
		fmt.Fprintf(&b, "### %s\n\n%s\n\n", e.title, e.about)
		b.WriteString("| strategy | GET failed | POST failed | time per switch |\n|---|---|---|---|\n")
		for _, s := range e.strategies {
			took, ok := r.res.median(failName(e.bench, s, "GET"), "ns/op")
			seconds := func(ns float64) string { return strconv.FormatFloat(ns/1e9, 'f', 2, 64) }
			fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", s, r.failed(e.bench, s, "GET"), r.failed(e.bench, s, "POST"), measured(ok, withCI(took, seconds, " s")))
		}
		b.WriteString("\n")
	}
	for _, s := range strategies {
		fmt.Fprintf(&b, "- **%s**: %s\n", s.name, s.desc)
	}
	fmt.Fprintf(&b, "\n### The floor of bare reloads, per nginx unit\n\n")
	fmt.Fprintf(&b, "| nginx unit | GET failed | POST failed |\n|---|---|---|\n")
	for _, e := range edges {
		fmt.Fprintf(&b, "| %s | %s | %s |\n", e.unit, r.failed(e.bench, "bare-reload", "GET"), r.failed(e.bench, "bare-reload", "POST"))
	}
	b.WriteString(`
A reload closes idle client keep-alive connections; a POST written on one just as an old worker closes it fails with a reset, and a client may not retry a POST on its own. How many that cuts is not one number: it differs from one nginx unit and configuration to another (the table above; why, we have not measured), so each edge's switches in reload mode are held against the bare reloads of its own nginx unit. Socket mode does not reload nginx, so it has no such floor: its bar is no failed request of any method.

Why the others fail: after a reload the old nginx workers keep serving the requests on their connections, and they still proxy to the old slot; stopping it at once (naive) answers those with 502 until the old workers are gone. With both ports listed, nginx has marked the new slot down while it was stopped (connection refused), so when the old one is killed no server is left ("no live upstreams" in nginx's error log) until ` + "`fail_timeout`" + ` passes, and the requests in flight on the killed slot are cut.

edgeswitch's switches take longer than the naive ones because they wait for the old workers to exit, which is what keeps those requests from failing.

`)
	for _, e := range edges {
		r.failureTargets(e)
	}
	return b.String()
}

// failureTargets adds the targets of one edge's failed requests: none of
// any method in socket mode; in reload mode no failed GET and no more
// failed POSTs than bare reloads of the same nginx unit.
func (r *report) failureTargets(e edge) {
	sockGet, ok1 := r.res.total(failName(e.bench, "socket", "GET"), "failed/op")
	sockPost, ok2 := r.res.total(failName(e.bench, "socket", "POST"), "failed/op")
	worstGet, _ := r.res.maxTotal(failName(e.bench, "socket", "GET"), "failed/op")
	worstPost, _ := r.res.maxTotal(failName(e.bench, "socket", "POST"), "failed/op")
	r.add("socket mode: no request of any method fails, "+e.where+" (every run)",
		measured(ok1 && ok2, fmt.Sprintf("GET %s, POST %s; worst run %s", withCI(sockGet, fixed(0), ""), withCI(sockPost, fixed(0), ""), fixed(0)(max(worstGet, worstPost)))),
		ok1 && ok2 && worstGet == 0 && worstPost == 0,
		"A request failed in socket mode, which does not reload nginx: the kinds are in the raw output (a 502 is nginx reaching a slot that had gone, i.e. the old slot stopped while nginx still had a connection to it; a reset or EOF is a client connection cut). `go test -run '^$' -bench '"+strings.TrimPrefix(e.bench, "Benchmark")+"/strategy=socket' -benchtime 20x -v ./cmd/edgeswitch` repeats it, and the switch's stderr says how long its drain took.")
	get, okGet := r.res.total(failName(e.bench, "edgeswitch", "GET"), "failed/op")
	r.add("no GET fails during edgeswitch switches (reload mode), "+e.where, measured(okGet, withCI(get, fixed(0), "")), okGet && get.Center == 0,
		"A GET that fails means a switch cut requests; `go test -run TestSwitchUnderLoad -v ./cmd/edgeswitch` (or TestMachineSwitchesUnderLoad, on the machine) repeats it with the failure kinds in the log.")
	post, okPost := r.res.total(failName(e.bench, "edgeswitch", "POST"), "failed/op")
	floor, okFloor := r.res.total(failName(e.bench, "bare-reload", "POST"), "failed/op")
	gap := "More POSTs fail than during bare reloads of the same nginx unit: the switch adds to what the reload itself cuts."
	if hand, ok := r.res.total(failName(e.bench, "careful-script", "POST"), "failed/op"); ok && hand.Center >= post.Center-1 {
		gap += fmt.Sprintf(" The careful hand-written switch, the same sequence, loses as many (%.0f), so the extra comes with switching, not with edgeswitch's own steps.", hand.Center)
	}
	gap += " They are connection resets (see the raw output): a POST written on a keep-alive connection just as an old nginx worker closes it on its way out, which a client does not retry on its own. Our guess, not yet measured, is timing: a switch starts the new app and runs `nginx -t` just before the reload, so the machine is busier when the old workers close their connections; a bare-reload run with the same CPU load beside it would tell. Socket mode, which does not reload, removes them (its row above); in reload mode, clients that send an `Idempotency-Key` header on POSTs get them retried (Go's net/http does) and lose none. To look closer: `go test -run '^$' -bench '" + strings.TrimPrefix(e.bench, "Benchmark") + "/.*/method=POST' -benchtime 20x -count 5 -v ./cmd/edgeswitch`."
	r.add("POSTs failed during edgeswitch switches (reload mode), against bare reloads of the same nginx unit, "+e.where,
		measured(okPost && okFloor, withCI(post, fixed(0), "")+" vs "+withCI(floor, fixed(0), "")),
		okPost && okFloor && post.Center <= floor.Center+1, gap)
}

func failName(bench, strategy, method string) string {
	return bench + "/strategy=" + strategy + "/method=" + method
}

// failed renders "failed of sent" for a strategy and method.
func (r *report) failed(bench, strategy, method string) string {
	failed, ok1 := r.res.total(failName(bench, strategy, method), "failed/op")
	sent, ok2 := r.res.total(failName(bench, strategy, method), "requests/op")
	if !ok1 || !ok2 {
		return notMeasured
	}
	return fmt.Sprintf("%s of %s", withCI(failed, thousands, ""), thousands(sent.Center))
}

func (r *report) overhead() string {
	const name = "BenchmarkSwitchOverhead"
	ours, ok1 := r.res.median(name, "edgeswitch-ms")
	hand, ok2 := r.res.median(name, "hand-ms")
	ratio, ok3 := r.res.median(name, "ratio")
	var b strings.Builder
	b.WriteString("## 2. Switch overhead\n\n")
	b.WriteString("Wall time of a switch minus the app's own time to become healthy (from its start to the first moment `/health` answers 200, as the app logs it), for `edgeswitch switch` and for `handswitch.sh careful`: the same primitive operations written by hand (systemctl start, curl poll, sed, `nginx -t`, systemctl reload, wait for the old workers, systemctl stop). The script polls health every 100 ms; edgeswitch every 10 ms in a slot's first second, then every `health-interval` (100 ms); both poll the old workers every 20 ms. They run alternately on one edge, taking turns to go first; each op is one switch of each, with the app ready 200 ms after its start plus 13 ms more from op to op (0 to 117 ms), so neither gets a lucky polling phase every time. No load.\n\n")
	b.WriteString("| | overhead |\n|---|---|\n")
	fmt.Fprintf(&b, "| edgeswitch | %s |\n| hand-written | %s |\n| ratio (median of the per-op ratios) | %s |\n\n",
		measured(ok1, withCI(ours, fixed(0), " ms")), measured(ok2, withCI(hand, fixed(0), " ms")), measured(ok3, withCI(ratio, fixed(2), "")))
	b.WriteString("The overhead of both is mostly waiting: for the first healthy poll after the app is ready (for the script half its 100 ms on average, for edgeswitch half its 10 ms) and for nginx, whose master lets its old workers go 100 ms after it starts the new ones. edgeswitch's own extra work (a lock, a pending record, a second `nginx -t` before anything starts, unit checks over D-Bus, the history line) is small beside these waits; its step lines on stderr give each step's time.\n\n")
	r.add(fmt.Sprintf("switch overhead, edgeswitch over hand-written, ≤ %.1f", maxOverheadRatio), measured(ok3, withCI(ratio, fixed(2), "")), ok3 && ratio.Center <= maxOverheadRatio,
		"The step durations of `edgeswitch switch` (its stderr) show where the time goes; the preflight `nginx -t` could be skipped when the config is unchanged since the last good switch, and the D-Bus unit checks made once.")
	b.WriteString(r.socketOverhead())
	return b.String()
}

// socketOverhead renders socket mode's switch overhead beside reload
// mode's (BenchmarkSocketOverhead).
func (r *report) socketOverhead() string {
	const name = "BenchmarkSocketOverhead"
	sock, ok1 := r.res.median(name, "socket-ms")
	rel, ok2 := r.res.median(name, "reload-ms")
	ratio, ok3 := r.res.median(name, "ratio")
	var b strings.Builder
	b.WriteString("### Socket mode against reload mode\n\n")
	b.WriteString("The same overhead for `edgeswitch switch --mode socket` and `edgeswitch switch` (reload mode), each on a sandbox edge of its own (the socket edge's slots listen on unix sockets and its upstream lists the link), alternately, taking turns to go first, with the same app readiness in each op. No load.\n\n")
	b.WriteString("| | overhead |\n|---|---|\n")
	fmt.Fprintf(&b, "| socket mode | %s |\n| reload mode | %s |\n| ratio, socket over reload (median of the per-op ratios) | %s |\n\n",
		measured(ok1, withCI(sock, fixed(0), " ms")), measured(ok2, withCI(rel, fixed(0), " ms")), measured(ok3, withCI(ratio, fixed(2), "")))
	b.WriteString("Reload mode waits for nginx: `nginx -t`, the reload, its new workers and the exit of the old ones. Socket mode renames a link and waits until nginx holds no connection to the old slot: the requests in flight, and its cached connections, which nginx closes within the keepalive bounds.\n\n")
	r.add(fmt.Sprintf("switch overhead, socket mode over reload mode, ≤ %.1f", maxSocketRatio), measured(ok3, withCI(ratio, fixed(2), "")), ok3 && ratio.Center <= maxSocketRatio,
		"Socket mode's own steps (the link, the drain until nginx holds no connection to the old slot) are short; most of its overhead is what it shares with reload mode: starting the process, the decide step's unit queries, the preflight `nginx -t` (which a switch that touches no nginx file could skip) and the units' start and stop. The step lines of `edgeswitch switch --mode socket` on stderr give each step's time; `go test -run '^$' -bench SocketOverhead -benchtime 20x -v ./cmd/edgeswitch` repeats it.")
	return b.String()
}

func (r *report) readiness() string {
	const name = "BenchmarkReadiness"
	delay, ok1 := r.res.median(name, "delay-ms")
	worst, ok2 := r.res.max(name, "max-delay-ms")
	interval, ok3 := r.res.median(name, "interval-ms")
	var b strings.Builder
	b.WriteString("## 3. Readiness detection\n\n")
	b.WriteString("From the moment the new slot's `/health` first answers 200 (as the app logs it) to the moment edgeswitch reports the health step done (`--json`, read as it is written). The app is ready 200 ms after its start plus 13 ms more from switch to switch (0 to 117 ms), so every phase against the polling is covered.\n\n")
	fmt.Fprintf(&b, "| health interval | median delay | worst delay in all runs |\n|---|---|---|\n| %s | %s | %s |\n\n",
		measured(ok3, withCI(interval, fixed(0), " ms")), measured(ok1, withCI(delay, fixed(1), " ms")), measured(ok2, fmt.Sprintf("%.1f ms", worst)))
	b.WriteString("edgeswitch polls a starting slot every 10 ms for its first second, then every health interval: an app ready within its first second, as this one is, is noticed within about 10 ms plus that poll's round trip and the check that the unit is still running; one that takes longer, within an interval. Readiness pushed by the app itself (systemd `Type=notify`) would remove the polling.\n\n")
	r.add(fmt.Sprintf("readiness noticed within %d ms (median; worst shown)", readinessMS),
		measured(ok1 && ok2, fmt.Sprintf("%s, worst %.1f ms", withCI(delay, fixed(1), " ms"), worst)),
		ok1 && delay.Center <= readinessMS,
		"The health step polls a starting slot every 10 ms for its first second, so the median should be about half that: a higher one means the polls do not keep their pace (a slow probe, or the unit check after the healthy answer, over D-Bus, taking the time); the health step's line on stderr gives its time and its number of polls. Readiness that the app reports itself (systemd `Type=notify`, whose start job ends at READY=1) would remove the polling.")
	return b.String()
}

func (r *report) scale() string {
	var b strings.Builder
	b.WriteString("## 4. Config scale\n\n")
	b.WriteString("Find the upstream in the whole config tree, compute the edit and render the diff, on generated trees of server blocks (a tenth as many upstreams, about 20 lines per server block), beside `nginx -t` on the same tree in the same loop. Peak memory is the test process's resident high-water mark while it works on that size, the test binary included.\n\n")
	b.WriteString("| server blocks | lines | find + edit + diff | nginx -t | ratio | per 1,000 servers | peak memory |\n|---|---|---|---|---|---|---|\n")
	worstRatio, peak, allMeasured := 0.0, 0.0, true
	for _, n := range scaleSizes {
		name := fmt.Sprintf("BenchmarkScale/servers=%d", n)
		own, ok1 := r.res.median(name, "edgeswitch-ms/op")
		ref, ok2 := r.res.median(name, "nginx-t-ms/op")
		ratio, ok3 := r.res.median(name, "ratio")
		mem, ok4 := r.res.median(name, "peak-RSS-MB")
		lines, _ := r.res.median(name, "lines")
		if !ok1 || !ok2 || !ok3 || !ok4 {
			allMeasured = false
			fmt.Fprintf(&b, "| %s | %s | | | | | |\n", thousands(float64(n)), notMeasured)
			continue
		}
		worstRatio, peak = max(worstRatio, ratio.Center), max(peak, mem.Center)
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %.1f ms | %s |\n",
			thousands(float64(n)), thousands(lines.Center), withCI(own, fixed(0), " ms"), withCI(ref, fixed(0), " ms"),
			withCI(ratio, fixed(2), ""), own.Center/float64(n)*1000, withCI(mem, fixed(0), " MB"))
	}
	b.WriteString("\nTime grows with the size of the tree, about linearly; memory does not, because each file is parsed on its own and let go before the next.\n\n")
	tenK, ok := r.res.median("BenchmarkScale/servers=10000", "edgeswitch-ms/op")
	r.add(fmt.Sprintf("10,000 server blocks in under %d ms", scaleBudgetMS), measured(ok, withCI(tenK, fixed(0), " ms")), ok && tenK.Center < scaleBudgetMS,
		"Profile `go test -run '^$' -bench 'Scale/servers=10000' -cpuprofile cpu.out ./upstream/`: the parse is the bulk of it.")
	r.add(fmt.Sprintf("peak memory under %d MB", memoryBudgetMB), measured(allMeasured, fmt.Sprintf("%.0f MB", peak)), allMeasured && peak < memoryBudgetMB,
		"A single huge file is held whole while it is parsed; splitting it, or streaming the scanner, would bound memory.")
	r.add("no slower than nginx -t on the same tree", measured(allMeasured, fmt.Sprintf("ratio %.2f at worst", worstRatio)), allMeasured && worstRatio <= 1,
		"Profile the size where the ratio is above 1 (see the line above).")
	return b.String()
}

func badBuildName(canary int) string {
	return fmt.Sprintf("BenchmarkBadBuildFailures/canary=%d", canary)
}

// badBuild renders the failed requests of a bad build before its rollback,
// with a bake alone and with a canary of 10%, and how many times fewer the
// canary lets through.
func (r *report) badBuild() string {
	alone, canary := badBuildName(0), badBuildName(10)
	var b strings.Builder
	b.WriteString("## 5. Failed requests on a bad build before the rollback\n\n")
	b.WriteString("`edgeswitch switch --bake 5s` to a build that passes its health check but answers its users 500 (demoapp `-fail-root`), under 32 keep-alive clients that keep their pace through the 500s, so that both rows offer the same load; nginx writes an access log with `$upstream_addr $upstream_status`, and the bake's 5xx watch rolls the switch back. With `--canary 10` the upstream lists both slots during the bake, the new one with weight 10 of 100. A request fails on a transport error or a 5xx. The figures are per switch, each rolled back; 200 ms pass between switches.\n\n")
	b.WriteString("| | failed before the rollback | requests | time per switch |\n|---|---|---|---|\n")
	seconds := func(ns float64) string { return strconv.FormatFloat(ns/1e9, 'f', 2, 64) }
	for _, row := range []struct{ what, name string }{{"no canary (bake alone)", alone}, {"canary 10 %", canary}} {
		failed, ok1 := r.res.median(row.name, "failed/op")
		sent, ok2 := r.res.median(row.name, "requests/op")
		took, ok3 := r.res.median(row.name, "ns/op")
		fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", row.what, measured(ok1, withCI(failed, thousands, "")), measured(ok2, thousands(sent.Center)), measured(ok3, withCI(took, seconds, " s")))
	}
	ratio, ok := r.canaryCut()
	fmt.Fprintf(&b, "| ratio, no canary over canary | %s | | |\n\n", measured(ok, withCI(ratio, fixed(1), "x")))
	b.WriteString("The ratio is that of the two medians; in brackets, where both have an interval, the lowest and highest ratio their intervals allow (the low end of one over the high end of the other): the runs of the two are not paired, and this range holds the ratio of the true medians with the product of their confidences")
	if ok && !math.IsInf(ratio.Lo, 0) && !math.IsInf(ratio.Hi, 0) {
		fmt.Fprintf(&b, ", here at least %.0f%%", 100*ratio.Confidence)
	}
	b.WriteString(".")
	b.WriteString(" The watch rolls back on the share of 5xx among the new slot's answers, so it sees the bad build about as soon with a canary as without; in that time the canary has shown it to a tenth of the requests.\n\n")
	r.add(fmt.Sprintf("a canary of 10 %% cuts the failures of a bad build by at least %dx (median ratio)", minCanaryCut), measured(ok, withCI(ratio, fixed(1), "x")), ok && ratio.Center >= minCanaryCut,
		"The canary's bake ran longer before its rollback, or its share was above 10 %: the switch's stderr gives the bake's time and the share of 5xx it saw; `go test -run TestCanaryCutsTheFailuresOfABadBuild -v ./cmd/edgeswitch` logs both runs.")
	return b.String()
}

// canaryCut is the median of failed/op without a canary over the median
// with one. The runs of the two are not paired (-count repeats each
// sub-benchmark on its own), so the interval is the widest the two
// intervals allow: infinite at an end where either is open. No failure
// under the canary gives no ratio.
func (r *report) canaryCut() (benchmath.Summary, bool) {
	alone, ok1 := r.res.median(badBuildName(0), "failed/op")
	canary, ok2 := r.res.median(badBuildName(10), "failed/op")
	if !ok1 || !ok2 || canary.Center <= 0 {
		return benchmath.Summary{}, false
	}
	s := benchmath.Summary{Center: alone.Center / canary.Center, Lo: math.Inf(-1), Hi: math.Inf(1), Confidence: alone.Confidence * canary.Confidence}
	if !math.IsInf(alone.Lo, 0) && !math.IsInf(canary.Hi, 0) && canary.Hi > 0 {
		s.Lo = alone.Lo / canary.Hi
	}
	if !math.IsInf(alone.Hi, 0) && !math.IsInf(canary.Lo, 0) && canary.Lo > 0 {
		s.Hi = alone.Hi / canary.Lo
	}
	return s, true
}

const reproduce = "## How to run it\n\n" +
	"`make bench` runs everything (about 35 minutes with the default `BENCH_COUNT=5`) and rewrites this file. One part at a time:\n\n" +
	"```\n" +
	"go test -run '^$' -bench '^Benchmark(FailedRequests|SwitchOverhead|SocketOverhead|Readiness)$' -benchtime 20x ./cmd/edgeswitch/\n" +
	"go test -run '^$' -bench MachineFailedRequests -benchtime 20x ./cmd/edgeswitch/\n" +
	"go test -run '^$' -bench Scale -benchtime 5x ./upstream/\n" +
	"go test -run '^$' -bench BadBuild -benchtime 3x -count 5 ./cmd/edgeswitch/\n" +
	"```\n\n" +
	"The scripts edgeswitch is measured against are in `cmd/edgeswitch/testdata/handswitch.sh`; the machine's set-up is README's, as `cmd/edgeswitch/machine_e2e_test.go` follows it.\n"

const notMeasured = "not measured"

func measured(ok bool, figure string) string {
	if !ok {
		return notMeasured
	}
	return figure
}

// withCI renders a median with format and unit, and after it, in
// brackets, its confidence interval when the runs give one: "7 (1–22)",
// "220 ms (215–230)". An interval that format renders as one value (all
// the runs alike) is left out.
func withCI(s benchmath.Summary, format func(float64) string, unit string) string {
	fig := format(s.Center) + unit
	if math.IsInf(s.Lo, 0) || math.IsInf(s.Hi, 0) {
		return fig // too few runs for an interval
	}
	lo, hi := format(s.Lo), format(s.Hi)
	if lo == hi {
		return fig
	}
	return fmt.Sprintf("%s (%s–%s)", fig, lo, hi)
}

// fixed formats with prec digits after the point.
func fixed(prec int) func(float64) string {
	return func(v float64) string { return strconv.FormatFloat(v, 'f', prec, 64) }
}

// thousands renders a count with thousands separators: 29300 -> "29,300".
func thousands(v float64) string {
	s := strconv.FormatFloat(v, 'f', 0, 64)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}
