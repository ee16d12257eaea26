package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/edgeswitch/edgeswitch/internal/testedge"
)

// The canary tests switch under 32 keep-alive GET clients with --bake and
// --canary: during the bake both slots are listed with nginx weights and
// the new one gets its share of the requests, after it all of them; a
// build that passes its health check but answers its users 500 is rolled
// back by the bake's 5xx watch (an access log that records the upstream
// and its status), and the canary shows it to far fewer of them.

// startSwitchOut is startSwitch with the switch's stdout (the diff) kept
// in stdout, which is whole once wait has returned.
func startSwitchOut(t *testing.T, e *testedge.Edge, stdout *bytes.Buffer, extra ...string) *running {
	t.Helper()
	return start(t, e, stdout, append([]string{"switch"}, edgeFlags(e, extra...)...)...)
}

// since is what the load saw between two snapshots.
func since(before, after testedge.LoadStats) testedge.LoadStats {
	d := testedge.LoadStats{Requests: after.Requests - before.Requests, Failed: after.Failed - before.Failed, BySlot: map[string]int64{}, Errors: map[string]int64{}}
	for k, v := range after.BySlot {
		if n := v - before.BySlot[k]; n != 0 {
			d.BySlot[k] = n
		}
	}
	for k, v := range after.Errors {
		if n := v - before.Errors[k]; n != 0 {
			d.Errors[k] = n
		}
	}
	return d
}

// weightedLine is the server line of a canary's upstream block.
func weightedLine(port, weight int) string {
	return fmt.Sprintf("server 127.0.0.1:%d weight=%d;", port, weight)
}

// assertAddedLines fails the test unless the diff adds each line.
func assertAddedLines(t *testing.T, diff string, lines ...string) {
	t.Helper()
	for _, l := range lines {
		found := false
		for _, d := range strings.Split(diff, "\n") {
			if strings.HasPrefix(d, "+") && strings.TrimSpace(d[1:]) == l {
				found = true
			}
		}
		if !found {
			t.Errorf("the diff on stdout does not add %q:\n%s", l, diff)
		}
	}
}

