package swap

import (
	"context"
	"fmt"
	"time"
)

// job runs one systemd job call (start, stop, restart) and waits for its
// result. Anything but "done" is a failure.
func job(ctx context.Context, call func(context.Context, string, string, chan<- string) (int, error), unit, journalctl string) error {
	ch := make(chan string, 1) // buffered: go-systemd sends even if nobody listens any more
	if _, err := call(ctx, unit, "replace", ch); err != nil {
		return err
	}
	select {
	case r := <-ch:
		if r != "done" {
			return &jobError{r, unit, journalctl}
		}
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// jobError is a unit job that ended other than "done".
type jobError struct{ result, unit, journalctl string }

func (e *jobError) Error() string {
	return fmt.Sprintf("job %s; see %s -u %s", e.result, e.journalctl, e.unit)
}

// appExited says that unit's app is gone when u shows it: not running, or
// waiting to be restarted; nil while it runs.
func appExited(unit string, u unitStatus, journalctl string) error {
	if running(u.Active) && u.Sub != "auto-restart" {
		return nil
	}
	return fmt.Errorf("%s is %s (%s): the app exited; see %s -u %s", unit, u.Active, u.Sub, journalctl, unit)
}

// unitStatus is what systemd says of a unit.
type unitStatus struct {
	Active string    // ActiveState: "active", "activating", "inactive", "failed", ...
	Sub    string    // SubState: "running", "auto-restart", "dead", ...
	Load   string    // LoadState: "loaded", "not-found", ...
	Result string    // how it last ended: "success", "exit-code", "start-limit-hit", ...
	Since  time.Time // when the unit last changed state
}

func getUnit(ctx context.Context, sd Systemd, unit string) (unitStatus, error) {
	props, err := sd.GetUnitPropertiesContext(ctx, unit)
	if err != nil {
		return unitStatus{}, fmt.Errorf("state of %s: %w", unit, err)
	}
	u := unitStatus{}
	u.Active, _ = props["ActiveState"].(string)
	u.Sub, _ = props["SubState"].(string)
	u.Load, _ = props["LoadState"].(string)
	u.Result, _ = props["Result"].(string)
	if usec, ok := props["StateChangeTimestamp"].(uint64); ok && usec > 0 {
		u.Since = time.UnixMicro(int64(usec))
	}
	return u, nil
}

// unitFile returns the unit file's state: "enabled", "disabled", "static"
// (no [Install] section), ...
func unitFile(ctx context.Context, sd Systemd, unit string) (string, error) {
	state, err := sd.GetUnitFileStateContext(ctx, unit)
	if err != nil {
		return "", fmt.Errorf("unit file state of %s: %w", unit, err)
	}
	return state, nil
}

// enabled reports whether a unit file state starts the unit at boot.
func enabled(fileState string) bool { return fileState == "enabled" || fileState == "enabled-runtime" }

// running reports whether a unit's process is up or coming up.
func running(active string) bool {
	return active == "active" || active == "activating" || active == "reloading"
}
