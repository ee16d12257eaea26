package swap

import (
	"cmp"
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/edgeswitch/edgeswitch/route"
)

// switchCase is one run of Switch (or Rollback) on a rig, and what it must
// leave behind. Slots are named "a" and "b"; a is listed and running, b
// stopped, unless setup says otherwise.
type switchCase struct {
	name     string
	setup    func(r *rig)
	to       string // Request.To: "a", "b", a port number, or "" for none
	dryRun   bool
	keepOld  bool
	rollback bool // run Rollback instead of Switch

	exit      int
	says      []string // in the error
	jobs      string   // the systemd jobs on the slots, in order: "start b, stop a"
	running   [2]bool  // whether slots a and b run at the end
	listed    string   // what the router's config lists at the end: "b"
	enabled   string   // the slots enabled at the end; listed when not set
	reverted  bool     // the router's Revert ran
	pending   string   // the pending record at the end: "a->b", or "" for none
	history   string   // the last history record: "switched a->b", or "" for none
	warn      string   // a step that must have reported a warning
	unchanged bool
	draining  int
}

// run runs the case on a fresh rig, checks everything it must leave
// behind, and returns the rig for more checks.
func (tc switchCase) run(t *testing.T) *rig {
	r := newRig(t)
	if tc.setup != nil {
		tc.setup(r)
	}
	req := Request{To: r.portOf(tc.to), DryRun: tc.dryRun, KeepOld: tc.keepOld}
	call := Switch
	if tc.rollback {
		call = Rollback
	}
	t0 := time.Now()
	res, err := call(r.ctx, r.o, req, r.env())
	took := time.Since(t0)

	if got := ExitCode(err); got != tc.exit {
		t.Fatalf("exit %d (%v), want %d", got, err, tc.exit)
	}
	for _, s := range tc.says {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not say %q", err, s)
		}
	}
	if got := r.jobs(); got != tc.jobs {
		t.Errorf("systemd jobs: %q, want %q", got, tc.jobs)
	}
	if got := [2]bool{r.running(a), r.running(b)}; got != tc.running {
		t.Errorf("running (a, b) = %v, want %v", got, tc.running)
	}
	if got := r.names(r.rt.listing()); got != tc.listed {
		t.Errorf("router config lists %q, want %q", got, tc.listed)
	}
	// After any switch, done or undone, the slot that comes back at boot
	// is the listed one, unless the switch got stuck on its way.
	if got, want := r.enabledNames(), cmp.Or(tc.enabled, tc.listed); got != want {
		t.Errorf("enabled slots %q, want %q", got, want)
	}
	if got := slices.Contains(r.rt.steps(), "revert"); got != tc.reverted {
		t.Errorf("router reverted: %v, want %v (steps %v)", got, tc.reverted, r.rt.steps())
	}
	if cut := r.rt.cutSteps(); len(cut) > 0 {
		t.Errorf("steps %v ran on a cancelled context", cut)
	}
	if got := r.pending(); got != tc.pending {
		t.Errorf("pending record %q, want %q", got, tc.pending)
	}
	if got := r.lastRecord(); got != tc.history {
		t.Errorf("last history record %q, want %q", got, tc.history)
	}
	// Only a switch that was undone says so.
	if got := r.ev.has("rollback", false); got != (tc.exit == 1) {
		t.Errorf("rollback reported: %v, want %v (exit %d)", got, !got, tc.exit)
	}
	if tc.warn != "" && !r.ev.has(tc.warn, true) {
		t.Errorf("no warning from step %s in %+v", tc.warn, r.ev.list())
	}
	if res.Unchanged != tc.unchanged || res.Draining != tc.draining {
		t.Errorf("result unchanged %v draining %d, want %v and %d", res.Unchanged, res.Draining, tc.unchanged, tc.draining)
	}
	if tc.exit == 0 && !tc.dryRun && !tc.unchanged {
		if want := r.portOf(tc.listed); res.To.Port != want {
			t.Errorf("result To %s, want %s", r.name(res.To.Port), tc.listed)
		}
	}
	// No case waits for the health timeout but those that set it short.
	if took > 2*time.Second {
		t.Errorf("the switch took %s", took)
	}
	return r
}

func runSwitchCases(t *testing.T, cases []switchCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) { tc.run(t) })
	}
}

// Helpers for setups, named for what they do to the rig.

func listed(slots ...int) func(*rig) { return func(r *rig) { r.list(slots...) } }

func both(setups ...func(*rig)) func(*rig) {
	return func(r *rig) {
		for _, s := range setups {
			s(r)
		}
	}
}

func slotIs(i int, s unitState) func(*rig) { return func(r *rig) { r.sd.set(r.unit(i), s) } }

func jobFails(call string, i int, ft fault) func(*rig) {
	return func(r *rig) { r.sd.fail(call, r.unit(i), ft) }
}

func routerStepFails(step string) func(*rig) {
	return func(r *rig) { r.rt.fail[step] = errors.New(step + " failed: nginx says no") }
}

func answers(i, code int) func(*rig) { return func(r *rig) { r.slots[i].answer(code) } }