func TestCanaryGetsItsShareDuringTheBakeAndAllAfter(t *testing.T) {
	const bake, canary = 5 * time.Second, 10
	// The access log is on: a healthy canary passes the 5xx watch too.
	e := testedge.New(t, testedge.Options{AccessLog: true})
	from, to := e.Ports[0], e.Ports[1]
	oldPID := mainPID(t, e, from)
	load := startLoad(t, e, 32, http.MethodGet, "/")
	binary(t) // built before the clock starts
	// Deliberate load, not a wait for progress, as in the bake tests.
	time.Sleep(200 * time.Millisecond)
	var stdout bytes.Buffer
	t0 := time.Now()
	sw := startSwitchOut(t, e, &stdout, "--canary", strconv.Itoa(canary), "--bake", bake.String())

	// The first drain line comes just before the bake starts: from then on
	// every nginx worker runs the weighted block. The bake's line comes when
	// it ends, before the reload that lists the new slot alone.
	sw.waitStep(t, "drain")
	baking, atStart := time.Now(), load.Snapshot()
	if st, pid := unitState(t, e, from), mainPID(t, e, from); st != "active" || pid != oldPID {
		t.Errorf("during the canary the old slot %d is %s with pid %d, want active with pid %d", from, st, pid, oldPID)
	}
	sw.waitStep(t, "bake")
	window := since(atStart, load.Snapshot())
	baked := time.Since(baking)

	if err := sw.wait(t); err != nil {
		t.Fatalf("switch --canary %d --bake %s: %v, want exit 0\n%s", canary, bake, err, sw.stderr())
	}
	took := time.Since(t0)
	// After the switch: a moment of load that nginx must send to the new
	// slot alone, counted by the requests sent after the exit: an answer
	// from the old slot counted late was sent before.
	sentAfter := load.From()
	time.Sleep(300 * time.Millisecond) // deliberate load
	total := load.Stop()
	after := sentAfter()
	t.Logf("switch with a %d%% canary and a %s bake took %s; load: %s", canary, bake, took.Round(time.Millisecond), total)
	t.Logf("switch stderr:\n%s", sw.stderr())

	newN, oldN := window.BySlot[strconv.Itoa(to)], window.BySlot[strconv.Itoa(from)]
	share := 100 * float64(newN) / float64(max(newN+oldN, 1))
	t.Logf("during the bake (%s seen): new slot %d: %d requests, old slot %d: %d requests: %.1f%% on the new slot (%.0f requests/s); %d failed",
		baked.Round(time.Millisecond), to, newN, from, oldN, share, float64(window.Requests)/baked.Seconds(), window.Failed)
	t.Logf("after the switch (300 ms): %s", after)
	if share < 5 || share > 20 {
		t.Errorf("during the bake the new slot got %.1f%% of the requests (%d of %d), want about %d%% (5 to 20)", share, newN, newN+oldN, canary)
	}
	if baked < bake-lineLag {
		t.Errorf("the bake's line came %s after the drain line, before the %s bake was over", baked.Round(time.Millisecond), bake)
	}
	if total.Failed != 0 {
		t.Errorf("want 0 failed requests: %s", total)
	}
	if n := after.BySlot[strconv.Itoa(to)]; n == 0 || n != after.Requests {
		t.Errorf("after the switch %d of %d requests went to the new slot %d, want all: %s", n, after.Requests, to, after)
	}
	diff := stdout.String()
	t.Logf("stdout:\n%s", diff)
	assertAddedLines(t, diff, weightedLine(from, 100-canary), weightedLine(to, canary))

	if got := slotOf(t, e); got != strconv.Itoa(to) {
		t.Errorf("after the switch nginx answers from slot %s, want %d", got, to)
	}
	if st := unitState(t, e, from); st != "inactive" {
		t.Errorf("after the switch the old slot %d is %s, want inactive", from, st)
	}
	// The block as a plain switch leaves it: the new slot alone, no weight.
	conf := must(t)(readString(e.UpstreamFile))
	if !strings.Contains(conf, serverLine(to)) || strings.Contains(conf, "weight=") || strings.Contains(conf, serverLine(from)) {
		t.Errorf("%s after the switch, want slot %d alone without a weight:\n%s", e.UpstreamFile, to, conf)
	}
	last := bakeStatus(t, e).Last
	if last == nil || last.Result != "switched" || last.To != to {
		t.Fatalf("last history record %+v, want switched to %d", last, to)
	}
	if secs, _ := stepSeconds(last, "bake"); secs < bake.Seconds() {
		t.Errorf("history steps %+v: want a bake of at least %s", last.Steps, bake)
	}
}

func readString(path string) (string, error) {
	b, err := os.ReadFile(path)
	return string(b), err
}

// steadyLoad is startLoad with clients that keep their pace through 5xx
// answers: by default a client pauses 10 ms after each failure, which
// would make a bad build that all clients reach look cheaper than one
// that a tenth of their requests reach, the rest answered at full speed.
func steadyLoad(t *testing.T, e *testedge.Edge, clients int) *testedge.Load {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Minute)
	t.Cleanup(cancel)
	return testedge.RunLoad(ctx, testedge.LoadOptions{URL: e.URL(""), Clients: clients, Steady: true})
}

// badBuild is what one switch to a build that answers / with 500 (and
// /health with 200) cost.
type badBuild struct {
	failed500 int64         // 500s the clients saw: all from the bad build, before the rollback
	detected  int64         // of those, the ones before the bake's FAILED line
	share     float64       // the 500s' share of the requests sent from the drain line to the FAILED line
	other     int64         // failures of any other kind
	bake      time.Duration // from the drain line (the bake's start) to its FAILED line
	exposed   time.Duration // from the drain line to the switch's exit
	rate      float64       // requests per second through the edge over the whole run
}

