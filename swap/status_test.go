package swap

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/edgeswitch/edgeswitch/route"
)

// nginxProcs gives the rig an nginx master (pid 100) with two workers of
// the current config and one old worker still shutting down.
func nginxProcs(r *rig) {
	r.rt.proxy = route.Proxy{Unit: "nginx.service", Active: "active", MasterPID: 100, Workers: 2, Draining: 1}
}

func TestReadStatusShowsWhatIsLive(t *testing.T) {
	r := newRig(t)
	nginxProcs(r)
	r.writePending(a, b)
	for range 3 {
		r.appendHistory("switched", a, b)
		r.appendHistory("switched", b, a)
	}
	r.appendHistory("failed", a, b)

	st, err := ReadStatus(r.ctx, r.o, r.env())
	if err != nil {
		t.Fatal(err)
	}
	live, since := r.port(a), unitSince
	want := &Status{
		App: "app", Upstream: "app", File: routerFile, Line: 3, Mode: "reload",
		Live: &live, Listed: []int{r.port(a)},
		Slots: []SlotStatus{
			{Port: r.port(a), Unit: r.unit(a), Active: "active", Sub: "running", Since: &since, Enabled: true, Healthy: true, Answer: "200 OK", Listener: "own"},
			{Port: r.port(b), Unit: r.unit(b), Active: "inactive", Sub: "dead", Since: &since, Answer: "not running"},
		},
		Nginx:   NginxStatus{Unit: "nginx.service", Active: "active", MasterPID: 100, Workers: 2, Draining: 1},
		Pending: &Pending{From: r.port(a), To: r.port(b), File: routerFile, Time: "2026-01-02T03:04:05Z"},
		Problems: []string{fmt.Sprintf("a switch %d -> %d did not finish (since 2026-01-02T03:04:05Z): nginx may route to either slot; run edgeswitch switch to finish it",
			r.port(a), r.port(b))},
	}
	ignoreHistory := cmpopts.IgnoreFields(Status{}, "Last", "History")
	if d := cmp.Diff(want, st, ignoreHistory, cmpopts.EquateApproxTime(0)); d != "" {
		t.Errorf("status (-want +got):\n%s", d)
	}
	if len(st.History) != historyShown || st.Last == nil || st.Last.Result != "failed" || st.Last != &st.History[len(st.History)-1] {
		t.Errorf("history shown: last %+v, %d records, want the last %d ending in the failed one", st.Last, len(st.History), historyShown)
	}
}

func TestReadStatusOfSlotsThatDoNotAnswer(t *testing.T) {
	r := newRig(t)
	r.list(a, b)
	r.slots[a].answer(http.StatusServiceUnavailable)
	r.sd.fail("get", r.unit(b), fault{err: errors.New("connection reset")})
	st, err := ReadStatus(r.ctx, r.o, r.env())
	if err != nil {
		t.Fatal(err)
	}
	if st.Live != nil || len(st.Listed) != 2 {
		t.Errorf("both listed: live %v, listed %v; want no live slot and both listed", st.Live, st.Listed)
	}
	if s := st.Slots[a]; s.Healthy || !strings.Contains(s.Answer, "503") {
		t.Errorf("slot a answering 503: %+v", s)
	}
	if s := st.Slots[b]; s.Healthy || !strings.Contains(s.Answer, "connection reset") {
		t.Errorf("slot b whose state systemd cannot tell: %+v", s)
	}
	if st.Nginx.MasterPID != 0 || st.Nginx.Workers != 0 || st.Pending != nil || st.Last != nil {
		t.Errorf("no nginx master, pending record or history, yet: %+v", st)
	}
}

