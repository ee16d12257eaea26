package swap

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/edgeswitch/edgeswitch/route"
)

// Request is what one switch is asked to do.
type Request struct {
	To      int  // target port; 0 means the slot that is not live
	DryRun  bool // print the diff, change nothing
	KeepOld bool // leave the old slot running (for an instant rollback)
	Reuse   bool // keep a running target as it is instead of restarting it (rollback)
}

// Result says what a switch did.
type Result struct {
	From, To  Slot // From is the zero Slot when no slot was live alone
	Unchanged bool // the target was already live and the other slot stopped
	Diff      string
	Draining  int // what still served the old slot when drain-timeout passed
}

// switcher holds the state of one switch as it moves through the steps.
type switcher struct {
	o      Options
	req    Request
	env    Env
	router Router
	res    Result

	listed    []Slot        // the slots the router lists now
	watch     route.Watch   // with a bake: what nginx logs of the new slot since the router's first step
	persisted bool          // the target is enabled and the other slot not
	change    *route.Change // computed in decide, carried out by the router's steps
	promote   *route.Change // with a canary: the new slot alone, after the bake
	targetIn  bool          // the target was listed before: it may carry traffic, never stop it
	started   bool          // this switch started the target: stop it on failure
	resumed   *Pending      // the record of an earlier switch that did not finish
	undos     []func(context.Context) error
	committed bool
	unlock    func() // releases the nginx lock while the router's steps hold it
	// trafficMoved: the proxy took the change, traffic went to the new slot
	trafficMoved bool
	steps        []StepTime
}

// Switch moves traffic to the target slot (see the package doc for the
// steps). On failure before the point of no return it undoes what it did;
// errors wrap ErrUsage, ErrFailed or ErrStuck (see ExitCode).
func Switch(ctx context.Context, o Options, req Request, env Env) (Result, error) {
	if err := o.Check(); err != nil {
		return Result{}, err
	}
	s := &switcher{o: o, req: req, env: env, router: env.Router(o)}
	start := env.Now()
	var release func()
	err := s.step("lock", func() (string, error) {
		var err error
		take := lock
		if req.DryRun {
			take = lockToLook
		}
		release, err = take(env.ProcRoot, o.StateDir, o.app(), o.describe())
		return o.StateDir, err
	})
	if err != nil {
		return s.res, err
	}
	defer release()
	defer s.unlockNginx()
	err = s.check(ctx, s.prepare())
	switch {
	case err != nil:
	case s.res.Unchanged:
		if !s.persisted && !req.DryRun {
			err = s.check(ctx, []step{{name: "persist", do: s.persist}})
		}
	case req.DryRun:
		err = s.check(ctx, []step{{name: "rewrite", do: s.rewrite}})
	default:
		err = s.act(ctx, s.plan())
	}
	if req.DryRun {
		return s.res, err
	}
	if err == nil {
		if cerr := clearPending(o.StateDir, o.app()); cerr != nil {
			env.report(Event{Step: "record", Warn: true, Detail: cerr.Error()})
		}
	}
	if s.res.To.Port != 0 {
		s.record(start, err)
	}
	if err == nil && !s.res.Unchanged && len(o.PostSwitch) > 0 {
		if perr := s.step("post-switch", func() (string, error) { return s.runHook(ctx, o.PostSwitch) }); perr != nil {
			env.report(Event{Step: "post-switch", Warn: true, Detail: "the switch itself is done"})
		}
	}
	// A refusal (exit 2) changed nothing and is not a failed switch.
	if err != nil && !errors.Is(err, ErrUsage) && len(o.OnFailure) > 0 {
		hctx := context.WithoutCancel(ctx) // after Ctrl-C too: someone should hear of it
		if herr := s.step("on-failure", func() (string, error) {
			return s.runHook(hctx, o.OnFailure, "EDGESWITCH_ERROR="+cut(err.Error(), maxField))
		}); herr != nil {
			env.report(Event{Step: "on-failure", Warn: true, Detail: "the hook failed; the switch's own error follows"})
		}
	}
	return s.res, err
}