// TestCanaryCutsTheFailuresOfABadBuild switches to a build that passes its
// health check but answers 500 on /, with an access log that records the
// upstream and its status, first with a bake alone, then with a 10% canary:
// both are rolled back by the 5xx watch to the old slot, which never
// stopped; while the bake watches, the canary shows the bad build to about
// a tenth of the requests. The clients keep their pace through the 500s
// (steadyLoad), so that both runs offer the same load. The share is
// compared, not the count of 500s: that is the share times how long the
// watch took to see them, which a busy machine stretches in one run and
// not the other (the 5xx watch was seen to take 100 ms in one and 900 ms
// in the other). How soon it sees them is for the benchmark to measure.
func TestCanaryCutsTheFailuresOfABadBuild(t *testing.T) {
	const bake = 5 * time.Second
	got := map[string]badBuild{}
	for _, tt := range []struct {
		name  string
		flags []string
	}{
		{"bake alone", nil},
		{"canary of 10", []string{"--canary", "10"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := testedge.New(t, testedge.Options{AccessLog: true})
			// A good switch first, as on a host: the live slot is the one
			// enabled at boot, and the history has a switch.
			if r := edgeswitch(t, e, "switch"); r.code != 0 {
				t.Fatalf("first switch: exit %d\n%s", r.code, r.stderr)
			}
			from, to := e.Ports[1], e.Ports[0]
			setAppArgs(t, e, "-fail-root")
			before := hashTree(t, filepath.Dir(e.NginxConf))
			oldPID := mainPID(t, e, from)

			load := steadyLoad(t, e, 32)
			binary(t)
			time.Sleep(200 * time.Millisecond) // deliberate load, as above
			var stdout bytes.Buffer
			loaded := time.Now()
			sw := startSwitchOut(t, e, &stdout, append([]string{"--bake", bake.String()}, tt.flags...)...)
			t0 := time.Now()
			sw.waitStep(t, "drain")
			baking, watched := time.Now(), load.From()
			sw.waitStep(t, "bake") // the bake's FAILED line: the rollback begins
			failed, atFail, during := time.Now(), load.Snapshot(), watched()
			err := sw.wait(t)
			exited := time.Now()
			atExit, sentAfter := load.Snapshot(), load.From()
			// The clients run on a moment after the rollback: on the old
			// slot alone, without a 500, for the requests sent after the
			// exit (a 500 counted late was sent before).
			time.Sleep(300 * time.Millisecond) // deliberate load
			stats := load.Stop()
			after := sentAfter()
			stderr := sw.stderr()
			t.Logf("rolled back %s after the start, %s after the drain line; load: %s", exited.Sub(t0).Round(time.Millisecond), exited.Sub(baking).Round(time.Millisecond), stats)
			t.Logf("switch stderr:\n%s", stderr)
			t.Logf("after the rollback (300 ms): %s", after)

			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() != 1 || !strings.Contains(stderr, "rolled back: the new slot failed its bake") || !strings.Contains(stderr, "with 5xx during the bake, over bake-max-5xx 5%") {
				t.Errorf("switch: %v, want exit 1 saying the new slot failed its bake with a share of 5xx over bake-max-5xx 5%%:\n%s", err, stderr)
			}
			if len(tt.flags) > 0 {
				assertAddedLines(t, stdout.String(), weightedLine(from, 90), weightedLine(to, 10))
			}

			b := badBuild{
				failed500: stats.Errors["status 500"], detected: atFail.Errors["status 500"], other: stats.Failed - stats.Errors["status 500"],
				share: float64(during.Errors["status 500"]) / float64(max(during.Requests, 1)),
				bake:  failed.Sub(baking), exposed: exited.Sub(baking), rate: float64(atExit.Requests) / exited.Sub(loaded.Add(-200*time.Millisecond)).Seconds(),
			}
			got[tt.name] = b
			t.Logf("%d requests failed with 500 from the bad build before the rollback: %d in the %s from the drain line to the bake's FAILED line (%.1f%% of those sent in it: %s), %d during the rollback; %d other failures; %.0f requests/s",
				b.failed500, b.detected, b.bake.Round(time.Millisecond), 100*b.share, during, b.failed500-b.detected, b.other, b.rate)
			if b.failed500 == 0 {
				t.Errorf("no 500 reached the clients: the test did not test a bad build: %s", stats)
			}
			if b.other > 3 {
				t.Errorf("%d requests failed other than with the bad build's 500, want at most a handful around the reloads: %s", b.other, stats)
			}
			if n := stats.BySlot[strconv.Itoa(to)]; n != 0 {
				t.Errorf("%d answers other than 500 came from the bad build in slot %d", n, to)
			}
			if n := after.BySlot[strconv.Itoa(from)]; n == 0 || n != after.Requests {
				t.Errorf("after the rollback %d of %d requests went to the old slot %d, want all: %s", n, after.Requests, from, after)
			}
			if got := slotOf(t, e); got != strconv.Itoa(from) {
				t.Errorf("after the rollback nginx answers from slot %s, want the old slot %d", got, from)
			}
			if st, pid := unitState(t, e, from), mainPID(t, e, from); st != "active" || pid != oldPID {
				t.Errorf("the old slot %d is %s with pid %d, want active with pid %d as before the switch (never stopped)", from, st, pid, oldPID)
			}
			if st := unitState(t, e, to); st != "inactive" {
				t.Errorf("the new slot %d is %s, want inactive", to, st)
			}
			// The upstream block is back as it was: the old slot alone.
			assertUnchanged(t, e, before)
			st := bakeStatus(t, e)
			last := st.Last
			if last == nil || last.Result != "rolled-back" || last.To != to || !strings.Contains(last.Error, "with 5xx during the bake, over bake-max-5xx") {
				t.Fatalf("last history record %+v, want rolled-back to %d naming the share of 5xx during the bake", last, to)
			}
			// The 5xx watch ended the bake early, by the switch's own clock,
			// which a busy machine does not stretch as it does the whole
			// run's.
			if secs, i := stepSeconds(last, "bake"); i < 0 || secs >= bake.Seconds() {
				t.Errorf("history steps %+v: the bake ran %.1fs, want it ended by the 5xx watch within the %s bake", last.Steps, secs, bake)
			}
			if st.Pending != nil || len(st.Problems) != 0 {
				t.Errorf("after the rollback status shows pending %+v, problems %q", st.Pending, st.Problems)
			}
		})
	}
	alone, canary := got["bake alone"], got["canary of 10"]
	if alone.failed500 == 0 || canary.failed500 == 0 {
		if t.Failed() {
			return // a run failed and said why
		}
		t.Skipf("no figures to compare: %+v (a run was skipped)", got)
	}
	ratio := alone.share / max(canary.share, 1e-9)
	t.Logf("500s before the rollback: %d with a bake alone (bake failed after %s, exit after %s, %.0f requests/s), %d with a 10%% canary (bake failed after %s, exit after %s, %.0f requests/s): %.1fx as many",
		alone.failed500, alone.bake.Round(time.Millisecond), alone.exposed.Round(time.Millisecond), alone.rate,
		canary.failed500, canary.bake.Round(time.Millisecond), canary.exposed.Round(time.Millisecond), canary.rate, float64(alone.failed500)/float64(canary.failed500))
	t.Logf("while the bake watched, %.1f%% of the requests got a 500 with a bake alone, %.1f%% with a 10%% canary: the canary cut the share %.1fx",
		100*alone.share, 100*canary.share, ratio)
	if ratio < 5 {
		t.Logf("the canary cut the share of 500s by %.1fx, less than the 5x hoped for", ratio)
	}
	if ratio < 3 {
		t.Errorf("the canary cut the share of 500s by only %.1fx (%.1f%% -> %.1f%%), want at least 3x", ratio, 100*alone.share, 100*canary.share)
	}
}