func healthTimeout(d time.Duration) func(*rig) { return func(r *rig) { r.o.HealthTimeout = d } }

func pendingRecord(from, to int) func(*rig) { return func(r *rig) { r.writePending(from, to) } }

func switchedBefore(from, to int) func(*rig) {
	return func(r *rig) { r.appendHistory("switched", from, to) }
}

var jobFailed = fault{result: "failed"}

func TestSwitchPicksTheTarget(t *testing.T) {
	runSwitchCases(t, []switchCase{{
		name:    "moves traffic from the live slot to the other and stops the old one",
		exit:    0,
		jobs:    "start b, stop a",
		running: [2]bool{false, true},
		listed:  "b",
		history: "switched a->b",
	}, {
		name:    "keep-old leaves the old slot running",
		keepOld: true,
		jobs:    "start b",
		running: [2]bool{true, true},
		listed:  "b",
		history: "switched a->b",
	}, {
		name:    "a dry run starts, writes and records nothing",
		dryRun:  true,
		running: [2]bool{true, false},
		listed:  "a",
	}, {
		name:      "the target already live alone and the other stopped: nothing to do",
		setup:     both(listed(b), slotIs(a, unitDown), slotIs(b, unitUp)),
		to:        "b",
		running:   [2]bool{false, true},
		listed:    "b",
		history:   "unchanged none->b",
		unchanged: true,
	}, {
		name:    "both listed and one running: the other is the target",
		setup:   listed(a, b),
		jobs:    "start b, stop a",
		running: [2]bool{false, true},
		listed:  "b",
		history: "switched a->b",
	}, {
		name:    "both listed and the second running: the first is the target",
		setup:   both(listed(a, b), slotIs(a, unitDown), slotIs(b, unitUp)),
		jobs:    "start a, stop b",
		running: [2]bool{true, false},
		listed:  "a",
		history: "switched b->a",
	}, {
		name:    "both listed and neither running: refused",
		setup:   both(listed(a, b), slotIs(a, unitDown)),
		exit:    2,
		says:    []string{"lists both slots and neither or both are running", "pass --to"},
		listed:  "a b",
		enabled: "a",
		running: [2]bool{false, false},
	}, {
		name:    "--to a port that is not a slot: refused",
		to:      "5",
		exit:    2,
		says:    []string{"--to 5 is not a slot"},
		running: [2]bool{true, false},
		listed:  "a",
	}, {
		name:    "a running target that is not listed holds an old build: restarted",
		setup:   slotIs(b, unitUp),
		jobs:    "restart b, stop a",
		running: [2]bool{false, true},
		listed:  "b",
		history: "switched a->b",
	}, {
		name:    "a running target that is listed may carry traffic: kept as it is",
		setup:   both(listed(a, b), slotIs(b, unitUp)),
		to:      "b",
		jobs:    "stop a",
		running: [2]bool{false, true},
		listed:  "b",
		history: "switched a->b",
	}, {
		name: "hooks run with the switch in their environment",
		setup: func(r *rig) {
			env := `test "$EDGESWITCH_UPSTREAM,$EDGESWITCH_FROM,$EDGESWITCH_TO" = "app,` + strconv.Itoa(r.port(a)) + "," + strconv.Itoa(r.port(b)) + `"`
			r.o.PreStart = []string{"sh", "-c", env}
			r.o.PostSwitch = []string{"sh", "-c", env}
		},
		jobs:    "start b, stop a",
		running: [2]bool{false, true},
		listed:  "b",
		history: "switched a->b",
	}})
}

func TestSwitchDryRunShowsTheDiff(t *testing.T) {
	r := newRig(t)
	res, err := Switch(r.ctx, r.o, Request{DryRun: true}, r.env())
	if err != nil {
		t.Fatal(err)
	}
	if want := fakeDiff([]route.Addr{r.addr(a)}, []route.Addr{r.addr(b)}); res.Diff != want {
		t.Errorf("Diff = %q, want %q", res.Diff, want)
	}
	if res.To.Port != r.port(b) || res.From.Port != r.port(a) {
		t.Errorf("dry run %s -> %s, want a -> b", r.name(res.From.Port), r.name(res.To.Port))
	}
	if steps := r.rt.steps(); len(steps) > 0 {
		t.Errorf("router steps ran in a dry run: %v", steps)
	}
}