// Rollback switches back to the slot that was live before the last switch
// of the upstream. A slot still running (after --keep-old) is kept as it
// is, so the rollback takes about as long as one reload.
func Rollback(ctx context.Context, o Options, req Request, env Env) (Result, error) {
	// The history is read as root: only from a state dir only root controls.
	if err := prepareStateDir(o.StateDir); err != nil {
		return Result{}, err
	}
	hist, err := History(o.StateDir, o.app(), func(w string) { env.report(Event{Step: "history", Warn: true, Detail: w}) })
	if err != nil {
		return Result{}, err
	}
	for i := len(hist) - 1; i >= 0; i-- {
		if r := hist[i]; r.Result == "switched" && r.From != nil {
			if bad := lastSwitchTo(hist, *r.From); bad != nil && bad.Result != "switched" && bad.Result != "unchanged" {
				return Result{}, Usage(fmt.Errorf("slot %d holds the build whose switch %s at %s; install a good build in it and run %s --to %d",
					*r.From, bad.Result, bad.Time, o.command("switch"), *r.From))
			}
			req.To, req.Reuse = *r.From, true
			return Switch(ctx, o, req, env)
		}
	}
	return Result{}, Usage(fmt.Errorf("no switch of %s in the history in %s: nothing to roll back to; use %s --to PORT",
		o.describe(), o.StateDir, o.command("switch")))
}

// lastSwitchTo returns the last attempt to switch to port that started
// anything (not a refusal), or nil.
func lastSwitchTo(hist []Record, port int) *Record {
	for i := len(hist) - 1; i >= 0; i-- {
		if hist[i].To == port && hist[i].Result != "refused" {
			return &hist[i]
		}
	}
	return nil
}

// prepare are the steps that look before anything changes.
func (s *switcher) prepare() []step {
	return []step{
		{name: "read", do: s.read},
		{name: "decide", do: s.decide},
		{name: "preflight", do: s.preflight},
	}
}

// plan are the steps that move the traffic: the router's change between
// the app's own steps. The router's last step is the point of no return.
func (s *switcher) plan() []step {
	var steps []step
	if len(s.o.PreStart) > 0 {
		steps = append(steps, step{name: "pre-start", do: func(ctx context.Context) (string, error) { return s.runHook(ctx, s.o.PreStart) }})
	}
	steps = append(steps,
		step{name: "start", do: s.start, undo: s.stopTarget},
		step{name: "health", do: s.health},
	)
	if len(s.o.Warmup) > 0 {
		steps = append(steps, step{name: "warmup", do: s.warmup})
	}
	steps = append(steps,
		step{name: "rewrite", do: s.rewrite},
		step{name: "listener", do: s.listener},
	)
	steps = append(steps, s.changeSteps(s.change, s.o.Bake == 0)...)
	steps = append(steps, step{name: "drain", do: s.drain})
	if s.o.Bake > 0 {
		// The point of no return moves to the end of the bake.
		steps = append(steps, step{name: "bake", do: s.bake, commit: s.promote == nil})
	}
	if s.promote != nil {
		// After a canary's bake, the new slot alone.
		steps = append(steps, step{name: "listener", do: s.listener})
		steps = append(steps, s.changeSteps(s.promote, true)...)
		steps = append(steps, step{name: "drain", do: s.drain})
	}
	// persist before retire: a retire that fails must not leave the old
	// slot the one that comes back at boot.
	return append(steps,
		step{name: "persist", do: s.persist},
		step{name: "retire", do: s.retire},
	)
}

// changeSteps are the steps of one change of the router's, between two
// steps of swap's own that are not shown. Before it, the nginx lock that
// the switches of other apps share is taken, and for the switch's first
// change the switch is recorded as pending (undone by the router's revert,
// which undoes any later change too). After it, the traffic is on the new
// slot and the lock is let go; with commit the change is the point of no
// return.
func (s *switcher) changeSteps(ch *route.Change, commit bool) []step {
	begin := step{do: s.relock}
	if ch == s.change {
		begin = step{do: s.begin, undo: s.revert}
	}
	steps := []step{begin}
	for _, rs := range ch.Steps {
		steps = append(steps, step{name: rs.Name, do: rs.Do, whole: rs.Whole})
	}
	// As whole as the step before it: Ctrl-C cannot come between the two.
	return append(steps, step{do: s.moved, whole: steps[len(steps)-1].whole, commit: commit})
}

