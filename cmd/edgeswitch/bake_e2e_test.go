package main

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/edgeswitch/edgeswitch/internal/testedge"
	"github.com/edgeswitch/edgeswitch/swap"
)

// The bake tests switch under 32 keep-alive GET clients with --bake: the
// old slot keeps running while the new one is watched, and only a bake
// that passes retires it; a new slot that fails its health check at any
// moment of the bake sends traffic back to the old slot, which never
// stopped.

// mainPID is the MainPID systemd holds for slot port's unit: the same
// number before and after shows the slot never restarted; 0 when it does
// not run.
func mainPID(t *testing.T, e *testedge.Edge, port int) int {
	t.Helper()
	out := must(t)(e.Systemctl(t.Context(), "show", "-p", "MainPID", "--value", e.SlotUnit(port)))
	pid, err := strconv.Atoi(strings.TrimSpace(out))
	if err != nil {
		t.Fatalf("MainPID of %s: %q", e.SlotUnit(port), out)
	}
	return pid
}

// watchStop watches slot port's unit from now on and returns a function
// that ends the watch and says when the unit was first seen not active
// (zero if never); it looks once more as it ends, so a stop that falls
// between two polls is still seen.
func watchStop(e *testedge.Edge, port int) func() time.Time {
	tick := time.NewTicker(20 * time.Millisecond)
	stop := testedge.Watch(func() bool {
		// is-active exits non-zero for any state but active; an answer
		// that is no state (no bus) is no stop.
		out, _ := e.Systemctl(context.Background(), "is-active", e.SlotUnit(port))
		st := strings.TrimSpace(out)
		return st != "active" && st != "" && !strings.ContainsAny(st, " \n")
	}, tick.C, time.Now)
	return func() time.Time {
		defer tick.Stop()
		return stop()
	}
}

// bakeStatus is `status --json` of the edge, which must exit 0.
func bakeStatus(t *testing.T, e *testedge.Edge) swap.Status {
	t.Helper()
	r := edgeswitch(t, e, "status", "--json")
	var st swap.Status
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil || r.code != 0 {
		t.Fatalf("status --json: exit %d, %v\n%s%s", r.code, err, r.stdout, r.stderr)
	}
	return st
}

// stepSeconds is how long the record's step took, and its place among the
// steps; -1 when it has no such step.
func stepSeconds(r *swap.Record, step string) (float64, int) {
	i := slices.IndexFunc(r.Steps, func(s swap.StepTime) bool { return s.Step == step })
	if i < 0 {
		return 0, -1
	}
	return r.Steps[i].Seconds, i
}