// TestReadStatusNamesWhatPutsTrafficAtRisk: status exits 1 on any of these,
// so each must be found, and a healthy edge must show none.
func TestReadStatusNamesWhatPutsTrafficAtRisk(t *testing.T) {
	tests := []struct {
		name  string
		setup func(*rig)
		says  []string // one problem each; none for a healthy edge
	}{
		{"a healthy edge", nil, nil},
		{"the live slot stopped by hand", slotIs(a, unitDown), []string{"is live but app@", "is inactive: start it (systemctl start app@"}},
		{"the live slot unhealthy", func(r *rig) { r.slots[a].answer(http.StatusServiceUnavailable) }, []string{"is live but answers 503", "edgeswitch rollback"}},
		{"nginx stopped", func(r *rig) { r.rt.proxy.Active = "inactive" }, []string{"nginx.service is inactive, so nothing is served: start it"}},
		{"nginx reloading for another app's switch is no problem", func(r *rig) {
			r.rt.proxy.Active = "reloading"
		}, nil},
		{"nginx starting is not started again", func(r *rig) {
			r.rt.proxy.Active = "activating"
		}, []string{"nginx.service is starting, so nothing is served yet; see systemctl status nginx.service"}},
		{"a switch left unfinished", func(r *rig) { r.writePending(a, b) }, []string{"did not finish", "run edgeswitch switch to finish it"}},
		{"a switch running now is no problem", func(r *rig) {
			r.writePending(a, b)
			release, err := lock("/proc", r.o.StateDir, r.o.Upstream, "upstream app")
			if err != nil {
				r.t.Fatal(err)
			}
			r.t.Cleanup(release)
			r.procs = "/proc" // the kernel's own lock table
		}, nil},
		{"the other slot enabled at boot", func(r *rig) { r.sd.enabled = map[string]bool{r.unit(b): true} }, []string{"the slot enabled at boot is not the live slot", "systemctl enable app@"}},
		{"after a reboot that brought back the wrong slot: both problems", func(r *rig) {
			r.sd.enabled = map[string]bool{r.unit(b): true}
			r.sd.set(r.unit(a), unitDown)
		}, []string{"is live but app@", "the slot enabled at boot is not the live slot"}},
		{"both listed, neither healthy", both(listed(a, b), slotIs(a, unitDown)), []string{"no slot that upstream app lists is healthy"}},
		{"both listed, one healthy: the starting layout", listed(a, b), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t)
			if tt.setup != nil {
				tt.setup(r)
			}
			st, err := ReadStatus(r.ctx, r.o, r.env())
			if err != nil {
				t.Fatal(err)
			}
			all := strings.Join(st.Problems, "\n")
			for _, want := range tt.says {
				if !strings.Contains(all, want) {
					t.Errorf("problems %q do not say %q", st.Problems, want)
				}
			}
			if len(tt.says) == 0 && len(st.Problems) != 0 {
				t.Errorf("problems %q, want none", st.Problems)
			}
		})
	}
}

func TestReadStatusRefuses(t *testing.T) {
	tests := []struct {
		name  string
		setup func(*rig)
		says  string
	}{
		{"when the router cannot read the upstream", func(r *rig) { r.rt.readErr = errors.New("upstream app defined twice") }, "defined twice"},
		{"when systemd cannot tell nginx's state", func(r *rig) { r.rt.proxyErr = errors.New("no D-Bus") }, "no D-Bus"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t)
			tt.setup(r)
			_, err := ReadStatus(r.ctx, r.o, r.env())
			if ExitCode(err) != 2 || !strings.Contains(err.Error(), tt.says) {
				t.Errorf("ReadStatus = %v (exit %d), want exit 2 saying %q", err, ExitCode(err), tt.says)
			}
		})
	}
}

