package swap

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"time"

	"github.com/edgeswitch/edgeswitch/nginx"
	"github.com/edgeswitch/edgeswitch/upstream"
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
	From, To  int  // From is 0 when no slot was live alone
	Unchanged bool // the target was already live and the other slot stopped
	Diff      string
	Draining  int // pre-reload workers still alive when drain-timeout passed
}

// pollInterval is how often nginx's workers are looked at while waiting for
// a reload or a drain: /proc reads are cheap and the drain often ends in
// about 0.1 s.
const pollInterval = 20 * time.Millisecond

// unitJobTimeout bounds a stop job after the point of no return or during a
// rollback, which run even after Ctrl-C. It is above systemd's default
// TimeoutStopSec (90 s), after which systemd kills the unit itself.
const unitJobTimeout = 120 * time.Second

// switcher holds the state of one switch as it moves through the steps.
type switcher struct {
	o   Options
	req Request
	env Env
	res Result

	block    *upstream.Block
	edit     *upstream.Edit
	targetIn bool     // the target was listed before: it may carry traffic, never stop it
	started  bool     // this switch started the target: stop it on failure
	written  bool     // the upstream file holds the new bytes
	resumed  *Pending // the record of an earlier switch that did not finish
	steps    []StepTime
}

// Switch moves traffic to the target slot (see the package doc for the
// steps). On failure before the reload it undoes what it did; errors wrap
// ErrUsage, ErrFailed or ErrStuck (see ExitCode).
func Switch(ctx context.Context, o Options, req Request, env Env) (Result, error) {
	if err := o.Check(); err != nil {
		return Result{}, err
	}
	s := &switcher{o: o, req: req, env: env}
	start := env.Now()
	var release func()
	err := s.step("lock", func() (string, error) {
		var err error
		release, err = lock(o.StateDir, o.Upstream)
		return o.StateDir, err
	})
	if err != nil {
		return s.res, err
	}
	defer release()
	err = s.run(ctx)
	if err == nil && !req.DryRun {
		if cerr := clearPending(o.StateDir, o.Upstream); cerr != nil {
			env.report(Event{Step: "record", Warn: true, Detail: cerr.Error()})
		}
	}
	if !req.DryRun && s.block != nil && s.res.To != 0 {
		s.record(start, err)
	}
	if err == nil && !req.DryRun && !s.res.Unchanged && len(o.PostSwitch) > 0 {
		if perr := s.step("post-switch", func() (string, error) { return s.runHook(ctx, o.PostSwitch) }); perr != nil {
			env.report(Event{Step: "post-switch", Warn: true, Detail: "the switch itself is done"})
		}
	}
	return s.res, err
}

// Rollback switches back to the slot that was live before the last switch
// of the upstream. A slot still running (after --keep-old) is kept as it
// is, so the rollback takes about as long as one reload.
func Rollback(ctx context.Context, o Options, req Request, env Env) (Result, error) {
	hist, err := History(o.StateDir, o.Upstream)
	if err != nil {
		return Result{}, err
	}
	for i := len(hist) - 1; i >= 0; i-- {
		if r := hist[i]; r.Result == "switched" && r.From != 0 {
			req.To, req.Reuse = r.From, true
			return Switch(ctx, o, req, env)
		}
	}
	return Result{}, Usage(fmt.Errorf("no switch of upstream %s in the history in %s: nothing to roll back to; use edgeswitch switch --to PORT",
		o.Upstream, o.StateDir))
}

// step runs one step, timing it and reporting it as a line of progress.
func (s *switcher) step(name string, fn func() (string, error)) error {
	t0 := s.env.Now()
	detail, err := fn()
	took := s.env.Now().Sub(t0)
	s.steps = append(s.steps, StepTime{Step: name, Seconds: took.Seconds()})
	ev := Event{Step: name, Detail: detail, Took: took}
	if err != nil {
		ev.Detail, ev.Failed = err.Error(), true
	}
	s.env.report(ev)
	return err
}

