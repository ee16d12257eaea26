package swap

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/coreos/go-systemd/v22/dbus"
	godbus "github.com/godbus/dbus/v5"

	"github.com/edgeswitch/edgeswitch/internal/fakeproc"
	"github.com/edgeswitch/edgeswitch/route"
)

// unitState is what the fake systemd says of one unit.
type unitState struct{ active, sub, load, result string }

var (
	unitUp      = unitState{"active", "running", "loaded", ""}
	unitDown    = unitState{"inactive", "dead", "loaded", ""}
	unitFailed  = unitState{"failed", "failed", "loaded", "exit-code"}
	unitLimited = unitState{"failed", "failed", "loaded", "start-limit-hit"}
	unitLooping = unitState{"activating", "auto-restart", "loaded", ""}
	unitUnknown = unitState{"inactive", "dead", "not-found", ""}
)

// unitSince is the StateChangeTimestamp the fake reports for every unit.
var unitSince = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// fault is what one call of the fake systemd does instead of succeeding.
type fault struct {
	err    error      // the call fails at once, as a D-Bus error would
	result string     // the job ends with this result instead of "done"
	leaves *unitState // the unit's state once the job is done, instead of the usual one
}

// fakeSystemd is a systemd manager in memory: units with their states,
// jobs that change them and report their result on the caller's channel
// at once, and per-call faults. It is safe for concurrent use.
type fakeSystemd struct {
	mu     sync.Mutex
	units  map[string]unitState
	faults map[string]fault // by call and unit: "start app@4001.service", "get app@4001.service"
	jobs   []string         // the jobs asked for, in order: "start app@4001.service"
	// enabled holds the units linked to start at boot; static the units
	// whose file has no [Install] section.
	enabled, static map[string]bool
	// scopes are the hooks' transient scopes, each the process group of
	// its first PID: what the fake kills in one.
	scopes map[string]int
	// cgroups are the units' ControlGroup while they run.
	cgroups map[string]string
	// changed runs after each change of a unit's state, outside the lock.
	changed func()
}

var _ Systemd = (*fakeSystemd)(nil)

func newFakeSystemd() *fakeSystemd {
	return &fakeSystemd{units: map[string]unitState{}, faults: map[string]fault{},
		enabled: map[string]bool{}, static: map[string]bool{}, scopes: map[string]int{}, cgroups: map[string]string{}}
}

func (f *fakeSystemd) set(unit string, s unitState) {
	f.mu.Lock()
	f.units[unit] = s
	f.mu.Unlock()
	f.tell()
}

// tell runs changed, if set.
func (f *fakeSystemd) tell() {
	if f.changed != nil {
		f.changed()
	}
}

func (f *fakeSystemd) state(unit string) unitState {
	f.mu.Lock()
	defer f.mu.Unlock()
	return cmp.Or(f.units[unit], unitUnknown)
}

// fail makes call ("get", "start", "stop", "restart", "reload") on unit
// do what ft says.
func (f *fakeSystemd) fail(call, unit string, ft fault) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.faults[call+" "+unit] = ft
}

func (f *fakeSystemd) jobList() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.jobs)
}

func (f *fakeSystemd) GetUnitPropertiesContext(_ context.Context, unit string) (map[string]any, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.faults["get "+unit].err; err != nil {
		return nil, err
	}
	s := cmp.Or(f.units[unit], unitUnknown)
	return map[string]any{
		"ActiveState":          s.active,
		"SubState":             s.sub,
		"LoadState":            s.load,
		"Result":               cmp.Or(s.result, "success"),
		"StateChangeTimestamp": uint64(unitSince.UnixMicro()),
	}, nil
}

func (f *fakeSystemd) GetUnitFileStateContext(_ context.Context, unit string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.faults["file "+unit].err; err != nil {
		return "", err
	}
	switch {
	case f.static[unit]:
		return "static", nil
	case f.enabled[unit]:
		return "enabled", nil
	}
	return "disabled", nil
}