func TestSwitchUndoesEachFailedStep(t *testing.T) {
	runSwitchCases(t, []switchCase{{
		name:    "settings that cannot work: refused before anything",
		setup:   func(r *rig) { r.o.HealthPath = "health" },
		exit:    2,
		says:    []string{"must start with /"},
		running: [2]bool{true, false},
		listed:  "a",
	}, {
		name:    "state dir cannot be created: refused",
		setup:   func(r *rig) { r.o.StateDir = "/dev/null/state" },
		exit:    2,
		says:    []string{"state dir"},
		running: [2]bool{true, false},
		listed:  "a",
	}, {
		name:    "another switch holds the lock: refused, naming it",
		setup:   holdLock,
		exit:    2,
		says:    []string{"another switch of upstream app is running (pid " + strconv.Itoa(os.Getpid()) + ")"},
		running: [2]bool{true, false},
		listed:  "a",
	}, {
		name:    "the router cannot read the upstream: refused",
		setup:   func(r *rig) { r.rt.readErr = errors.New("upstream app not found in /etc/nginx/nginx.conf") },
		exit:    2,
		says:    []string{"upstream app not found"},
		running: [2]bool{true, false},
		listed:  "a",
	}, {
		name:    "systemd cannot tell a slot's state: refused",
		setup:   jobFails("get", b, fault{err: errors.New("connection refused")}),
		exit:    2,
		says:    []string{"connection refused", "check that systemd is reachable"},
		running: [2]bool{true, false},
		listed:  "a",
	}, {
		name:    "the router cannot plan the change: refused",
		setup:   func(r *rig) { r.rt.planErr = errors.New("server line with a weight") },
		exit:    2,
		says:    []string{"server line with a weight"},
		running: [2]bool{true, false},
		listed:  "a",
		history: "refused a->b",
	}, {
		name: "a router check fails: refused before anything starts",
		setup: func(r *rig) {
			r.rt.checks[0].Err = errors.New("nginx -t: [emerg] unknown directive")
		},
		exit:    2,
		says:    []string{"[emerg] unknown directive"},
		running: [2]bool{true, false},
		listed:  "a",
		history: "refused a->b",
	}, {
		name:    "the target's unit is not loaded: refused",
		setup:   slotIs(b, unitUnknown),
		exit:    2,
		says:    []string{"is not-found", "install the template unit"},
		running: [2]bool{true, false},
		listed:  "a",
		history: "refused a->b",
	}, {
		name:    "systemd cannot tell the target's unit file state: refused",
		setup:   jobFails("file", b, fault{err: errors.New("access denied")}),
		exit:    2,
		says:    []string{"unit file state of app@", "access denied"},
		running: [2]bool{true, false},
		listed:  "a",
		history: "refused a->b",
	}, {
		name:    "a template unit without [Install]: refused, a reboot would not bring the slot back",
		setup:   func(r *rig) { r.sd.static[r.unit(b)] = true },
		exit:    2,
		says:    []string{"no [Install] section", "WantedBy=multi-user.target", "daemon-reload"},
		running: [2]bool{true, false},
		listed:  "a",
		history: "refused a->b",
	}, {
		name:    "the pre-start hook fails: nothing started",
		setup:   func(r *rig) { r.o.PreStart = []string{"false"} },
		exit:    1,
		says:    []string{`hook "false"`},
		running: [2]bool{true, false},
		listed:  "a",
		history: "failed a->b",
	}, {
		name:    "the start job fails: the target is stopped again",
		setup:   jobFails("start", b, jobFailed),
		exit:    1,
		says:    []string{"job failed: ", "is failed (failed): the app exited", "journalctl -u"},
		jobs:    "start b, stop b",
		running: [2]bool{true, false},
		listed:  "a",
		history: "failed a->b",
	}, {
		name:    "systemd's start limit of the target is cleared once, and the switch goes on",
		setup:   jobFails("start", b, fault{result: "failed", leaves: &unitLimited}),
		jobs:    "start b, reset-failed b, start b, stop a",
		running: [2]bool{false, true},
		listed:  "b",
		history: "switched a->b",
	}, {
		name: "a start limit that will not clear fails the switch",
		setup: both(jobFails("start", b, fault{result: "failed", leaves: &unitLimited}),
			jobFails("reset-failed", b, fault{err: errors.New("access denied")})),
		exit:    1,
		says:    []string{"start app@", "access denied"},
		jobs:    "start b, reset-failed b, stop b",
		running: [2]bool{true, false},
		listed:  "a",
		history: "failed a->b",
	}, {
		name:    "a target left failed by its stop is reset: the failed switch leaves it inactive",
		setup:   both(jobFails("start", b, jobFailed), jobFails("stop", b, fault{leaves: &unitFailed})),
		exit:    1,
		says:    []string{"start app@"},
		jobs:    "start b, stop b, reset-failed b",
		running: [2]bool{true, false},
		listed:  "a",
		history: "failed a->b",
	}, {
		name:    "systemd refuses the start: the target is stopped again",
		setup:   jobFails("start", b, fault{err: errors.New("access denied")}),
		exit:    1,
		says:    []string{"access denied"},
		jobs:    "start b, stop b",
		running: [2]bool{true, false},
		listed:  "a",
		history: "failed a->b",
	}, {
		name:    "the target never answers healthy: stopped, with its last answer",
		setup:   both(answers(b, http.StatusServiceUnavailable), healthTimeout(50*time.Millisecond)),
		exit:    1,
		says:    []string{"health-timeout 50ms", "503 Service Unavailable answer 503"},
		jobs:    "start b, stop b",
		running: [2]bool{true, false},
		listed:  "a",
		history: "failed a->b",
	}, {
		name:    "the target crash-loops while health polls: fails at once",
		setup:   both(answers(b, http.StatusServiceUnavailable), jobFails("start", b, fault{leaves: &unitLooping})),
		exit:    1,
		says:    []string{"(auto-restart): the app exited", "503"},
		jobs:    "start b, stop b",
		running: [2]bool{true, false},
		listed:  "a",
		history: "failed a->b",
	}, {
		name: "the target dies while health polls: fails at once",
		setup: func(r *rig) {
			r.slots[b].answer(http.StatusBadGateway)
			r.slots[b].onRequest(func() { r.sd.set(r.unit(b), unitFailed) })
		},
		exit:    1,
		says:    []string{"is failed (failed): the app exited", "502"},
		jobs:    "start b, stop b",
		running: [2]bool{true, false},
		listed:  "a",
		history: "failed a->b",
	}, {
		name:    "another process answers on the target's port while its unit is dead",
		setup:   jobFails("start", b, fault{leaves: &unitFailed}),
		exit:    1,
		says:    []string{"another process holds the port"},
		jobs:    "start b, stop b",
		running: [2]bool{true, false},
		listed:  "a",
		history: "failed a->b",
	}, {
		name:     "validate fails: config restored, target stopped, pending cleared",
		setup:    routerStepFails("validate"),
		exit:     1,
		says:     []string{"validate failed"},
		jobs:     "start b, stop b",
		running:  [2]bool{true, false},
		listed:   "a",
		reverted: true,
		history:  "failed a->b",
	}, {
		name:     "reload fails: config restored, target stopped, pending cleared",
		setup:    routerStepFails("reload"),
		exit:     1,
		says:     []string{"reload failed"},
		jobs:     "start b, stop b",
		running:  [2]bool{true, false},
		listed:   "a",
		reverted: true,
		history:  "failed a->b",
	}, {
		name:     "confirm fails: config restored, target stopped, pending cleared",
		setup:    routerStepFails("confirm"),
		exit:     1,
		says:     []string{"confirm failed"},
		jobs:     "start b, stop b",
		running:  [2]bool{true, false},
		listed:   "a",
		reverted: true,
		history:  "failed a->b",
	}, {
		name:    "the old slot will not stop: stuck with traffic on the new slot",
		setup:   jobFails("stop", a, jobFailed),
		exit:    3,
		says:    []string{"traffic is on slot", "did not stop", "systemctl stop"},
		jobs:    "start b, stop a",
		running: [2]bool{true, true},
		listed:  "b",
		pending: "a->b",
		history: "stuck a->b",
	}, {
		name: "enabling the new slot fails: stuck with traffic on it, the fix named",
		setup: func(r *rig) {
			r.sd.fail("enable", r.unit(b), fault{err: errors.New("access denied")})
		},
		exit:    3,
		says:    []string{"after a reboot it may not be", "access denied", "systemctl enable", "systemctl disable"},
		jobs:    "start b", // the old slot is not retired while it is the one that boots
		running: [2]bool{true, true},
		listed:  "b",
		enabled: "a",
		pending: "a->b",
		history: "stuck a->b",
	}, {
		name: "revert fails: stuck, the target keeps running, the pending record stays",
		setup: both(routerStepFails("validate"), func(r *rig) {
			r.rt.revErr = errors.New("restore app.conf: read-only file system")
		}),
		exit:     3,
		says:     []string{"read-only file system", "upstream app lists [", "] now: run", "run edgeswitch switch --to", "validate failed"},
		jobs:     "start b",
		running:  [2]bool{true, true},
		listed:   "b",
		enabled:  "a", // nothing got as far as persist
		reverted: true,
		pending:  "a->b",
		history:  "stuck a->b",
	}, {
		name:     "the target will not stop during the undo: stuck, config restored",
		setup:    both(routerStepFails("validate"), jobFails("stop", b, jobFailed)),
		exit:     3,
		says:     []string{"stop it by hand", "validate failed"},
		jobs:     "start b, stop b",
		running:  [2]bool{true, true},
		listed:   "a",
		reverted: true,
		pending:  "a->b",
		history:  "stuck a->b",
	}, {
		name: "drain leaves old workers: done, with a warning",
		setup: func(r *rig) {
			r.rt.drained = route.Drained{Detail: "1 old workers gone", Left: 2, Warn: "2 old nginx workers still running after 30s"}
		},
		exit:     0,
		jobs:     "start b, stop a",
		running:  [2]bool{false, true},
		listed:   "b",
		history:  "switched a->b",
		warn:     "drain",
		draining: 2,
	}, {
		name:    "the post-switch hook fails: done, with a warning",
		setup:   func(r *rig) { r.o.PostSwitch = []string{"false"} },
		exit:    0,
		jobs:    "start b, stop a",
		running: [2]bool{false, true},
		listed:  "b",
		history: "switched a->b",
		warn:    "post-switch",
	}})
}