func (s *switcher) run(ctx context.Context) error {
	o := s.o
	if err := s.step("read", s.read); err != nil {
		return err
	}
	if err := s.step("decide", s.decide(ctx)); err != nil || s.res.Unchanged {
		return err
	}
	if err := s.step("preflight", func() (string, error) { return s.preflight(ctx) }); err != nil {
		return err
	}
	if s.req.DryRun {
		return s.step("rewrite", s.rewrite)
	}

	// Until the reload, any failure (Ctrl-C included) is undone.
	if len(o.PreStart) > 0 {
		if err := s.step("pre-start", func() (string, error) { return s.runHook(ctx, o.PreStart) }); err != nil {
			return s.undo(err)
		}
	}
	if err := s.step("start", func() (string, error) { return s.start(ctx) }); err != nil {
		return s.undo(err)
	}
	if err := s.step("health", func() (string, error) { return s.health(ctx) }); err != nil {
		return s.undo(err)
	}
	if err := s.step("rewrite", s.rewrite); err != nil {
		return s.undo(err)
	}
	if err := s.step("validate", func() (string, error) { return s.validate(ctx) }); err != nil {
		return s.undo(err)
	}

	if err := context.Cause(ctx); err != nil {
		return s.undo(err)
	}
	// From the reload on the switch is finished, not undone: Ctrl-C no
	// longer stops it. Each step is bounded by its own timeout instead.
	ctx = context.WithoutCancel(ctx)
	var old nginx.Generation
	var errlog nginx.ErrorLog
	var mark int64
	if err := s.step("reload", func() (string, error) {
		master, err := nginx.MainPID(ctx, s.env.Systemd, o.NginxUnit)
		if err != nil {
			return "", err
		}
		if old, err = s.env.Procs.Snapshot(master); err != nil {
			return "", err
		}
		if len(old.Workers) == 0 {
			return "", fmt.Errorf("%w: nginx master %d shows no workers in /proc (mounted with hidepid?), so a reload could not be confirmed; run edgeswitch as root", nginx.ErrNotActive, master)
		}
		errlog = nginx.ErrorLog{Path: nginx.ErrorLogPath(ctx, s.env.Run, o.NginxBin, o.NginxConf)}
		mark = errlog.Mark()
		rctx, cancel := context.WithTimeout(ctx, o.ReloadTimeout)
		defer cancel()
		return fmt.Sprintf("%s (master %d, %d workers)", o.NginxUnit, master, len(old.Workers)), nginx.Reload(rctx, s.env.Systemd, o.NginxUnit)
	}); err != nil {
		return s.undoReload(ctx, old, err)
	}
	if err := s.step("confirm", func() (string, error) {
		gen, err := s.env.Procs.WaitNewGeneration(ctx, old, o.ReloadTimeout, pollInterval)
		if errors.Is(err, nginx.ErrRejected) {
			if line := errlog.LastEmerg(mark); line != "" {
				err = fmt.Errorf("%w: %s", err, line)
			}
			return "", fmt.Errorf("%w (see %s)", err, errlog.Path)
		}
		return fmt.Sprintf("%d new workers", len(gen.Workers)), err
	}); err != nil {
		return s.undoReload(ctx, old, err)
	}
	s.step("drain", func() (string, error) {
		left := s.env.Procs.WaitGone(ctx, old.Workers, o.DrainTimeout, pollInterval)
		s.res.Draining = len(left)
		if len(left) > 0 {
			s.env.report(Event{Step: "drain", Warn: true, Detail: fmt.Sprintf(
				"%d old nginx workers still running after %s; they may still proxy to slot %d", len(left), o.DrainTimeout, s.res.From)})
		}
		return fmt.Sprintf("%d old workers gone", len(old.Workers)-len(left)), nil
	})
	return s.step("retire", func() (string, error) { return s.retire(ctx) })
}

