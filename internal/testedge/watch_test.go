package testedge

import (
	"sync/atomic"
	"testing"
	"time"
)

// fakeClock is a clock whose time moves only when the test says.
type fakeClock struct{ t atomic.Int64 }

func (c *fakeClock) now() time.Time               { return time.Unix(0, c.t.Load()) }
func (c *fakeClock) set(d time.Duration)          { c.t.Store(int64(d)) }
func (c *fakeClock) at(d time.Duration) time.Time { return time.Unix(0, int64(d)) }

func TestWatch(t *testing.T) {
	t.Run("a state seen at a tick is dated by that look", func(t *testing.T) {
		var clock fakeClock
		var state atomic.Bool
		looked := make(chan struct{}, 10)
		look := func() bool { looked <- struct{}{}; return state.Load() }
		tick := make(chan time.Time)
		stop := Watch(look, tick, clock.now)
		<-looked // the first look, at once
		clock.set(20 * time.Millisecond)
		state.Store(true)
		tick <- time.Time{}
		<-looked
		clock.set(time.Second)
		if got, want := stop(), clock.at(20*time.Millisecond); !got.Equal(want) {
			t.Errorf("stop() = %v, want the time of the look that saw it, %v", got, want)
		}
	})
	t.Run("a state reached after the last tick is seen by stop's last look", func(t *testing.T) {
		var clock fakeClock
		var state atomic.Bool
		looked := make(chan struct{}, 10)
		look := func() bool { looked <- struct{}{}; return state.Load() }
		stop := Watch(look, make(chan time.Time), clock.now)
		<-looked
		// The state changes between two polls and the watch is told to
		// stop before the next tick comes.
		clock.set(50 * time.Millisecond)
		state.Store(true)
		if got, want := stop(), clock.at(50*time.Millisecond); !got.Equal(want) {
			t.Errorf("stop() = %v, want the last look's time %v: a change between two polls was missed", got, want)
		}
	})
	t.Run("a state never reached gives the zero time", func(t *testing.T) {
		var clock fakeClock
		tick := make(chan time.Time)
		stop := Watch(func() bool { return false }, tick, clock.now)
		tick <- time.Time{}
		tick <- time.Time{}
		if got := stop(); !got.IsZero() {
			t.Errorf("stop() = %v, want the zero time", got)
		}
	})
}