// holdLock takes the switch lock as another switch would, until the test ends.
func holdLock(r *rig) {
	release, err := lock("/proc", r.o.StateDir, r.o.Upstream, "upstream app")
	if err != nil {
		r.t.Fatal(err)
	}
	r.t.Cleanup(release)
}

// cancelDuring makes a Ctrl-C arrive during step: a health poll of the
// target, or one of the router's steps.
func cancelDuring(step string) func(*rig) {
	return func(r *rig) {
		if step == "health" {
			r.slots[b].onRequest(r.cancel)
			return
		}
		r.rt.during[step] = r.cancel
	}
}

func TestSwitchOnCtrlC(t *testing.T) {
	runSwitchCases(t, []switchCase{{
		name:    "while health polls: undone",
		setup:   both(answers(b, http.StatusServiceUnavailable), cancelDuring("health")),
		exit:    1,
		says:    []string{"context canceled"},
		jobs:    "start b, stop b",
		running: [2]bool{true, false},
		listed:  "a",
		history: "failed a->b",
	}, {
		name:    "during the reload: the switch finishes, whole steps run on",
		setup:   cancelDuring("reload"),
		exit:    0,
		jobs:    "start b, stop a",
		running: [2]bool{false, true},
		listed:  "b",
		history: "switched a->b",
	}, {
		name:    "during confirm: the switch finishes",
		setup:   cancelDuring("confirm"),
		exit:    0,
		jobs:    "start b, stop a",
		running: [2]bool{false, true},
		listed:  "b",
		history: "switched a->b",
	}, {
		// validate comes before the reload, the point of no return.
		name:     "during validate: undone",
		setup:    cancelDuring("validate"),
		exit:     1,
		says:     []string{"context canceled"},
		jobs:     "start b, stop b",
		running:  [2]bool{true, false},
		listed:   "a",
		reverted: true,
		history:  "failed a->b",
	}})
}