func (s *switcher) read() (string, error) {
	b, err := upstream.Find(s.o.NginxConf, s.o.Upstream, s.o.Slots())
	if err != nil {
		return "", Usage(err)
	}
	s.block = b
	return fmt.Sprintf("upstream %s at %s:%d lists %v", b.Name, b.File, b.Line, b.Listed()), nil
}

// decide picks the target: --to, or the slot that is not live. When both
// slots are listed (the starting layout), the slot that is not running is
// the target.
func (s *switcher) decide(ctx context.Context) func() (string, error) {
	return func() (string, error) {
		o, listed := s.o, s.block.Listed()
		state := map[int]string{}
		for _, p := range o.Ports {
			u, err := getUnit(ctx, s.env.Systemd, o.SlotUnit(p))
			if err != nil {
				return "", Usage(fmt.Errorf("%w; check that systemd is reachable over D-Bus (--user for a user manager)", err))
			}
			state[p] = u.Active
		}
		to := s.req.To
		resumed, err := readPending(o.StateDir, o.Upstream)
		if err != nil {
			return "", Usage(err)
		}
		if s.resumed = resumed; resumed != nil {
			// An earlier switch stopped half-way: nginx may still route to
			// either slot, so neither is restarted, and by default the
			// switch is finished in the direction it was going.
			s.req.Reuse = true
			if to == 0 {
				to = resumed.To
			}
		}
		if to == 0 {
			live, ok := s.block.Live()
			switch {
			case ok:
				to = o.other(live)
			case running(state[o.Ports[0]]) != running(state[o.Ports[1]]):
				to = o.Ports[0]
				if running(state[o.Ports[0]]) {
					to = o.Ports[1]
				}
			default:
				return "", Usage(fmt.Errorf("upstream %s lists both slots and neither or both are running; pass --to %d or --to %d", o.Upstream, o.Ports[0], o.Ports[1]))
			}
		}
		if !o.Slots().Has(to) {
			return "", Usage(fmt.Errorf("--to %d is not a slot; pass --to %d or --to %d", to, o.Ports[0], o.Ports[1]))
		}
		from := o.other(to)
		s.res.To, s.targetIn = to, slices.Contains(listed, to)
		if slices.Contains(listed, from) || running(state[from]) {
			s.res.From = from
		}
		// The edit is computed now so that a config it cannot handle stops
		// the switch before anything starts.
		e, err := s.block.To(to, o.Slots())
		if err != nil {
			return "", Usage(err)
		}
		s.edit = e
		if slices.Equal(listed, []int{to}) && running(state[to]) && !running(state[from]) {
			s.res.Unchanged = true
			return fmt.Sprintf("slot %d is already live and slot %d is stopped: nothing to do", to, from), nil
		}
		if resumed != nil {
			return fmt.Sprintf("%d -> %d (an earlier switch %d -> %d did not finish, since %s)", from, to, resumed.From, resumed.To, resumed.Time), nil
		}
		return fmt.Sprintf("%d -> %d", from, to), nil
	}
}

// preflight refuses to touch a stopped or broken nginx, and a slot unit
// systemd does not know. It never starts or restarts nginx.
func (s *switcher) preflight(ctx context.Context) (string, error) {
	for _, check := range []func() error{
		func() error { return nginxActive(ctx, s.o, s.env) },
		func() error { return slotLoaded(ctx, s.o, s.env, s.res.To) },
		func() error { return nginxTest(ctx, s.o, s.env) },
	} {
		if err := check(); err != nil {
			return "", Usage(err)
		}
	}
	return fmt.Sprintf("%s active, nginx -t ok", s.o.NginxUnit), nil
}

// start brings the target's unit up. A target that is already running and
// listed may be carrying traffic: it is left as it is. One running but not
// listed holds an old build: it is restarted to pick up the new one.
func (s *switcher) start(ctx context.Context) (string, error) {
	sd, unit := s.env.Systemd, s.o.SlotUnit(s.res.To)
	u, err := getUnit(ctx, sd, unit)
	if err != nil {
		return "", err
	}
	active := u.Active
	how, call := "started", sd.StartUnitContext
	switch {
	case running(active) && (s.targetIn || s.req.Reuse):
		return unit + " already running", nil
	case running(active):
		how, call = "restarted", sd.RestartUnitContext
	}
	s.started = true
	if err := job(ctx, call, unit, s.o.journalctl()); err != nil {
		return "", fmt.Errorf("start %s: %w", unit, err)
	}
	return unit + " " + how, nil
}