func (f *fakeSystemd) EnableUnitFilesContext(_ context.Context, files []string, _, _ bool) (bool, []dbus.EnableUnitFileChange, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, u := range files {
		if err := f.faults["enable "+u].err; err != nil {
			return false, nil, err
		}
		f.enabled[u] = true
	}
	return true, nil, nil
}

func (f *fakeSystemd) DisableUnitFilesContext(_ context.Context, files []string, _ bool) ([]dbus.DisableUnitFileChange, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, u := range files {
		if err := f.faults["disable "+u].err; err != nil {
			return nil, err
		}
		delete(f.enabled, u)
	}
	return nil, nil
}

// enabledUnits returns the units linked to start at boot.
func (f *fakeSystemd) enabledUnits() map[string]bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return maps.Clone(f.enabled)
}

// ResetFailedUnitContext clears the unit's failed state, and with it a
// start limit: a fault of its next start no longer holds.
func (f *fakeSystemd) ResetFailedUnitContext(_ context.Context, unit string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.jobs = append(f.jobs, "reset-failed "+unit)
	if err := f.faults["reset-failed "+unit].err; err != nil {
		return err
	}
	delete(f.faults, "start "+unit)
	f.units[unit] = unitDown
	return nil
}

// GetServicePropertyContext gives a unit's ControlGroup while it runs.
func (f *fakeSystemd) GetServicePropertyContext(_ context.Context, unit, name string) (*dbus.Property, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if name != "ControlGroup" {
		return nil, fmt.Errorf("fake systemd: no property %s", name)
	}
	cg := ""
	if running(cmp.Or(f.units[unit], unitUnknown).active) {
		cg = f.cgroups[unit]
	}
	return &dbus.Property{Name: name, Value: godbus.MakeVariant(cg)}, nil
}

func (f *fakeSystemd) StartUnitContext(_ context.Context, unit, _ string, ch chan<- string) (int, error) {
	return f.job("start", unit, ch, unitUp)
}

func (f *fakeSystemd) RestartUnitContext(_ context.Context, unit, _ string, ch chan<- string) (int, error) {
	return f.job("restart", unit, ch, unitUp)
}

func (f *fakeSystemd) StopUnitContext(_ context.Context, unit, _ string, ch chan<- string) (int, error) {
	return f.job("stop", unit, ch, unitDown)
}

func (f *fakeSystemd) StartTransientUnitContext(_ context.Context, name, _ string, props []dbus.Property, ch chan<- string) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, p := range props {
		if pids, ok := p.Value.Value().([]uint32); ok && p.Name == "PIDs" {
			f.scopes[name] = int(pids[0])
		}
	}
	ch <- "done"
	return 0, nil
}

func (f *fakeSystemd) KillUnitWithTarget(_ context.Context, name string, _ dbus.Who, signal int32) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if pid, ok := f.scopes[name]; ok {
		return syscall.Kill(-pid, syscall.Signal(signal))
	}
	return fmt.Errorf("unit %s not loaded", name)
}

// job records the call and, unless a fault says otherwise, leaves the unit
// in state done and reports "done". A start that fails leaves the unit
// failed; a stop that fails leaves it as it was.
func (f *fakeSystemd) job(call, unit string, ch chan<- string, done unitState) (int, error) {
	defer f.tell()
	f.mu.Lock()
	defer f.mu.Unlock()
	key := call + " " + unit
	f.jobs = append(f.jobs, key)
	ft := f.faults[key]
	if ft.err != nil {
		return 0, ft.err
	}
	result := cmp.Or(ft.result, "done")
	switch {
	case ft.leaves != nil:
		f.units[unit] = *ft.leaves
	case result == "done":
		f.units[unit] = done
	case call == "start" || call == "restart":
		f.units[unit] = unitFailed
	}
	ch <- result // buffered by the caller, as go-systemd expects
	return len(f.jobs), nil
}