// relock takes the nginx lock again for a later change of the same switch.
func (s *switcher) relock(ctx context.Context) (string, error) {
	unlock, err := lockNginx(ctx, s.env.ProcRoot, s.o.StateDir)
	s.unlock = unlock
	return "", err
}

// moved notes that the proxy took the change, and lets other apps'
// switches at nginx's config again (a revert takes the lock back).
func (s *switcher) moved(context.Context) (string, error) {
	s.trafficMoved = true
	s.unlockNginx()
	return "", nil
}

// planChange computes the router's change (or, with a canary, the two:
// both slots weighted, then the new one alone), so that a config the
// router cannot handle stops the switch before anything starts.
func (s *switcher) planChange(target, from Slot, fromRunning bool) error {
	var err error
	if s.o.Canary == 0 {
		s.change, err = s.router.Plan([]route.Backend{{Addr: target.Addr}}, s.resumed.file())
		return usageErr(err)
	}
	if !slices.Contains(s.listed, from) || !fromRunning {
		return Usage(fmt.Errorf("a canary shares the traffic between the live slot and the new one, and upstream %s has no live slot running; switch with --canary 0 first", s.o.Upstream))
	}
	if s.change, err = s.router.Plan([]route.Backend{{Addr: from.Addr, Weight: 100 - s.o.Canary}, {Addr: target.Addr, Weight: s.o.Canary}}, s.resumed.file()); err != nil {
		return Usage(err)
	}
	s.promote, err = s.router.Plan([]route.Backend{{Addr: target.Addr}}, "")
	return usageErr(err)
}

// usageErr marks a non-nil err as ErrUsage.
func usageErr(err error) error {
	if err != nil {
		return Usage(err)
	}
	return nil
}

func (s *switcher) read(context.Context) (string, error) {
	l, err := s.router.Read()
	if err != nil {
		return "", Usage(err)
	}
	s.listed = s.o.byAddr(l.Addrs)
	return fmt.Sprintf("upstream %s at %s:%d lists %v", s.o.Upstream, l.File, l.Line, ports(s.listed)), nil
}