func TestSwitchResumesAnUnfinishedSwitch(t *testing.T) {
	bothUp := both(slotIs(a, unitUp), slotIs(b, unitUp))
	runSwitchCases(t, []switchCase{{
		name:    "finishes towards its target without restarting either slot",
		setup:   both(bothUp, pendingRecord(a, b)),
		jobs:    "stop a",
		running: [2]bool{false, true},
		listed:  "b",
		history: "switched a->b",
	}, {
		name:    "the file already rewritten: finishes without restarting either slot",
		setup:   both(bothUp, listed(b), pendingRecord(a, b)),
		jobs:    "stop a",
		running: [2]bool{false, true},
		listed:  "b",
		history: "switched a->b",
	}, {
		name:     "a failure while resuming keeps the earlier record",
		setup:    both(bothUp, pendingRecord(a, b), routerStepFails("reload")),
		exit:     1,
		says:     []string{"reload failed"},
		running:  [2]bool{true, true},
		listed:   "a",
		reverted: true,
		pending:  "a->b",
		history:  "failed a->b",
	}, {
		name: "a pending record that is not JSON: refused",
		setup: func(r *rig) {
			if err := os.WriteFile(pendingPath(r.o.StateDir, r.o.Upstream), []byte("{half"), 0o644); err != nil {
				r.t.Fatal(err)
			}
		},
		exit:    2,
		says:    []string{"app.pending", "remove it if no switch is running"},
		running: [2]bool{true, false},
		listed:  "a",
		pending: "unreadable",
	}})
}

func TestRollback(t *testing.T) {
	afterSwitch := both(listed(b), slotIs(b, unitUp), switchedBefore(a, b))
	runSwitchCases(t, []switchCase{{
		name:     "reuses the old slot kept running, without a restart",
		setup:    afterSwitch,
		rollback: true,
		jobs:     "stop b",
		running:  [2]bool{true, false},
		listed:   "a",
		history:  "switched b->a",
	}, {
		name:     "starts the old slot when it was stopped",
		setup:    both(afterSwitch, slotIs(a, unitDown)),
		rollback: true,
		jobs:     "start a, stop b",
		running:  [2]bool{true, false},
		listed:   "a",
		history:  "switched b->a",
	}, {
		name: "never back to a slot whose last switch failed: it holds the failed build",
		setup: both(afterSwitch, func(r *rig) {
			r.appendHistory("failed", b, a)
		}),
		rollback: true,
		exit:     2,
		says:     []string{"holds the build whose switch failed", "install a good build in it"},
		running:  [2]bool{true, true},
		listed:   "b",
		enabled:  "a",
		history:  "failed b->a",
	}, {
		name: "goes back past failed attempts to other slots",
		setup: both(afterSwitch, func(r *rig) {
			r.appendHistory("rolled-back", a, b)
		}),
		rollback: true,
		jobs:     "stop b",
		running:  [2]bool{true, false},
		listed:   "a",
		history:  "switched b->a",
	}, {
		name:     "no switch in the history: nothing to roll back to",
		rollback: true,
		exit:     2,
		says:     []string{"nothing to roll back to"},
		running:  [2]bool{true, false},
		listed:   "a",
	}})
}