func (s *switcher) health(ctx context.Context) (string, error) {
	o := s.o
	unit := o.SlotUnit(s.res.To)
	ctx, cancel := context.WithTimeoutCause(ctx, o.HealthTimeout, fmt.Errorf("health-timeout %s", o.HealthTimeout))
	defer cancel()
	h := newHealthCheck(o, s.res.To, s.env.HTTP)
	alive := func() error {
		u, err := getUnit(ctx, s.env.Systemd, unit)
		if err == nil && (!running(u.Active) || u.Sub == "auto-restart") {
			return fmt.Errorf("%s is %s (%s): the app exited; see %s -u %s", unit, u.Active, u.Sub, o.journalctl(), unit)
		}
		return nil
	}
	n, err := h.wait(ctx, alive, func(n int, last string) {
		s.env.report(Event{Step: "health", Poll: n, Detail: last})
	})
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("%s healthy after %d polls", h.url, n), nil
}

// rewrite shows the edit computed in decide.
func (s *switcher) rewrite() (string, error) {
	s.res.Diff = s.edit.Diff()
	if !s.edit.Changed() {
		return fmt.Sprintf("%s already lists only slot %d", s.edit.File, s.res.To), nil
	}
	s.env.report(Event{Step: "diff", Diff: s.res.Diff})
	return s.edit.File, nil
}

func (s *switcher) validate(ctx context.Context) (string, error) {
	if !s.edit.Changed() {
		return "unchanged", nil
	}
	// Someone may have edited the file while the slot started: never write
	// over their change, nor restore stale bytes later.
	if now, err := os.ReadFile(s.edit.File); err != nil || !bytes.Equal(now, s.edit.Old) {
		return "", fmt.Errorf("%s changed while the new slot started (%v); run the switch again", s.edit.File, err)
	}
	// The record goes first, so that a crash from here on is resumed the
	// right way by the next run.
	if err := writePending(s.o.StateDir, s.o.Upstream, Pending{
		From: s.res.From, To: s.res.To, File: s.edit.File, Time: s.env.Now().UTC().Format(time.RFC3339),
	}); err != nil {
		return "", fmt.Errorf("record the pending switch in %s: %w", s.o.StateDir, err)
	}
	// Set before the write: an error after the rename (fsync of the
	// directory) still leaves the new bytes in place, and restoring the
	// original twice is harmless.
	s.written = true
	if err := nginx.WriteFileAtomic(s.edit.File, s.edit.New); err != nil {
		return "", err
	}
	if err := nginx.Test(ctx, s.env.Run, s.o.NginxBin, s.o.NginxConf); err != nil {
		return "", err
	}
	return "nginx -t ok", nil
}

