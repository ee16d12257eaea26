package nginx

import (
	"context"
	"fmt"

	"github.com/coreos/go-systemd/v22/dbus"
)

// Systemd is the part of *dbus.Conn this package uses, with go-systemd's own
// signatures so a *dbus.Conn (system or user manager) fits as it is.
type Systemd interface {
	ReloadUnitContext(ctx context.Context, name string, mode string, ch chan<- string) (int, error)
	GetServicePropertyContext(ctx context.Context, unit string, propertyName string) (*dbus.Property, error)
}

// MainPID returns the PID of the unit's main process, for nginx its master.
// systemd reports 0 when there is none; that is an error wrapping
// ErrNotActive.
func MainPID(ctx context.Context, sd Systemd, unit string) (int, error) {
	prop, err := sd.GetServicePropertyContext(ctx, unit, "MainPID")
	if err != nil {
		return 0, fmt.Errorf("get MainPID of %s: %w", unit, err)
	}
	pid, ok := prop.Value.Value().(uint32)
	if !ok {
		return 0, fmt.Errorf("get MainPID of %s: unexpected value %s", unit, prop.Value)
	}
	if pid == 0 {
		return 0, fmt.Errorf("%s has no main process: %w", unit, ErrNotActive)
	}
	return int(pid), nil
}

// Reload asks systemd to reload the unit (mode "replace") and waits for the
// job's result or ctx. It never restarts: a restart drops every connection
// nginx holds. A result other than "done" is an error wrapping ErrReload.
//
// "done" only means systemd ran ExecReload, that is delivered the signal; a
// master that then rejects the new config keeps its old workers. Confirm
// with Procs.WaitNewGeneration.
//
// When ctx ends first the error wraps ctx.Err(), not ErrReload: the job was
// queued and may still run.
func Reload(ctx context.Context, sd Systemd, unit string) error {
	// Buffered: go-systemd sends the result even if nobody listens any more.
	ch := make(chan string, 1)
	if _, err := sd.ReloadUnitContext(ctx, unit, "replace", ch); err != nil {
		return fmt.Errorf("%w: %s: %w", ErrReload, unit, err)
	}
	select {
	case result := <-ch:
		if result != "done" {
			return fmt.Errorf("%w: %s: job %s", ErrReload, unit, result)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("reload %s: waiting for the job: %w", unit, ctx.Err())
	}
}