// TestSwitchesTakeTurnsAtNginx: what switches of different upstreams share
// (the config file, nginx -t, the reload) waits for the nginx lock, while
// what they do not share runs at once.
func TestSwitchesTakeTurnsAtNginx(t *testing.T) {
	r := newRig(t)
	if err := prepareStateDir(r.o.StateDir); err != nil {
		t.Fatal(err)
	}
	unlock, err := lockNginx(t.Context(), r.procs, r.o.StateDir)
	if err != nil {
		t.Fatal(err)
	}
	rewritten := make(chan struct{})
	env := r.env()
	env.Report = func(ev Event) {
		r.ev.add(ev)
		if ev.Step == "rewrite" {
			close(rewritten)
		}
	}
	done := make(chan error, 1)
	go func() {
		_, err := Switch(r.ctx, r.o, Request{}, env)
		done <- err
	}()
	<-rewritten // started and healthy without the nginx lock
	if ran := r.rt.steps(); len(ran) != 0 {
		t.Errorf("router steps %v ran while another switch held the nginx lock", ran)
	}
	unlock()
	if err := <-done; err != nil {
		t.Fatalf("switch after the lock was released: %v", err)
	}
	// The switch let go of it after its confirm step.
	again, err := lockNginx(t.Context(), r.procs, r.o.StateDir)
	if err != nil {
		t.Fatalf("nginx lock after the switch: %v", err)
	}
	// Ctrl-C while waiting for it says so, not that the wait ran out.
	ctx, cancel := context.WithCancel(t.Context())
	time.AfterFunc(50*time.Millisecond, cancel)
	if _, err := lockNginx(ctx, r.procs, r.o.StateDir); err == nil || !strings.Contains(err.Error(), "interrupted") {
		t.Errorf("nginx lock cut short while held: %v, want interrupted", err)
	}
	again()
}

// TestHooksNameTheSlotsAndHearOfFailures: {app}, {upstream}, {from} and
// {to} in a hook's arguments become the switch's own, so that installing
// the build into the idle slot needs no script; on-failure runs after a
// failed switch with its error, and not after a refusal that changed
// nothing.
func TestHooksNameTheSlotsAndHearOfFailures(t *testing.T) {
	out := filepath.Join(t.TempDir(), "hook.out")
	record := []string{"sh", "-c", `echo "$*|$EDGESWITCH_ERROR" >> ` + out, "hook"}
	for _, tt := range []struct {
		name  string
		setup func(*rig)
		exit  int
		want  string
	}{
		{"a switch that works", nil, 0, "pre shop app A B|\n"},
		{"a switch that fails", answers(b, http.StatusServiceUnavailable), 1, "pre shop app A B|\nfail shop app A B|switch failed, traffic is on the old slot: no healthy answer"},
		{"a refusal", func(r *rig) { r.rt.planErr = errors.New("no such upstream") }, 2, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			os.Remove(out)
			r := newRig(t)
			r.o.App = "shop"
			r.o.HealthTimeout = 50 * time.Millisecond
			r.o.PreStart = append(slices.Clip(record), "pre", "{app}", "{upstream}", "{from}", "{to}")
			r.o.OnFailure = append(slices.Clip(record), "fail", "{app}", "{upstream}", "{from}", "{to}")
			if tt.setup != nil {
				tt.setup(r)
			}
			_, err := Switch(r.ctx, r.o, Request{}, r.env())
			if got := ExitCode(err); got != tt.exit {
				t.Fatalf("exit %d (%v), want %d", got, err, tt.exit)
			}
			got, _ := os.ReadFile(out)
			want := strings.NewReplacer("A", strconv.Itoa(r.port(a)), "B", strconv.Itoa(r.port(b))).Replace(tt.want)
			if !strings.HasPrefix(string(got), want) || (want == "") != (len(got) == 0) {
				t.Errorf("hooks wrote %q, want it to start with %q", got, want)
			}
		})
	}
}

// baking sets a bake and, once the router has moved the traffic, does what
// then to the new slot b.
func baking(then func(r *rig)) func(*rig) {
	return func(r *rig) {
		r.o.Bake = 300 * time.Millisecond
		if then != nil {
			r.rt.during["confirm"] = func() { then(r) }
		}
	}
}