// fakeRouter moves traffic in memory: its "config" is the list of
// addresses that get traffic, which the validate step writes, and Revert
// puts back as Read found it. It records the steps that ran, can fail at
// any of them, and runs a test's hook inside a step.
type fakeRouter struct {
	mu       sync.Mutex
	config   []route.Addr // what the config lists now
	read     []route.Addr // what it listed at Read: what Revert restores
	readErr  error
	planErr  error
	checks   []route.Check
	fail     map[string]error  // step name -> its error
	during   map[string]func() // step name -> run at the start of the step
	drained  route.Drained
	reverted route.Drained // what Revert's wait left
	revErr   error
	proxy    route.Proxy // what Describe says
	proxyErr error
	ran      []string              // step names, and "revert", in order
	failures map[route.Addr]int    // failed requests logged per address
	answers  map[route.Addr][2]int // answers and 5xx answers logged per address
	cut      []string              // whole steps whose context was cancelled when they returned
}

const routerFile = "/etc/nginx/conf.d/app.conf"

var _ Router = (*fakeRouter)(nil)

func newFakeRouter(listed ...route.Addr) *fakeRouter {
	return &fakeRouter{
		config: listed,
		checks: []route.Check{{Name: "nginx -t", OK: "ok"}, {Name: "nginx.service active", OK: "active"}},
		proxy:  route.Proxy{Unit: "nginx.service", Active: "active"},
		fail:   map[string]error{},
		during: map[string]func(){},
	}
}

func (r *fakeRouter) Read() (route.Listing, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.readErr != nil {
		return route.Listing{}, r.readErr
	}
	r.read = slices.Clone(r.config)
	return route.Listing{File: routerFile, Line: 3, Addrs: slices.Clone(r.config)}, nil
}

func (r *fakeRouter) Checks(context.Context) []route.Check {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.checks)
}

func (r *fakeRouter) Plan(to []route.Backend, resume string) (*route.Change, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.planErr != nil {
		return nil, r.planErr
	}
	var want []route.Addr
	for _, b := range to {
		want = append(want, b.Addr)
	}
	return &route.Change{
		File:    routerFile,
		Diff:    fakeDiff(r.read, want),
		Changed: !slices.Equal(r.read, want),
		Steps: []route.Step{
			{Name: "validate", Do: r.step("validate", false, func() { r.config = want })},
			{Name: "reload", Whole: true, Do: r.step("reload", true, nil)},
			{Name: "confirm", Whole: true, Do: r.step("confirm", true, nil)},
		},
	}, nil
}

// fakeDiff is the Diff the fake router plans: the listings as lines.
func fakeDiff(from, to []route.Addr) string {
	if slices.Equal(from, to) {
		return ""
	}
	return fmt.Sprintf("-server %v\n+server %v\n", from, to)
}

// step returns the Do of one router step: it runs the test's hook, then
// its effect, then fails if the test said so. It never fails on a
// cancelled context itself, so that the tests see where the switch looks
// at Ctrl-C.
func (r *fakeRouter) step(name string, whole bool, effect func()) func(context.Context) (string, error) {
	return func(ctx context.Context) (string, error) {
		r.mu.Lock()
		hook := r.during[name]
		r.mu.Unlock()
		if hook != nil {
			hook()
		}
		r.mu.Lock()
		defer r.mu.Unlock()
		r.ran = append(r.ran, name)
		if ctx.Err() != nil && whole {
			r.cut = append(r.cut, name)
		}
		if effect != nil {
			effect()
		}
		if err := r.fail[name]; err != nil {
			return "", err
		}
		return name + " ok", nil
	}
}

func (r *fakeRouter) Drain(context.Context) route.Drained {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ran = append(r.ran, "drain")
	return r.drained
}

// Watch watches addr in the fake's logs: what failures and answers hold
// for it when the bake looks.
func (r *fakeRouter) Watch(_ context.Context, addr route.Addr) route.Watch {
	return fakeWatch{r, addr}
}