// undo rolls back a switch that failed before the reload: the original
// bytes go back, and the target is stopped if this switch started it.
func (s *switcher) undo(cause error) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(context.Background()), unitJobTimeout)
	defer cancel()
	var stuck []error
	if s.written {
		err := nginx.WriteFileAtomic(s.edit.File, s.edit.Old)
		if err != nil {
			// A write that failed before its rename (read-only or full file
			// system) never replaced the file: nothing to restore.
			if now, rerr := os.ReadFile(s.edit.File); rerr == nil && bytes.Equal(now, s.edit.Old) {
				err = nil
			}
		}
		if err != nil {
			stuck = append(stuck, fmt.Errorf("restore %s: %w; nginx still runs the old config, but the file lists slot %d: run edgeswitch switch --to %d to finish, or restore it by hand",
				s.edit.File, err, s.res.To, s.res.To))
		} else {
			s.written = false
		}
	}
	if s.started && len(stuck) == 0 {
		unit := s.o.SlotUnit(s.res.To)
		if err := job(ctx, s.env.Systemd.StopUnitContext, unit, s.o.journalctl()); err != nil {
			stuck = append(stuck, fmt.Errorf("stop %s: %w; traffic stays where it was, stop it by hand: %s stop %s", unit, err, s.o.systemctl(), unit))
		}
	}
	// This run's own record goes once its file is restored; one left by an
	// earlier, unfinished switch stays until that switch is finished.
	if len(stuck) == 0 && s.resumed == nil {
		if err := clearPending(s.o.StateDir, s.o.Upstream); err != nil {
			stuck = append(stuck, err)
		}
	}
	s.env.report(Event{Step: "rollback", Detail: "traffic stays where it was"})
	if len(stuck) > 0 {
		return fmt.Errorf("%w: %w (after: %w)", ErrStuck, errors.Join(stuck...), cause)
	}
	return fmt.Errorf("%w: %w", ErrFailed, cause)
}

// undoReload rolls back after a failed reload or a rejected config. If
// nginx did take the new config after all (a new generation appeared), it
// is reloaded again on the restored file before the target is stopped, so
// nginx never points at a stopped slot.
func (s *switcher) undoReload(ctx context.Context, old nginx.Generation, cause error) error {
	if old.Master == 0 || !s.written {
		return s.undo(cause)
	}
	now, err := s.env.Procs.Snapshot(old.Master)
	if err == nil && !hasNew(old, now) {
		return s.undo(cause)
	}
	if err := nginx.WriteFileAtomic(s.edit.File, s.edit.Old); err != nil {
		return fmt.Errorf("%w: nginx may be running the new config and %s could not be restored: %w; run edgeswitch switch --to %d to finish",
			ErrStuck, s.edit.File, err, s.res.To)
	}
	s.written = false
	if err := nginx.Reload(ctx, s.env.Systemd, s.o.NginxUnit); err != nil {
		return fmt.Errorf("%w: nginx may be running the new config and reloading it back failed: %w; the target slot is left running: run edgeswitch switch --to %d to finish",
			ErrStuck, err, s.res.To)
	}
	return s.undo(cause)
}

func hasNew(old, now nginx.Generation) bool {
	for _, w := range now.Workers {
		if !slices.Contains(old.Workers, w) {
			return true
		}
	}
	return false
}

// retire stops the old slot now that no nginx worker proxies to it.
func (s *switcher) retire(ctx context.Context) (string, error) {
	from := s.o.other(s.res.To)
	unit := s.o.SlotUnit(from)
	if s.req.KeepOld {
		return unit + " kept running (--keep-old)", nil
	}
	ctx, cancel := context.WithTimeout(ctx, unitJobTimeout)
	defer cancel()
	if err := job(ctx, s.env.Systemd.StopUnitContext, unit, s.o.journalctl()); err != nil {
		return "", fmt.Errorf("%w: traffic is on slot %d, but %s did not stop: %w; stop it with %s stop %s",
			ErrStuck, s.res.To, unit, err, s.o.systemctl(), unit)
	}
	return unit + " stopped", nil
}

func (s *switcher) record(start time.Time, err error) {
	r := Record{
		Time:     start.UTC().Format(time.RFC3339),
		Upstream: s.o.Upstream,
		From:     s.res.From,
		To:       s.res.To,
		Result:   "switched",
		Steps:    s.steps,
		User:     s.env.User,
	}
	switch {
	case s.res.Unchanged:
		r.Result = "unchanged"
	case errors.Is(err, ErrStuck):
		r.Result, r.Error = "stuck", err.Error()
	case err != nil:
		r.Result, r.Error = "failed", err.Error()
	}
	if herr := appendHistory(s.o.StateDir, r); herr != nil {
		s.env.report(Event{Step: "record", Warn: true, Detail: herr.Error()})
	}
}