// TestSwitchWithABake: the old slot keeps running while the new one is
// watched; the first failure, at any moment, moves the traffic back to the
// old slot, which never stopped, and stops the new one.
func TestSwitchWithABake(t *testing.T) {
	runSwitchCases(t, []switchCase{{
		name:    "a healthy bake: the old slot stops after it",
		setup:   baking(nil),
		jobs:    "start b, stop a",
		running: [2]bool{false, true},
		listed:  "b",
		history: "switched a->b",
	}, {
		name:     "health turns bad: rolled back to the old slot, which never stopped",
		setup:    baking(func(r *rig) { r.slots[b].answer(http.StatusServiceUnavailable) }),
		exit:     1,
		says:     []string{"rolled back: the new slot failed its bake", "answered 503 Service Unavailable"},
		jobs:     "start b, stop b",
		running:  [2]bool{true, false},
		listed:   "a",
		reverted: true,
		history:  "rolled-back a->b",
	}, {
		name: "rolled back with a stream still open to the new slot: a warning says stopping it cuts it",
		setup: baking(func(r *rig) {
			r.slots[b].answer(http.StatusServiceUnavailable)
			r.rt.reverted = route.Drained{Left: 1, Warn: "1 connection still open to the new slot; stopping the slot now cuts it"}
		}),
		exit:     1,
		says:     []string{"rolled back: the new slot failed its bake"},
		jobs:     "start b, stop b",
		running:  [2]bool{true, false},
		listed:   "a",
		reverted: true,
		history:  "rolled-back a->b",
		warn:     "revert",
	}, {
		name:     "the new slot's unit dies: rolled back",
		setup:    baking(func(r *rig) { r.sd.set(r.unit(b), unitFailed) }),
		exit:     1,
		says:     []string{"is failed (failed) during the bake"},
		jobs:     "start b, stop b",
		running:  [2]bool{true, false},
		listed:   "a",
		reverted: true,
		history:  "rolled-back a->b",
	}, {
		name:     "nginx logs failed requests to the new slot: rolled back",
		setup:    baking(func(r *rig) { r.rt.failures = map[route.Addr]int{r.addr(b): 3} }),
		exit:     1,
		says:     []string{"nginx logged 3 failed requests to slot"},
		jobs:     "start b, stop b",
		running:  [2]bool{true, false},
		listed:   "a",
		reverted: true,
		history:  "rolled-back a->b",
	}, {
		name:     "a share of 5xx answers over bake-max-5xx: rolled back",
		setup:    baking(func(r *rig) { r.rt.answers = map[route.Addr][2]int{r.addr(b): {40, 3}} }),
		exit:     1,
		says:     []string{"answered 3 of 40 requests with 5xx during the bake, over bake-max-5xx 5%"},
		jobs:     "start b, stop b",
		running:  [2]bool{true, false},
		listed:   "a",
		reverted: true,
		history:  "rolled-back a->b",
	}, {
		name:    "5xx answers, but too few to judge by: the bake passes",
		setup:   baking(func(r *rig) { r.rt.answers = map[route.Addr][2]int{r.addr(b): {19, 19}} }),
		jobs:    "start b, stop a",
		running: [2]bool{false, true},
		listed:  "b",
		history: "switched a->b",
	}, {
		name:     "Ctrl-C during the bake: rolled back",
		setup:    baking(func(r *rig) { r.slots[b].onRequest(r.cancel) }),
		exit:     1,
		says:     []string{"interrupted", "during the bake"},
		jobs:     "start b, stop b",
		running:  [2]bool{true, false},
		listed:   "a",
		reverted: true,
		history:  "rolled-back a->b",
	}, {
		name:    "--keep-old after a passing bake",
		setup:   baking(nil),
		keepOld: true,
		jobs:    "start b",
		running: [2]bool{true, true},
		listed:  "b",
		history: "switched a->b",
	}})
}

// TestSwitchWithACanary: during the bake both slots are listed, weighted
// (the fake router lists them in order); after it, the new slot alone. A
// canary that fails goes back to the old slot alone.
func TestSwitchWithACanary(t *testing.T) {
	canary := func(then func(r *rig)) func(*rig) {
		return func(r *rig) {
			r.o.Canary = 10
			baking(func(r *rig) {
				if r.seen == nil { // the first confirm: the canary's
					r.seen = r.rt.listing()
					if then != nil {
						then(r)
					}
				}
			})(r)
		}
	}
	for _, tc := range []switchCase{{
		name:    "a healthy canary ends with the new slot alone",
		setup:   canary(nil),
		jobs:    "start b, stop a",
		running: [2]bool{false, true},
		listed:  "b",
		history: "switched a->b",
	}, {
		name:     "a failing canary goes back to the old slot alone",
		setup:    canary(func(r *rig) { r.slots[b].answer(http.StatusServiceUnavailable) }),
		exit:     1,
		says:     []string{"failed its bake"},
		jobs:     "start b, stop b",
		running:  [2]bool{true, false},
		listed:   "a",
		reverted: true,
		history:  "rolled-back a->b",
	}} {
		t.Run(tc.name, func(t *testing.T) {
			r := tc.run(t)
			if got := r.names(r.seen); got != "a b" {
				t.Errorf("during the bake the router listed %q, want both slots", got)
			}
		})
	}
	runSwitchCases(t, []switchCase{{
		name:    "a canary without a bake: refused",
		setup:   func(r *rig) { r.o.Canary = 10 },
		exit:    2,
		says:    []string{"canary 10% needs a bake", "--bake"},
		running: [2]bool{true, false},
		listed:  "a",
	}, {
		name:    "a canary out of range: refused",
		setup:   func(r *rig) { r.o.Canary, r.o.Bake = 100, time.Second },
		exit:    2,
		says:    []string{"canary 100: set the percent", "from 1 to 99"},
		running: [2]bool{true, false},
		listed:  "a",
	}, {
		name:    "a canary with no live slot to share with (a first deploy): refused",
		setup:   both(slotIs(a, unitDown), canary(nil)),
		to:      "a",
		exit:    2,
		says:    []string{"has no live slot running; switch with --canary 0 first"},
		running: [2]bool{false, false},
		listed:  "a",
		history: "refused none->a",
	}})
}