// decide picks the target: --to, or the slot that is not live. When both
// slots are listed (the starting layout), the slot that is not running is
// the target.
func (s *switcher) decide(ctx context.Context) (string, error) {
	o := s.o
	state, boot := map[int]string{}, map[int]bool{}
	for _, sl := range o.Slots() {
		u, err := getUnit(ctx, s.env.Systemd, sl.Unit)
		if err != nil {
			return "", Usage(fmt.Errorf("%w; check that systemd is reachable over D-Bus (--user for a user manager)", err))
		}
		file, _ := unitFile(ctx, s.env.Systemd, sl.Unit) // a unit that is not installed fails in preflight
		state[sl.Port], boot[sl.Port] = u.Active, enabled(file)
	}
	to := s.req.To
	resumed, err := readPending(o.StateDir, o.app())
	if err != nil {
		return "", Usage(err)
	}
	if s.resumed = resumed; resumed != nil {
		// An earlier switch stopped half-way: nginx may still route to
		// either slot, so neither is restarted, and by default the switch
		// is finished in the direction it was going.
		s.req.Reuse = true
		if to == 0 {
			to = resumed.To
		}
	}
	if to == 0 {
		a, b := o.Slots()[0], o.Slots()[1]
		switch {
		case len(s.listed) == 1:
			to = o.other(s.listed[0]).Port
		case running(state[a.Port]) != running(state[b.Port]):
			to = a.Port
			if running(state[a.Port]) {
				to = b.Port
			}
		default:
			return "", Usage(fmt.Errorf("upstream %s lists both slots and neither or both are running; pass --to %d or --to %d", o.Upstream, a.Port, b.Port))
		}
	}
	target, err := o.Slot(to)
	if err != nil {
		return "", err
	}
	from := o.other(target)
	s.res.To, s.targetIn = target, slices.Contains(s.listed, target)
	if slices.Contains(s.listed, from) || running(state[from.Port]) {
		s.res.From = from
	}
	s.persisted = boot[target.Port] && !boot[from.Port]
	if slices.Equal(s.listed, []Slot{target}) && running(state[target.Port]) && !running(state[from.Port]) {
		s.res.Unchanged = true
		return fmt.Sprintf("slot %d is already live and slot %d is stopped: nothing to do", target.Port, from.Port), nil
	}
	if resumed != nil && resumed.BakeUntil != "" && o.Bake == 0 {
		// It went live untested: finishing it without a bake would retire
		// the slot that still holds the good build.
		return "", Usage(fmt.Errorf("the switch %d -> %d that did not finish was baking slot %d: run %s --to %d --bake D to bake it again, or --to %d to go back",
			resumed.From, resumed.To, resumed.To, o.command("switch"), resumed.To, resumed.From))
	}
	// The change is computed now so that a config the router cannot handle
	// stops the switch before anything starts.
	if err := s.planChange(target, from, running(state[from.Port])); err != nil {
		return "", err
	}
	if resumed != nil {
		return fmt.Sprintf("%s -> %d (an earlier switch %d -> %d did not finish, since %s)", portOrNone(s.res.From), target.Port, resumed.From, resumed.To, resumed.Time), nil
	}
	return fmt.Sprintf("%s -> %d", portOrNone(s.res.From), target.Port), nil
}

// preflight refuses to touch a stopped or broken proxy, and a slot unit
// systemd does not know. It never starts or restarts nginx.
func (s *switcher) preflight(ctx context.Context) (string, error) {
	var passed []string
	for _, c := range s.router.Checks(ctx) {
		if c.Err != nil {
			return "", Usage(c.Err)
		}
		passed = append(passed, c.Name)
	}
	if err := slotInstalled(ctx, s.o, s.env, s.res.To); err != nil {
		return "", Usage(err)
	}
	if err := notTaken(ctx, s.env, s.res.To); err != nil {
		return "", Usage(err)
	}
	if err := s.o.checkHooks(); err != nil {
		return "", err
	}
	return strings.Join(passed, ", ") + ": ok", nil
}

// start brings the target's unit up. A target that is already running and
// listed may be carrying traffic: it is left as it is. One running but not
// listed holds an old build: it is restarted to pick up the new one.
func (s *switcher) start(ctx context.Context) (string, error) {
	sd, unit := s.env.Systemd, s.res.To.Unit
	u, err := getUnit(ctx, sd, unit)
	if err != nil {
		return "", err
	}
	how, call := "started", sd.StartUnitContext
	switch {
	case running(u.Active) && (s.targetIn || s.req.Reuse):
		return unit + " already running", nil
	case running(u.Active):
		how, call = "restarted", sd.RestartUnitContext
	}
	s.started = true
	err = job(ctx, call, unit, s.o.journalctl())
	if u, uerr := getUnit(ctx, sd, unit); err != nil && uerr == nil && u.Result == "start-limit-hit" {
		// Rapid switches reach systemd's start limit of the unit: clear
		// it once, rather than fail the switch.
		if err = sd.ResetFailedUnitContext(ctx, unit); err == nil {
			how += " after clearing systemd's start limit (reset-failed)"
			err = job(ctx, call, unit, s.o.journalctl())
		}
	}
	if err != nil {
		// An app that exits at once fails its start job on a busy machine
		// and passes it on an idle one, for health to find it gone: both
		// say that the app exited.
		var failed *jobError
		if errors.As(err, &failed) {
			if u, uerr := getUnit(ctx, sd, unit); uerr == nil {
				if exited := appExited(unit, u, s.o.journalctl()); exited != nil {
					return "", fmt.Errorf("start %s: job %s: %w", unit, failed.result, exited)
				}
			}
		}
		return "", fmt.Errorf("start %s: %w", unit, err)
	}
	return unit + " " + how, nil
}