func TestBakeOfAHealthyBuildRetiresTheOldSlotAfterIt(t *testing.T) {
	const bake = 3 * time.Second
	e := testedge.New(t, testedge.Options{})
	from, to := e.Ports[0], e.Ports[1]
	oldPID := mainPID(t, e, from)
	load := startLoad(t, e, 32, http.MethodGet, "/")
	binary(t) // built before the clock starts
	// Deliberate load, not a wait for progress: the switch meets
	// connections in use and requests in flight.
	time.Sleep(200 * time.Millisecond)
	t0 := time.Now()
	// --bake after the command: a global setting may follow it.
	sw := startSwitch(t, e, "--bake", bake.String())

	// The drain step's line comes just before the bake starts: from now
	// on the new slot has the traffic and the old one must keep running.
	sw.waitStep(t, "drain")
	baking := time.Now()
	stopped := watchStop(e, from)
	if got := slotOf(t, e); got != strconv.Itoa(to) {
		t.Errorf("during the bake nginx answers from slot %s, want the new slot %d", got, to)
	}
	if st := unitState(t, e, from); st != "active" {
		t.Errorf("during the bake the old slot %d is %s, want active", from, st)
	}
	// status while the switch bakes: exit 0, saying so. The bake notes its
	// end in the pending record as it starts, a moment after the drain line.
	pending := filepath.Join(e.StateDir, "app.pending")
	sw.waitUntil(t, "the bake's end in "+pending, func() bool {
		b, _ := os.ReadFile(pending)
		return strings.Contains(string(b), `"bake_until"`)
	})
	r := edgeswitch(t, e, "status")
	if r.code != 0 || !strings.Contains(r.stdout, "bakes slot "+strconv.Itoa(to)) || !strings.Contains(r.stdout, "slot "+strconv.Itoa(from)+" kept running") {
		t.Errorf("status during the bake: exit %d, want 0 saying slot %d bakes while slot %d keeps running:\n%s%s", r.code, to, from, r.stdout, r.stderr)
	}
	if st, pid := unitState(t, e, from), mainPID(t, e, from); st != "active" || pid != oldPID {
		t.Errorf("%s into the bake the old slot %d is %s with pid %d, want active with pid %d", time.Since(baking).Round(time.Millisecond), from, st, pid, oldPID)
	}

	if err := sw.wait(t); err != nil {
		t.Fatalf("switch --bake %s: %v, want exit 0\n%s", bake, err, sw.stderr())
	}
	took := time.Since(t0)
	stoppedAt := stopped()
	stats := load.Stop()
	t.Logf("switch with a %s bake took %s; load: %s", bake, took.Round(time.Millisecond), stats)
	t.Logf("switch stderr:\n%s", sw.stderr())
	if stats.Failed != 0 || stats.BySlot[strconv.Itoa(to)] == 0 {
		t.Errorf("want 0 failed requests and answers from the new slot %d: %s", to, stats)
	}
	if got := slotOf(t, e); got != strconv.Itoa(to) {
		t.Errorf("after the switch nginx answers from slot %s, want %d", got, to)
	}
	if st := unitState(t, e, from); st != "inactive" {
		t.Errorf("after the bake the old slot %d is %s, want inactive", from, st)
	}
	// The old slot stopped no earlier than the bake's length after the
	// drain line; seeing the line lags its printing, hence the margin.
	switch after := stoppedAt.Sub(baking); {
	case stoppedAt.IsZero():
		t.Errorf("the old slot %d was never seen stopping", from)
	case after < bake-lineLag:
		t.Errorf("the old slot stopped %s after the drain, before the %s bake was over", after.Round(time.Millisecond), bake)
	default:
		t.Logf("the old slot stopped %s after the drain line", after.Round(time.Millisecond))
	}

	last := bakeStatus(t, e).Last
	if last == nil || last.Result != "switched" || last.To != to {
		t.Fatalf("last history record %+v, want switched to %d", last, to)
	}
	secs, bakeAt := stepSeconds(last, "bake")
	_, retireAt := stepSeconds(last, "retire")
	_, persistAt := stepSeconds(last, "persist")
	if bakeAt < 0 || secs < bake.Seconds() || persistAt != bakeAt+1 || retireAt != persistAt+1 {
		t.Errorf("history steps %+v: want a bake of at least %s, then persist and retire", last.Steps, bake)
	}
}