// TestAResumeOfABakeWithoutOneIsRefused: a switch that crashed while it
// baked the new slot put an untested build live; finishing it without a
// bake would retire the slot that holds the good one.
func TestAResumeOfABakeWithoutOneIsRefused(t *testing.T) {
	runSwitchCases(t, []switchCase{{
		name: "no bake now: refused, naming both ways out",
		setup: both(listed(b), slotIs(b, unitUp), func(r *rig) {
			if err := writePending(r.o.StateDir, r.o.app(), Pending{From: r.port(a), To: r.port(b), File: routerFile,
				Time: "2026-01-02T03:04:05Z", BakeUntil: "2026-01-02T03:09:05Z"}); err != nil {
				r.t.Fatal(err)
			}
		}),
		exit:    2,
		says:    []string{"was baking slot", "--bake D to bake it again", "to go back"},
		running: [2]bool{true, true},
		listed:  "b",
		enabled: "a",
		pending: "a->b",
		history: "refused a->b",
	}})
}

// TestSocketModeSettings: socket mode's settings are refused before
// anything is touched when they cannot work.
func TestSocketModeSettings(t *testing.T) {
	socket := func(set func(o *Options)) func(r *rig) {
		return func(r *rig) {
			r.o.Mode, r.o.Socket = "socket", "/run/app/{port}.sock"
			set(&r.o)
		}
	}
	refused := func(name string, setup func(r *rig), says ...string) switchCase {
		return switchCase{name: name, setup: setup, exit: 2, says: says, running: [2]bool{true, false}, listed: "a"}
	}
	runSwitchCases(t, []switchCase{
		refused("an unknown mode", func(r *rig) { r.o.Mode = "proxy" }, `mode "proxy"`, `"reload"`, `"socket"`),
		refused("socket mode without socket", socket(func(o *Options) { o.Socket = "" }), `needs socket`, "/run/app/{port}.sock"),
		refused("a socket without {port}", socket(func(o *Options) { o.Socket = "/run/app/app.sock" }), "absolute path with {port}"),
		refused("a relative socket-link", socket(func(o *Options) { o.SocketLink = "app.sock" }), "socket-link", "absolute"),
		refused("a socket nginx would misread", socket(func(o *Options) { o.Socket = "/run/my app/{port}.sock" }), "unquoted"),
		refused("a link among the sockets", socket(func(o *Options) { o.SocketLink = "/run/app/app.sock" }), "in the sockets' directory", "state dir"),
		refused("a canary in socket mode", socket(func(o *Options) { o.Canary, o.Bake = 10, time.Second }), "one link and no weights", `mode = "reload"`),
		refused("socket settings in reload mode", func(r *rig) { r.o.Socket = "/run/app/{port}.sock" }, `for mode = "socket"`),
	})
}

// TestStartLimitIsSaidOnTheStartLine: a switch that cleared the target's
// start limit says so where the start is reported.
func TestStartLimitIsSaidOnTheStartLine(t *testing.T) {
	r := switchCase{
		setup:   jobFails("start", b, fault{result: "failed", leaves: &unitLimited}),
		jobs:    "start b, reset-failed b, start b, stop a",
		running: [2]bool{false, true},
		listed:  "b",
		history: "switched a->b",
	}.run(t)
	said := slices.ContainsFunc(r.ev.list(), func(ev Event) bool {
		return ev.Step == "start" && strings.HasSuffix(ev.Detail, "started after clearing systemd's start limit (reset-failed)")
	})
	if !said {
		t.Errorf("no start line says the start limit was cleared: %+v", r.ev.list())
	}
}

// TestWarmupBeforeTrafficMoves: the warm-up requests reach the new slot
// after its health and before the router's first step, spread over the
// paths; a warm-up answer outside health-status fails the switch with
// traffic on the old slot and the new slot stopped.
func TestWarmupBeforeTrafficMoves(t *testing.T) {
	var before [2]int // hits of /a and /b when the router's first step ran
	r := switchCase{
		setup: func(r *rig) {
			r.o.Warmup, r.o.WarmupRequests = []string{"/a", "/b"}, 9
			r.rt.during["validate"] = func() { before = [2]int{r.slots[b].hitsOf("/a"), r.slots[b].hitsOf("/b")} }
		},
		jobs:    "start b, stop a",
		running: [2]bool{false, true},
		listed:  "b",
		history: "switched a->b",
	}.run(t)
	if before != [2]int{5, 4} {
		t.Errorf("requests to /a and /b before traffic moved: %v, want [5 4]", before)
	}
	said := slices.ContainsFunc(r.ev.list(), func(ev Event) bool {
		return ev.Step == "warmup" && strings.HasPrefix(ev.Detail, "9 requests to /a /b in ") && strings.Contains(ev.Detail, ", slowest ")
	})
	if !said {
		t.Errorf("no warmup line says how many requests, how long and the slowest: %+v", r.ev.list())
	}

	runSwitchCases(t, []switchCase{{
		name: "a warm-up path that answers 500 fails the switch",
		setup: func(r *rig) {
			r.o.Warmup = []string{"/", "/broken.jsp"}
			r.slots[b].answerAt("/broken.jsp", http.StatusInternalServerError)
		},
		exit:    1,
		says:    []string{"warm-up request to http://127.0.0.1:", "/broken.jsp answered 500 Internal Server Error", "not 200-299"},
		jobs:    "start b, stop b",
		running: [2]bool{true, false},
		listed:  "a",
		history: "failed a->b",
	}})
}