type fakeWatch struct {
	r    *fakeRouter
	addr route.Addr
}

func (w fakeWatch) Failures() (int, string) {
	w.r.mu.Lock()
	defer w.r.mu.Unlock()
	return w.r.failures[w.addr], "upstream: \"http://" + w.addr.String() + "/\" failed"
}

func (w fakeWatch) Answers() (int, int) {
	w.r.mu.Lock()
	defer w.r.mu.Unlock()
	a := w.r.answers[w.addr]
	return a[0], a[1]
}

func (r *fakeRouter) Revert(context.Context) (route.Drained, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ran = append(r.ran, "revert")
	if r.revErr != nil {
		return route.Drained{}, r.revErr
	}
	r.config = slices.Clone(r.read)
	return r.reverted, nil
}

func (r *fakeRouter) Describe(context.Context) (route.Proxy, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.proxy, r.proxyErr
}

func (r *fakeRouter) listing() []route.Addr {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.config)
}

func (r *fakeRouter) steps() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.ran)
}

func (r *fakeRouter) cutSteps() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.cut)
}

// slotServer is one app slot: an httptest server whose answer the test
// sets, with a hook run on each request.
type slotServer struct {
	srv    *httptest.Server
	port   int
	code   atomic.Int32
	onPoll atomic.Pointer[func()]
	mu     sync.Mutex
	hits   map[string]int // requests per path
	codes  map[string]int // a path's own answer, over code
}

func newSlotServer(t *testing.T) *slotServer {
	t.Helper()
	s := &slotServer{hits: map[string]int{}, codes: map[string]int{}}
	s.code.Store(http.StatusOK)
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if hook := s.onPoll.Load(); hook != nil {
			(*hook)()
		}
		code := int(s.code.Load())
		s.mu.Lock()
		s.hits[r.URL.Path]++
		code = cmp.Or(s.codes[r.URL.Path], code)
		s.mu.Unlock()
		w.WriteHeader(code)
		fmt.Fprintf(w, "answer %d", code)
	}))
	t.Cleanup(s.srv.Close)
	_, port, _ := net.SplitHostPort(s.srv.Listener.Addr().String())
	s.port, _ = strconv.Atoi(port)
	return s
}

func (s *slotServer) answer(code int) { s.code.Store(int32(code)) }

// answerAt makes path alone answer code.
func (s *slotServer) answerAt(path string, code int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.codes[path] = code
}

// hitsOf counts the requests to path so far.
func (s *slotServer) hitsOf(path string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.hits[path]
}
func (s *slotServer) onRequest(f func()) { s.onPoll.Store(&f) }

// events collects what a switch reports.
type events struct {
	mu  sync.Mutex
	all []Event
}

func (e *events) add(ev Event) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.all = append(e.all, ev)
}

func (e *events) list() []Event {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.all)
}

// has reports whether an event of step was reported with the given warn flag.
func (e *events) has(step string, warn bool) bool {
	return slices.ContainsFunc(e.list(), func(ev Event) bool { return ev.Step == step && ev.Warn == warn })
}

// a and b index the two slots; a is the live one at the start of most cases.
const a, b = 0, 1

// rig is the world of one switch: two slots served by httptest servers,
// a fake systemd and router, a temp state dir and a temp /proc.
type rig struct {
	seen   []route.Addr // what a test's hook saw the router list
	t      *testing.T
	o      Options
	sd     *fakeSystemd
	rt     *fakeRouter
	slots  [2]*slotServer
	ev     *events
	client *http.Client
	procs  string
	// squatted: a process outside the slot units listens on slot i's
	// address in the rig's /proc.
	squatted [2]bool
	// onEvent, if set, sees each event the switch reports, as it comes.
	onEvent func(Event)
	ctx     context.Context
	cancel  context.CancelFunc
}

