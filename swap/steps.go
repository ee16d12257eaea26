package swap

import (
	"context"
	"fmt"
	"time"
)

// Event is one line of progress: a finished step, or (Poll > 0) a poll of
// the health step still waiting.
type Event struct {
	Step   string        `json:"step"`
	Detail string        `json:"detail,omitempty"`
	Took   time.Duration `json:"took_ns,omitempty"`
	Diff   string        `json:"diff,omitempty"` // the rewrite step's unified diff
	Poll   int           `json:"poll,omitempty"`
	Warn   bool          `json:"warn,omitempty"`
	Failed bool          `json:"failed,omitempty"`
}

// step is one step of a switch, with the way back from it.
type step struct {
	name string
	do   func(ctx context.Context) (detail string, err error)
	// undo reverses what do did, also when do failed half-way; nil when
	// there is nothing to undo.
	undo func(ctx context.Context) error
	// whole: Ctrl-C does not cut the step short (see route.Step).
	whole bool
	// commit: once the step is done the switch is finished, not undone.
	commit bool
}

// unitJobTimeout bounds a stop job after the point of no return, and each
// undo of a rollback, which run even after Ctrl-C. It is above systemd's default
// TimeoutStopSec (90 s), after which systemd kills the unit itself.
const unitJobTimeout = 120 * time.Second

// check runs steps that look and decide but change nothing: the first
// error ends them, as it is.
func (s *switcher) check(ctx context.Context, steps []step) error {
	for _, st := range steps {
		if err := s.step(st.name, func() (string, error) { return st.do(ctx) }); err != nil {
			return err
		}
	}
	return nil
}

// act runs steps that change things. Until a commit step is done, a
// failure or Ctrl-C unwinds: the undo of every step begun so far runs, the
// last first, and traffic stays where it was. After it, Ctrl-C is ignored
// and a failure is returned as it is.
func (s *switcher) act(ctx context.Context, steps []step) error {
	for i, st := range steps {
		// A run of whole steps is one: Ctrl-C is looked at before it, not
		// between its steps.
		inRun := st.whole && i > 0 && steps[i-1].whole
		if !s.committed && !inRun {
			if err := context.Cause(ctx); err != nil {
				return s.unwind(err)
			}
		}
		sctx := ctx
		if st.whole || s.committed {
			sctx = context.WithoutCancel(ctx)
		}
		if st.undo != nil {
			s.undos = append(s.undos, st.undo)
		}
		if err := s.step(st.name, func() (string, error) { return st.do(sctx) }); err != nil {
			if s.committed {
				return err
			}
			return s.unwind(err)
		}
		if st.commit {
			s.committed = true
			s.unlockNginx()
		}
	}
	return nil
}

// unwind undoes the steps begun, the last first. An undo that fails stops
// it: what comes before it (stopping the new slot) is only safe once it is
// done. Then the switch is stuck, and the error says what state things are
// in and what to run.
func (s *switcher) unwind(cause error) error {
	defer s.unlockNginx()
	for i := len(s.undos) - 1; i >= 0; i-- {
		// Each undo has its own bound: a revert that waits out a long
		// drain-timeout must leave the stop of the new slot its time.
		ctx, cancel := context.WithTimeout(context.Background(), unitJobTimeout)
		err := s.undos[i](ctx)
		cancel()
		if err != nil {
			return fmt.Errorf("%w: %w (after: %w)", ErrStuck, err, cause)
		}
	}
	s.undos = nil
	// This run's own record goes once its change is undone; one left by an
	// earlier, unfinished switch stays until that switch is finished.
	if s.resumed == nil {
		if err := clearPending(s.o.StateDir, s.o.app()); err != nil {
			return fmt.Errorf("%w: %w (after: %w)", ErrStuck, err, cause)
		}
	}
	detail := "traffic stays where it was"
	if s.trafficMoved { // it went to the new slot and came back
		detail = fmt.Sprintf("traffic is back on slot %d", s.o.other(s.res.To).Port)
	}
	s.env.report(Event{Step: "rollback", Detail: detail})
	return fmt.Errorf("%w: %w", ErrFailed, cause)
}

// step runs one step, timing it and reporting it as a line of progress;
// one without a name is swap's own bookkeeping, and is not shown.
func (s *switcher) step(name string, fn func() (string, error)) error {
	if name == "" {
		_, err := fn()
		return err
	}
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
