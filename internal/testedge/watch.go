package testedge

import "time"

// Watch calls look at once and at every tick until it returns true, and
// returns stop, which ends the watch and says when look first returned true
// (zero if never). Polls alone miss a state reached after the last one and
// before the watch is told to stop, so stop looks once more before it
// returns: a state that holds when stop is called is always seen, at the
// latest as of that last look.
func Watch(look func() bool, tick <-chan time.Time, now func() time.Time) (stop func() time.Time) {
	done, seen := make(chan struct{}), make(chan time.Time, 1)
	go func() {
		for {
			if look() {
				seen <- now()
				return
			}
			select {
			case <-done:
				if look() { // the last look
					seen <- now()
					return
				}
				seen <- time.Time{}
				return
			case <-tick:
			}
		}
	}()
	return func() time.Time {
		close(done)
		return <-seen
	}
}
