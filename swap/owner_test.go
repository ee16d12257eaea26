package swap

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/edgeswitch/edgeswitch/internal/fakeproc"
)

// squats makes the squatter listen on slot i's address in a setup.
func squats(i int) func(*rig) { return func(r *rig) { r.squat(i) } }

// squatsAfter makes the squatter listen on slot i's address once step
// has passed.
func squatsAfter(step string, i int) func(*rig) {
	return func(r *rig) {
		r.onEvent = func(ev Event) {
			if ev.Step == step && ev.Poll == 0 && !ev.Failed && !r.squatted[i] {
				r.squat(i)
			}
		}
	}
}

func TestSwitchTakesNoAnswerFromAnotherProcess(t *testing.T) {
	squatter := "PID 666 (squat) in cgroup " + squatCG
	runSwitchCases(t, []switchCase{{
		name:    "the idle port taken before the switch: refused, naming who holds it, nothing started",
		setup:   squats(b),
		exit:    2,
		says:    []string{"is taken before it starts", squatter, "stop that process"},
		running: [2]bool{true, false},
		listed:  "a",
		history: "refused a->b",
	}, {
		name:    "a dry run refuses it too",
		setup:   squats(b),
		dryRun:  true,
		exit:    2,
		says:    []string{"is taken before it starts", squatter},
		running: [2]bool{true, false},
		listed:  "a",
	}, {
		name:    "a squatter that binds once the slot has started: its 200 is not taken, the switch fails",
		setup:   squatsAfter("start", b),
		exit:    1,
		says:    []string{"answered 200 OK, but a process outside the slot's unit listens on", squatter, "not app@"},
		jobs:    "start b, stop b",
		running: [2]bool{true, false},
		listed:  "a",
		history: "failed a->b",
	}, {
		name:    "a squatter that binds after the health step: caught before traffic moves",
		setup:   squatsAfter("health", b),
		exit:    1,
		says:    []string{"a process outside the slot's unit listens on", squatter, ".service: stop that process and switch again"},
		jobs:    "start b, stop b",
		running: [2]bool{true, false},
		listed:  "a",
		history: "failed a->b",
	}, {
		name:    "a squatter on the old slot's port is none of the switch's business",
		setup:   squats(a),
		jobs:    "start b, stop a",
		running: [2]bool{false, true},
		listed:  "b",
		history: "switched a->b",
	}})
}

// TestSwitchWaitsForTheSlotsOwnListener: an answer that /proc does not
// show the slot's unit giving (its socket not in the table yet) is polled
// again, not taken.
func TestSwitchWaitsForTheSlotsOwnListener(t *testing.T) {
	r := newRig(t)
	var polls int
	r.onEvent = func(ev Event) {
		if ev.Step == "health" && ev.Poll > 0 {
			polls++
		}
	}
	hide := func() { // the unit runs, its socket is not in the tables yet
		r.sd.changed = nil
		fakeproc.Tables(t, r.procs, map[string]string{"tcp": fakeproc.TCPHeader})
	}
	r.sd.changed = hide
	r.slots[b].onRequest(func() {
		if polls > 0 {
			r.sd.changed = r.writeTables
			r.writeTables()
		}
	})
	if _, err := Switch(r.ctx, r.o, Request{}, r.env()); err != nil {
		t.Fatal(err)
	}
	if polls == 0 {
		t.Error("the first 200, with no listener of the slot's in /proc, was taken")
	}
}