// newRig sets up the usual start: slot a listed and running, b stopped,
// both answering 200.
func newRig(t *testing.T) *rig {
	t.Helper()
	r := &rig{t: t, sd: newFakeSystemd(), ev: &events{}, client: &http.Client{}, procs: t.TempDir()}
	t.Cleanup(r.client.CloseIdleConnections)
	r.slots = [2]*slotServer{newSlotServer(t), newSlotServer(t)}
	r.o = defaults()
	r.o.Host = "127.0.0.1"
	r.o.Ports = []int{r.slots[a].port, r.slots[b].port}
	r.o.HealthInterval = time.Millisecond
	r.o.HealthTimeout = 5 * time.Second // failing cases that wait for it set their own
	r.o.StateDir = t.TempDir()
	r.rt = newFakeRouter(r.addr(a))
	r.sd.set(r.unit(a), unitUp)
	r.sd.set(r.unit(b), unitDown)
	r.sd.enabled[r.unit(a)] = true
	r.fakeProc()
	r.ctx, r.cancel = context.WithCancel(t.Context())
	t.Cleanup(r.cancel)
	return r
}

func (r *rig) port(i int) int        { return r.o.Ports[i] }
func (r *rig) unit(i int) string     { return r.o.SlotUnit(r.port(i)) }
func (r *rig) addr(i int) route.Addr { return r.o.slot(r.port(i)).Addr }
func (r *rig) running(i int) bool    { return running(r.sd.state(r.unit(i)).active) }

// list sets what the router's config lists, by slot.
func (r *rig) list(slots ...int) {
	var addrs []route.Addr
	for _, i := range slots {
		addrs = append(addrs, r.addr(i))
	}
	r.rt.config = addrs
}

func (r *rig) env() Env {
	return Env{
		Systemd:  r.sd,
		ProcRoot: r.procs,
		HTTP:     r.client,
		Now:      time.Now,
		Report: func(ev Event) {
			r.ev.add(ev)
			if r.onEvent != nil {
				r.onEvent(ev)
			}
		},
		Login:  "tester",
		Router: func(Options) Router { return r.rt },
	}
}

// name names a port as the tests do: "a", "b", "none" for 0, else the number.
func (r *rig) name(port int) string {
	switch port {
	case 0:
		return "none"
	case r.port(a):
		return "a"
	case r.port(b):
		return "b"
	}
	return strconv.Itoa(port)
}

// names names a list of addresses as slots: "a", "a b".
func (r *rig) names(addrs []route.Addr) string {
	var ns []string
	for _, ad := range addrs {
		_, p, _ := net.SplitHostPort(ad.Name)
		port, _ := strconv.Atoi(p)
		ns = append(ns, r.name(port))
	}
	return strings.Join(ns, " ")
}

// enabledNames names the slots enabled in the fake systemd: "a", "b", "a b".
func (r *rig) enabledNames() string {
	on := r.sd.enabledUnits()
	var ns []string
	for i := range r.o.Ports {
		if on[r.unit(i)] {
			ns = append(ns, r.name(r.port(i)))
		}
	}
	return strings.Join(ns, " ")
}

// portOf reads a slot name of the tests ("a", "b", a number, "") as a port.
func (r *rig) portOf(name string) int {
	switch name {
	case "":
		return 0
	case "a":
		return r.port(a)
	case "b":
		return r.port(b)
	}
	p, err := strconv.Atoi(name)
	if err != nil {
		r.t.Fatalf("slot name %q", name)
	}
	return p
}

// jobs are the systemd jobs asked for so far, with slots by name:
// "start b, stop a".
func (r *rig) jobs() string {
	var js []string
	for _, j := range r.sd.jobList() {
		call, unit, _ := strings.Cut(j, " ")
		for i := range 2 {
			if unit == r.unit(i) {
				unit = r.name(r.port(i))
			}
		}
		js = append(js, call+" "+unit)
	}
	return strings.Join(js, ", ")
}