// stopTarget undoes start: the target stops if this switch started it.
func (s *switcher) stopTarget(ctx context.Context) error {
	if !s.started {
		return nil
	}
	unit := s.res.To.Unit
	if err := job(ctx, s.env.Systemd.StopUnitContext, unit, s.o.journalctl()); err != nil {
		return fmt.Errorf("stop %s: %w; traffic stays where it was, stop it by hand: %s stop %s", unit, err, s.o.Systemctl(), unit)
	}
	// An app that exited at once, stopped as systemd was about to restart
	// it, stays failed after the stop: leave the unit inactive, as the
	// switch found it.
	if u, err := getUnit(ctx, s.env.Systemd, unit); err == nil && u.Active == "failed" {
		if err := s.env.Systemd.ResetFailedUnitContext(ctx, unit); err != nil {
			s.env.report(Event{Step: "rollback", Warn: true, Detail: fmt.Sprintf("%s stays failed: %v; %s reset-failed %s clears it", unit, err, s.o.Systemctl(), unit)})
		}
	}
	return nil
}

func (s *switcher) health(ctx context.Context) (string, error) {
	o, target := s.o, s.res.To
	ctx, cancel := context.WithTimeoutCause(ctx, o.HealthTimeout, fmt.Errorf("health-timeout %s", o.HealthTimeout))
	defer cancel()
	h := newHealthCheck(o, target, s.env.HTTP)
	h.own = func(ctx context.Context) error {
		_, err := proveOwner(ctx, s.env, target)
		return err
	}
	alive := func() error {
		u, err := getUnit(ctx, s.env.Systemd, target.Unit)
		if err != nil {
			return nil
		}
		return appExited(target.Unit, u, o.journalctl())
	}
	n, err := h.wait(ctx, alive, func(n int, last string) {
		s.env.report(Event{Step: "health", Poll: n, Detail: last})
	})
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("%s healthy after %d polls", h.url, n), nil
}

// listener proves, right before traffic moves, that only the target's
// unit listens on its address: a process that bound it since the health
// step would get the traffic.
func (s *switcher) listener(ctx context.Context) (string, error) {
	detail, err := proveOwner(ctx, s.env, s.res.To)
	if errors.Is(err, errSquatted) {
		err = fmt.Errorf("%w: stop that process and switch again", err)
	}
	return detail, err
}

// rewrite shows the change computed in decide.
func (s *switcher) rewrite(context.Context) (string, error) {
	s.res.Diff = s.change.Diff
	if !s.change.Changed {
		return fmt.Sprintf("%s already sends the traffic to slot %d only", s.change.File, s.res.To.Port), nil
	}
	s.env.report(Event{Step: "diff", Diff: s.res.Diff})
	return s.change.File, nil
}

// begin comes before the router's first change. It takes the nginx lock
// that switches of other upstreams share (held until the change is done or
// undone), then records the switch in the state dir, so that a crash from
// there on is resumed the right way by the next run.
func (s *switcher) begin(ctx context.Context) (string, error) {
	unlock, err := lockNginx(ctx, s.env.ProcRoot, s.o.StateDir)
	if err != nil {
		return "", err
	}
	s.unlock = unlock
	if s.o.Bake > 0 {
		// A bake watches from here, before the new slot's first request,
		// not from the bake's first look.
		s.watch = s.router.Watch(ctx, s.res.To.Addr)
	}
	if s.resumed != nil { // the earlier switch's record says it best
		return "", nil
	}
	if err := writePending(s.o.StateDir, s.o.app(), Pending{
		From: s.res.From.Port, To: s.res.To.Port, File: s.change.File, Time: s.env.Now().UTC().Format(time.RFC3339),
	}); err != nil {
		return "", fmt.Errorf("record the pending switch in %s: %w", s.o.StateDir, err)
	}
	return "", nil
}