func TestBakeRollsBackASickBuildToTheOldSlot(t *testing.T) {
	const bake = 8 * time.Second
	for _, tt := range []struct {
		name    string
		sickFor time.Duration // how long the slot is sick; 0: for good
	}{
		// /health turns to 503 once the bake has begun, for good.
		{"a build that turns sick", 0},
		// /health answers 503 for one second once the bake has begun,
		// and 200 again after.
		{"a build sick for one second", time.Second},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := testedge.New(t, testedge.Options{})
			// A good switch first, so that the history has one that
			// rollback could go back on: from the slot that will bake
			// the sick build.
			if r := edgeswitch(t, e, "switch"); r.code != 0 {
				t.Fatalf("first switch: exit %d\n%s", r.code, r.stderr)
			}
			from, to := e.Ports[1], e.Ports[0]
			// The slot turns sick when the test says, once the bake has
			// begun: not at a time after its start, which a busy machine
			// can reach before the bake does.
			sick := filepath.Join(t.TempDir(), "sick")
			setAppArgs(t, e, "-sick-file", sick)
			before := hashTree(t, filepath.Dir(e.NginxConf))
			oldPID := mainPID(t, e, from)

			load := startLoad(t, e, 32, http.MethodGet, "/")
			// Deliberate load, not a wait for progress, as above.
			time.Sleep(200 * time.Millisecond)
			t0 := time.Now()
			sw := startSwitch(t, e, "--bake", bake.String())
			sw.waitStep(t, "drain") // the bake starts now
			baking := time.Now()
			writeFile(t, sick, "") // sick from now on
			if tt.sickFor > 0 {
				// Deliberate: a sickness of this length, which a watch that
				// only looks at the bake's end would miss.
				time.AfterFunc(tt.sickFor, func() { os.Remove(sick) })
			}
			err := sw.wait(t)
			took := time.Since(t0)
			// Let the clients run on the old slot a moment after the
			// rollback's reload.
			time.Sleep(200 * time.Millisecond)
			stats := load.Stop()
			stderr := sw.stderr()
			t.Logf("rolled back after %s; load: %s", took.Round(time.Millisecond), stats)
			t.Logf("switch stderr:\n%s", stderr)

			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() != 1 || !strings.Contains(stderr, "rolled back: the new slot failed its bake") || !strings.Contains(stderr, "503") {
				t.Errorf("switch: %v, want exit 1 saying the new slot failed its bake with a 503:\n%s", err, stderr)
			}
			// The new slot had traffic between the two reloads; whatever
			// failed around them is counted here (0 expected for GETs).
			if stats.BySlot[strconv.Itoa(to)] == 0 || stats.BySlot[strconv.Itoa(from)] == 0 {
				t.Errorf("want answers from both slots: %s", stats)
			}
			if stats.Failed > 3 {
				t.Errorf("%d requests failed around the two reloads, want at most a handful: %s", stats.Failed, stats)
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
			assertUnchanged(t, e, before)
			st := bakeStatus(t, e) // exit 0: nothing is at risk
			last := st.Last
			if last == nil || last.Result != "rolled-back" || last.To != to || !strings.Contains(last.Error, "during the bake") || !strings.Contains(last.Error, "503") {
				t.Fatalf("last history record %+v, want rolled-back to %d naming the 503 during the bake", last, to)
			}
			// The bake failed after the sickness began and long before its
			// own end, by the switch's own clock, which a busy machine does
			// not stretch as it does the whole run's: the watch is
			// continuous, not a look at the end. (How
			// soon, about one health-interval, is logged, not asserted: a
			// busy machine delays it.) failed is a little late: the drain
			// line was seen after the bake began.
			secs, _ := stepSeconds(last, "bake")
			failed := baking.Add(time.Duration(secs * float64(time.Second)))
			late := failed.Sub(baking) // baking: just before the sickness
			t.Logf("the bake failed %s after the sickness began; rollback and exit took %s more", late.Round(time.Millisecond), t0.Add(took).Sub(failed).Round(time.Millisecond))
			if late < 0 || secs >= bake.Seconds() {
				t.Errorf("the bake failed %s after the slot turned sick, %.1fs into a %s bake: want after it and before the bake's end", late.Round(time.Millisecond), secs, bake)
			}
			if st.Pending != nil || len(st.Problems) != 0 {
				t.Errorf("after the rollback status shows pending %+v, problems %q", st.Pending, st.Problems)
			}

			// rollback would go back to the slot of the rolled-back build.
			r := edgeswitch(t, e, "rollback")
			want := "slot " + strconv.Itoa(to) + " holds the build whose switch rolled-back"
			if r.code != 2 || !strings.Contains(r.stderr, want) {
				t.Errorf("rollback: exit %d, want 2 saying %q:\n%s", r.code, want, r.stderr)
			}
			if got := slotOf(t, e); got != strconv.Itoa(from) {
				t.Errorf("after the refused rollback nginx answers from slot %s, want %d", got, from)
			}
			if st := unitState(t, e, to); st != "inactive" {
				t.Errorf("the refused rollback left slot %d %s", to, st)
			}
			assertUnchanged(t, e, before)
		})
	}
}