func TestCheck(t *testing.T) {
	const (
		found   = "upstream found once, only slot servers"
		loads   = "app@.service loads and can be enabled"
		healthy = "live slot healthy"
	)
	tests := []struct {
		name    string
		setup   func(*rig)
		noDBus  bool
		failing string // the one item that fails; "" when all pass
		says    string
	}{
		{name: "a good setup passes every item"},
		{name: "without D-Bus the units cannot be checked", noDBus: true, failing: loads, says: "D-Bus not reachable"},
		{name: "a slot unit that is not installed", setup: slotIs(b, unitUnknown), failing: loads, says: "install the template unit"},
		{name: "a router check that fails", setup: func(r *rig) { r.rt.checks[1].Err = errors.New("nginx.service is inactive") }, failing: "nginx.service active", says: "inactive"},
		{name: "a live slot that answers 503", setup: answers(a, http.StatusServiceUnavailable), failing: healthy, says: "answers 503"},
		{name: "both slots listed: no live slot yet", setup: listed(a, b), failing: healthy, says: "lists both slots"},
		{name: "a first deploy: the listed slot was never started", setup: both(slotIs(a, unitDown), answers(a, http.StatusServiceUnavailable))},
		{name: "the listed slot down after switches", setup: both(slotIs(a, unitDown), answers(a, http.StatusServiceUnavailable),
			func(r *rig) { r.appendHistory("switched", b, a) }), failing: healthy, says: "answers 503"},
		{name: "a state dir that cannot be written", setup: func(r *rig) { r.o.StateDir = unwritableDir(r.t) }, failing: "state dir writable", says: "not writable"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t)
			if tt.setup != nil {
				tt.setup(r)
			}
			env := r.env()
			if tt.noDBus {
				env.Systemd = nil
			}
			items := Check(r.ctx, r.o, env)
			var names []string
			for _, it := range items {
				names = append(names, it.Name)
				if fails := it.Name == tt.failing; it.OK == fails {
					t.Errorf("item %q ok %v: %s", it.Name, it.OK, it.Detail)
				}
				if it.Name == tt.failing && !strings.Contains(it.Detail, tt.says) {
					t.Errorf("item %q says %q, want %q", it.Name, it.Detail, tt.says)
				}
			}
			want := []string{found, "nginx -t", "nginx.service active", loads, "state dir writable", healthy}
			if d := cmp.Diff(want, names); d != "" {
				t.Errorf("items (-want +got):\n%s", d)
			}
		})
	}
}

// unwritableDir is a state dir to be created in a directory nobody, not even
// root, may write: a process's /proc entry.
func unwritableDir(t *testing.T) string {
	if syscall.Access("/proc/1", 2 /* W_OK */) == nil {
		t.Skip("/proc/1 is writable here")
	}
	return "/proc/1/edgeswitch"
}

func TestCheckWhenTheUpstreamCannotBeRead(t *testing.T) {
	r := newRig(t)
	r.rt.readErr = errors.New("upstream app not found")
	items := Check(r.ctx, r.o, r.env())
	if len(items) == 0 || items[0].OK || !strings.Contains(items[0].Detail, "not found") {
		t.Errorf("first item %+v, want the upstream not found", items)
	}
	for _, it := range items {
		if it.Name == "live slot healthy" {
			t.Errorf("the live slot is checked though the upstream could not be read: %+v", it)
		}
	}
}

// TestStatusInSocketMode: status shows the link and what it points at,
// and asks a slot that does not listen on its socket yet (before the
// conversion) on its port.
func TestStatusInSocketMode(t *testing.T) {
	r := newRig(t)
	dir := t.TempDir()
	r.o.Mode, r.o.Socket = "socket", filepath.Join(dir, "{port}.sock")
	sock := strings.ReplaceAll(r.o.Socket, "{port}", strconv.Itoa(r.port(a)))
	if err := os.Symlink(sock, r.o.Link()); err != nil {
		t.Fatal(err)
	}
	r.list(a)
	st, err := ReadStatus(r.ctx, r.o, r.env())
	if err != nil {
		t.Fatal(err)
	}
	if want := (&LinkStatus{Path: filepath.Join(r.o.StateDir, "app.sock"), Target: sock}); st.Mode != "socket" || cmp.Diff(want, st.Link) != "" {
		t.Errorf("mode %q, link %+v; want socket, %+v", st.Mode, st.Link, want)
	}
	if !st.Slots[a].Healthy {
		t.Errorf("slot a: %s; want it asked on its port while it has no socket", st.Slots[a].Answer)
	}
}

// TestHintsNameTheApp: with several apps, the commands a message names
// take the app as their first argument.
func TestHintsNameTheApp(t *testing.T) {
	r := newRig(t)
	r.o.App = "api"
	r.sd.set(r.unit(a), unitDown)
	r.list(a, b)
	st, err := ReadStatus(r.ctx, r.o, r.env())
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Problems) == 0 || !strings.Contains(st.Problems[0], "then edgeswitch switch api --to its port") {
		t.Errorf("problems %q; want the hint to name app api", st.Problems)
	}
}