// unlockNginx lets other switches at nginx's config again.
func (s *switcher) unlockNginx() {
	if s.unlock != nil {
		s.unlock()
		s.unlock = nil
	}
}

// revert undoes the router's steps, saying how to finish when it cannot.
func (s *switcher) revert(ctx context.Context) error {
	if s.unlock == nil {
		unlock, err := lockNginx(ctx, s.env.ProcRoot, s.o.StateDir)
		if err != nil {
			return fmt.Errorf("%w; %s: run %s --to %d to finish, or --to %d to go back", err, s.listing(), s.o.command("switch"), s.res.To.Port, s.o.other(s.res.To).Port)
		}
		s.unlock = unlock
	}
	d, err := s.router.Revert(ctx)
	if err != nil {
		return fmt.Errorf("%w; %s: run %s --to %d to finish", err, s.listing(), s.o.command("switch"), s.res.To.Port)
	}
	if d.Left > 0 {
		s.env.report(Event{Step: "revert", Warn: true, Detail: d.Warn})
	}
	return nil
}

// listing says which slots nginx lists now, read afresh by a router of its
// own: a switch that cannot restore must not guess where the traffic is.
func (s *switcher) listing() string {
	l, err := s.env.Router(s.o).Read()
	if err != nil {
		return fmt.Sprintf("which slot nginx lists is unknown (%v)", err)
	}
	return fmt.Sprintf("upstream %s lists %v now", s.o.Upstream, ports(s.o.byAddr(l.Addrs)))
}

// drain waits until the proxy holds nothing for the old slot; a timeout
// only warns.
func (s *switcher) drain(ctx context.Context) (string, error) {
	d := s.router.Drain(ctx)
	s.res.Draining = d.Left
	if d.Left > 0 {
		s.env.report(Event{Step: "drain", Warn: true, Detail: d.Warn})
	}
	return d.Detail, nil
}

// retire stops the old slot now that nothing proxies to it.
func (s *switcher) retire(ctx context.Context) (string, error) {
	unit := s.o.other(s.res.To).Unit
	if s.req.KeepOld {
		return unit + " kept running (--keep-old)", nil
	}
	ctx, cancel := context.WithTimeout(ctx, unitJobTimeout)
	defer cancel()
	if err := job(ctx, s.env.Systemd.StopUnitContext, unit, s.o.journalctl()); err != nil {
		return "", fmt.Errorf("%w: traffic is on slot %d, but %s did not stop: %w; stop it with %s stop %s",
			ErrStuck, s.res.To.Port, unit, err, s.o.Systemctl(), unit)
	}
	return unit + " stopped", nil
}

// errBake marks a switch whose bake found the new slot failing: it was
// rolled back, traffic is on the old slot again.
var errBake = errors.New("rolled back: the new slot failed its bake")

