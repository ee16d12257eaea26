package swap

import "errors"

// The outcome classes of a failed switch; ExitCode maps them to the exit
// codes scripts rely on.
var (
	// ErrUsage: bad settings or setup; nothing was changed. Exit code 2.
	ErrUsage = errors.New("bad usage or setup")
	// ErrFailed: the switch failed and was undone; traffic stayed on the
	// old slot and every file is as it was. Exit code 1.
	ErrFailed = errors.New("switch failed, traffic is on the old slot")
	// ErrStuck: something could not be restored or stopped; the message
	// says what state things are in and what to run. Exit code 3.
	ErrStuck = errors.New("could not finish or restore")
)

// Usage marks err as ErrUsage without adding to its message, which already
// says what is wrong and what to do.
func Usage(err error) error { return usageError{err} }

type usageError struct{ err error }

func (u usageError) Error() string   { return u.err.Error() }
func (u usageError) Unwrap() []error { return []error{ErrUsage, u.err} }

// ExitStatus says what one exit code means.
type ExitStatus struct {
	Code    int
	Meaning string
}

// ExitStatuses are the exit codes ExitCode gives, as the man page lists them.
var ExitStatuses = []ExitStatus{
	{0, "Done, or nothing to do."},
	{1, "The switch failed and traffic stayed on the old slot."},
	{2, "Bad usage, config or setup; nothing changed."},
	{3, "Could not restore: the message says what state things are in and what to run."},
}

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