func TestProveOwner(t *testing.T) {
	tests := []struct {
		name  string
		setup func(*rig)
		slot  int
		ok    string // in the detail when it holds
		err   error  // what the error wraps otherwise
		says  string
	}{
		{"the running slot's own socket", nil, a, "only app@", nil, "PID 300 (app)"},
		{"a squatter beside the slot (SO_REUSEPORT, or the wildcard address)", squats(a), a, "", errSquatted, "PID 666 (squat) in cgroup " + squatCG},
		{"a stopped unit has no cgroup: any listener is another's", squats(b), b, "", errSquatted, "not app@"},
		{"nothing listens", nil, b, "", errNoListener, "nothing listens on 127.0.0.1:"},
		{"a holder in a cgroup below the unit's is the unit's", func(r *rig) {
			r.sd.cgroups[r.unit(a)] = "/app.slice"
		}, a, "only app@", nil, ""},
		{"a unit whose cgroup is a prefix of the holder's name only is not", func(r *rig) {
			r.sd.cgroups[r.unit(a)] = "/app.slice/app@" + strconv.Itoa(r.port(a))
		}, a, "", errSquatted, "PID 300 (app)"},
		{"a listener nobody holds any more", func(r *rig) {
			os.RemoveAll(filepath.Join(r.procs, strconv.Itoa(slotPID+a)))
		}, a, "", nil, "no process holds the socket"},
		{"a squatter's name is escaped, not sent to the terminal", func(r *rig) {
			r.squat(a)
			if err := os.WriteFile(filepath.Join(r.procs, strconv.Itoa(squatPID), "comm"), []byte("\x1b]0;ok\a\n"), 0o644); err != nil {
				r.t.Fatal(err)
			}
		}, a, "", errSquatted, `PID 666 (\x1b]0;ok\a)`},
		{"in socket mode, a stale listener on the path that is not the unit's", func(r *rig) {
			r.o.Mode, r.o.Socket = "socket", "/run/app/{port}.sock"
			r.squat(a)
		}, a, "", errSquatted, "on /run/app/"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t)
			if tt.setup != nil {
				tt.setup(r)
			}
			detail, err := proveOwner(r.ctx, r.env(), r.o.slot(r.port(tt.slot)))
			switch {
			case tt.ok != "" && (err != nil || !strings.Contains(detail, tt.ok)):
				t.Errorf("proveOwner = %q, %v; want it to hold: %q", detail, err, tt.ok)
			case tt.ok == "" && (err == nil || tt.err != nil && !errors.Is(err, tt.err)):
				t.Errorf("proveOwner = %q, %v; want an error wrapping %v", detail, err, tt.err)
			case !strings.Contains(detail+errString(err), tt.says):
				t.Errorf("proveOwner = %q, %v; want it to say %q", detail, err, tt.says)
			}
		})
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func TestStatusAndCheckLookAtTheLiveSlotsListeners(t *testing.T) {
	t.Run("a squatter on the live slot's port is a problem", func(t *testing.T) {
		r := newRig(t)
		r.squat(a)
		st, err := ReadStatus(r.ctx, r.o, r.env())
		if err != nil {
			t.Fatal(err)
		}
		if s := st.Slots[a]; s.Healthy || s.Listener != "foreign" {
			t.Errorf("slot a: healthy %v, listener %q; want unhealthy, foreign", s.Healthy, s.Listener)
		}
		if len(st.Problems) != 1 || !strings.Contains(st.Problems[0], "PID 666 (squat)") || !strings.Contains(st.Problems[0], "stop that process") {
			t.Errorf("problems %q; want one naming the squatter", st.Problems)
		}
		item := checkItem(t, Check(r.ctx, r.o, r.env()), "live slot healthy")
		if item.OK || !strings.Contains(item.Detail, "PID 666 (squat)") {
			t.Errorf("check: %+v; want it failed, naming the squatter", item)
		}
	})

	t.Run("a user who cannot read the slot's descriptors is told unverified", func(t *testing.T) {
		r := newRig(t)
		fakeproc.Deny(t, r.procs, slotPID+a)
		if err := os.Chmod(r.o.StateDir, 0o755); err != nil {
			t.Fatal(err)
		}
		var st *Status
		var items []CheckItem
		var err error
		fakeproc.AsOtherUser(t, func() {
			st, err = ReadStatus(r.ctx, r.o, r.env())
			items = Check(r.ctx, r.o, r.env())
		})
		if err != nil {
			t.Fatal(err)
		}
		if s := st.Slots[a]; !s.Healthy || s.Listener != "unverified" || !strings.Contains(s.Answer, "200 OK (unverified: ") {
			t.Errorf("slot a: healthy %v, listener %q, answer %q; want healthy, unverified", s.Healthy, s.Listener, s.Answer)
		}
		if len(st.Problems) != 0 {
			t.Errorf("problems %q; want none", st.Problems)
		}
		if item := checkItem(t, items, "live slot healthy"); !item.OK || !strings.Contains(item.Detail, "unverified") {
			t.Errorf("check: %+v; want ok, unverified", item)
		}
	})
}

func checkItem(t *testing.T, items []CheckItem, name string) CheckItem {
	t.Helper()
	for _, it := range items {
		if it.Name == name {
			return it
		}
	}
	t.Fatalf("no check item %q in %+v", name, items)
	return CheckItem{}
}