// bake watches the new slot for the bake time while the old one keeps
// running: its health every interval, its unit, and the requests to it that
// nginx logged as failed. The first failure, at any moment, fails the step,
// which unwinds the switch: traffic back to the old slot (it never
// stopped: one rewrite and reload), the new slot stopped.
func (s *switcher) bake(ctx context.Context) (string, error) {
	o, target := s.o, s.res.To
	until := s.env.Now().Add(o.Bake)
	if err := s.markBake(until); err != nil {
		return "", err
	}
	h := newHealthCheck(o, target, s.env.HTTP)
	deadline := time.NewTimer(o.Bake)
	defer deadline.Stop()
	tick := time.NewTicker(o.HealthInterval)
	defer tick.Stop()
	fail := func(format string, a ...any) (string, error) {
		return "", fmt.Errorf("%w: %s", errBake, fmt.Sprintf(format, a...))
	}
	for n := 1; ; n++ {
		select {
		case <-ctx.Done():
			return fail("interrupted (%v) during the bake", context.Cause(ctx))
		case <-deadline.C:
			return fmt.Sprintf("%s healthy through %s (%d checks)", target.Unit, o.Bake, n-1), nil
		case <-tick.C:
		}
		if ok, answer := h.probe(ctx); !ok && ctx.Err() == nil {
			return fail("%s answered %s during the bake", h.url, answer)
		}
		if u, err := getUnit(ctx, s.env.Systemd, target.Unit); err == nil && (!running(u.Active) || u.Sub == "auto-restart") {
			return fail("%s is %s (%s) during the bake; see %s -u %s", target.Unit, u.Active, u.Sub, o.journalctl(), target.Unit)
		}
		if failed, last := s.watch.Failures(); failed > 0 {
			return fail("nginx logged %d failed requests to slot %d during the bake: %s", failed, target.Port, last)
		}
		if total, bad := s.watch.Answers(); total >= minAnswers && float64(bad)*100 > float64(o.BakeMax5xx)*float64(total) {
			return fail("slot %d answered %d of %d requests with 5xx during the bake, over bake-max-5xx %s", target.Port, bad, total, o.BakeMax5xx)
		}
		left := until.Sub(s.env.Now()).Round(time.Second)
		s.env.report(Event{Step: "bake", Poll: n, Detail: fmt.Sprintf("%s left; watching health, unit and failed requests of slot %d", left, target.Port)})
	}
}

// minAnswers is how many answers the 5xx share of a bake needs before it
// counts: two 500s of the first three requests say little.
const minAnswers = 20

// markBake notes in the pending record until when the switch bakes, for
// status.
func (s *switcher) markBake(until time.Time) error {
	p, err := readPending(s.o.StateDir, s.o.app())
	if err != nil || p == nil {
		return err
	}
	p.BakeUntil = until.UTC().Format(time.RFC3339)
	return writePending(s.o.StateDir, s.o.app(), *p)
}

// persist enables the live slot's unit and disables the other, so that a
// reboot brings back the slot nginx lists, and only that one.
func (s *switcher) persist(ctx context.Context) (string, error) {
	to, from := s.res.To, s.o.other(s.res.To)
	sd := s.env.Systemd
	_, _, err := sd.EnableUnitFilesContext(ctx, []string{to.Unit}, false, false)
	if err == nil {
		_, err = sd.DisableUnitFilesContext(ctx, []string{from.Unit}, false)
	}
	if err != nil {
		return "", fmt.Errorf("%w: traffic is on slot %d, but after a reboot it may not be: %w; run %s enable %s && %s disable %s",
			ErrStuck, to.Port, err, s.o.Systemctl(), to.Unit, s.o.Systemctl(), from.Unit)
	}
	return fmt.Sprintf("%s enabled, %s disabled", to.Unit, from.Unit), nil
}

func (s *switcher) record(start time.Time, err error) {
	r := Record{
		Time:     start.UTC().Format(time.RFC3339),
		App:      s.o.app(),
		Upstream: s.o.Upstream,
		From:     s.res.From.port(),
		To:       s.res.To.Port,
		Result:   "switched",
		Steps:    s.steps,
		Login:    s.env.Login,
	}
	switch {
	case s.res.Unchanged:
		r.Result = "unchanged"
	case errors.Is(err, ErrStuck):
		r.Result, r.Error = "stuck", err.Error()
	case errors.Is(err, errBake):
		r.Result, r.Error = "rolled-back", err.Error()
	case errors.Is(err, ErrUsage): // exit 2: nothing was started or changed
		r.Result, r.Error = "refused", err.Error()
	case err != nil:
		r.Result, r.Error = "failed", err.Error()
	}
	if herr := appendHistory(s.o.StateDir, r); herr != nil {
		s.env.report(Event{Step: "record", Warn: true, Detail: herr.Error()})
	}
}

// ports returns the slots' ports, for people.
func ports(slots []Slot) []int {
	var ps []int
	for _, s := range slots {
		ps = append(ps, s.Port)
	}
	return ps
}

// portOrNone names a slot by its port, or "none" for the zero Slot.
func portOrNone(s Slot) string { return Record{From: s.port()}.FromText() }
