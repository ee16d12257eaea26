package swap

import (
	"errors"
	"time"
)

// The outcome classes of a failed switch; ExitCode maps them to the exit
// codes scripts rely on. ErrUsage (exit 2) is in options.go.
var (
	// ErrFailed: the switch failed and was undone; traffic stayed on the
	// old slot and every file is as it was. Exit code 1.
	ErrFailed = errors.New("switch failed, traffic stays on the old slot")
	// ErrStuck: something could not be restored or stopped; the message
	// says what state things are in and what to run. Exit code 3.
	ErrStuck = errors.New("could not finish or restore")
)

// ExitCode maps an error from this package to the process exit code:
// 0 done or nothing to do, 1 failed and undone, 2 bad usage or setup with
// nothing changed, 3 could not restore.
func ExitCode(err error) int {
	switch {
	case err == nil:
		return 0
	case errors.Is(err, ErrStuck):
		return 3
	case errors.Is(err, ErrUsage):
		return 2
	default:
		return 1
	}
}

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