// pending is the pending record as "a->b", "" when there is none (or no
// state dir), or "unreadable".
func (r *rig) pending() string {
	r.t.Helper()
	p, err := readPending(r.o.StateDir, r.o.Upstream)
	if err != nil && !errors.Is(err, syscall.ENOTDIR) {
		return "unreadable"
	}
	if p == nil {
		return ""
	}
	return r.name(p.From) + "->" + r.name(p.To)
}

func (r *rig) writePending(from, to int) {
	r.t.Helper()
	if err := writePending(r.o.StateDir, r.o.Upstream, Pending{From: r.port(from), To: r.port(to), File: routerFile, Time: "2026-01-02T03:04:05Z"}); err != nil {
		r.t.Fatal(err)
	}
}

// lastRecord is the last history record as "switched a->b", or "" when
// there is none (or no state dir).
func (r *rig) lastRecord() string {
	r.t.Helper()
	hist, err := History(r.o.StateDir, r.o.Upstream, nil)
	if err != nil && !errors.Is(err, syscall.ENOTDIR) {
		r.t.Fatal(err)
	}
	if len(hist) == 0 {
		return ""
	}
	last := hist[len(hist)-1]
	from := 0
	if last.From != nil {
		from = *last.From
	}
	return fmt.Sprintf("%s %s->%s", last.Result, r.name(from), r.name(last.To))
}

func (r *rig) appendHistory(result string, from, to int) {
	r.t.Helper()
	if err := appendHistory(r.o.StateDir, Record{Upstream: r.o.Upstream, From: r.o.slot(r.port(from)).port(), To: r.port(to), Result: result}); err != nil {
		r.t.Fatal(err)
	}
}

// The rig's /proc has a process per slot (slotPID+i), in its unit's
// cgroup, which listens on the slot's address while the unit runs, and a
// squatter, which listens on a slot's address once squat says so.
const (
	slotPID    = 300
	squatPID   = 666
	squatCG    = "/user.slice/user-65534.slice/session-1.scope"
	slotInode  = 5000 // + i: slot i's TCP socket; +100: its unix socket
	squatInode = 6000 // + i, as for the slots
)

// fakeProc writes the processes of the rig's /proc, and its socket tables
// from now on, whenever a unit's state changes.
func (r *rig) fakeProc() {
	for i := range 2 {
		cg := "/app.slice/" + r.unit(i)
		r.sd.cgroups[r.unit(i)] = cg
		// Hybrid, as on Debian 12 hosts: systemd's own hierarchy first.
		fakeproc.Process(r.t, r.procs, slotPID+i, "app", "1:name=systemd:"+cg+"\n0::"+cg+"\n", slotInode+i, slotInode+100+i)
	}
	fakeproc.Process(r.t, r.procs, squatPID, "squat", "0::"+squatCG+"\n", squatInode, squatInode+1, squatInode+100, squatInode+101)
	r.sd.changed = r.writeTables
	r.writeTables()
}

// writeTables writes the socket tables of the rig's /proc as the units'
// states and the squatter say.
func (r *rig) writeTables() {
	tcp, unix := fakeproc.TCPHeader, fakeproc.UnixHeader
	listen := func(i, inode int) {
		tcp += fakeproc.TCPLine(r.o.TCPAddr(r.port(i)).String(), "0.0.0.0:0", fakeproc.Listen, inode+i)
		if path, ok := r.addr(i).Socket(); ok {
			unix += fakeproc.UnixLine(fakeproc.Listening, fakeproc.Stream, 1, inode+100+i, path)
		}
	}
	for i := range 2 {
		if r.running(i) {
			listen(i, slotInode)
		}
		if r.squatted[i] {
			listen(i, squatInode)
		}
	}
	fakeproc.Tables(r.t, r.procs, map[string]string{"tcp": tcp, "tcp6": fakeproc.TCP6Header, "unix": unix})
}

// squat makes the squatter listen on slot i's address.
func (r *rig) squat(i int) {
	r.squatted[i] = true
	r.writeTables()
}
