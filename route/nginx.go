package route

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/edgeswitch/edgeswitch/nginx"
)

// Nginx is the nginx a router acts on: its config and binary for nginx -t,
// its unit over systemd (reloaded, never restarted), its workers in /proc.
// Both routers use it, the socket router also through the reload router
// that converts its block: what is looked up once (the error log, who the
// workers run as) is then looked up once per switch.
type Nginx struct {
	NginxConf     string // main config; the block is in it or its includes
	NginxBin      string // for nginx -t
	NginxUnit     string // reloaded, never restarted
	ReloadTimeout time.Duration
	DrainTimeout  time.Duration
	Systemctl     string // "systemctl" or "systemctl --user", for hints

	Systemd Systemd // nil when D-Bus cannot be reached (check reports it)
	Run     nginx.Runner
	Procs   nginx.Procs

	errlog  *nginx.ErrorLog // once looked up
	workers *creds          // who the workers run as, once looked up
}

// testCheck is the check that nginx -t passes on the config as it is.
func (n *Nginx) testCheck(ctx context.Context) Check {
	test := Check{Name: "nginx -t", OK: n.NginxConf + " ok", Err: nginx.Test(ctx, n.Run, n.NginxBin, n.NginxConf)}
	if errors.Is(test.Err, nginx.ErrInvalid) {
		test.Err = fmt.Errorf("%w; fix the config first, edgeswitch changes nothing while nginx -t fails", test.Err)
	}
	return test
}

// activeCheck is the check that nginx's unit is active.
func (n *Nginx) activeCheck(ctx context.Context) Check {
	return Check{Name: n.NginxUnit + " active", OK: "active", Err: n.active(ctx)}
}

// active returns nil once nginx's unit is active. Another app's switch
// may be reloading nginx at this very moment: a reload is nginx at work,
// not a fault, so the check waits it out, bounded by reload-timeout.
func (n *Nginx) active(ctx context.Context) error {
	if n.Systemd == nil {
		return errors.New("D-Bus not reachable")
	}
	deadline := time.Now().Add(n.ReloadTimeout)
	for {
		state, err := n.state(ctx)
		if err != nil {
			return err
		}
		if state == "active" {
			return nil
		}
		if state != "reloading" || !time.Now().Before(deadline) {
			return n.notActive(state)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s to finish reloading: %w", n.NginxUnit, ctx.Err())
		case <-time.After(pollInterval):
		}
	}
}

// state is the ActiveState of nginx's unit.
func (n *Nginx) state(ctx context.Context) (string, error) {
	props, err := n.Systemd.GetUnitPropertiesContext(ctx, n.NginxUnit)
	if err != nil {
		return "", fmt.Errorf("state of %s: %w", n.NginxUnit, err)
	}
	state, _ := props["ActiveState"].(string)
	return state, nil
}

// notActive says what nginx's unit is doing instead of running, and what
// to do about it; edgeswitch never starts nginx itself.
func (n *Nginx) notActive(state string) error {
	status := n.Systemctl + " status " + n.NginxUnit
	switch state {
	case "reloading":
		return fmt.Errorf("%s is still reloading after %s (reload-timeout); see %s, and switch once it says active", n.NginxUnit, n.ReloadTimeout, status)
	case "activating":
		return fmt.Errorf("%s is starting; switch once %s says active", n.NginxUnit, status)
	case "deactivating":
		return fmt.Errorf("%s is stopping; edgeswitch never starts nginx: once it has stopped, start it (%s start %s), then switch", n.NginxUnit, n.Systemctl, n.NginxUnit)
	}
	return fmt.Errorf("%s is %s; edgeswitch never starts nginx: start it (%s start %s), then switch", n.NginxUnit, state, n.Systemctl, n.NginxUnit)
}

// errorLog is nginx's error log, looked up the first time it is needed
// (nginx -T reads the whole config).
func (n *Nginx) errorLog(ctx context.Context) nginx.ErrorLog {
	if n.errlog == nil {
		n.errlog = &nginx.ErrorLog{Path: nginx.ErrorLogPath(ctx, n.Run, n.NginxBin, n.NginxConf)}
	}
	return *n.errlog
}

// Proxy is what nginx runs now, for status.
type Proxy struct {
	Unit      string
	Active    string // the unit's ActiveState
	MasterPID int    // 0 when there is none
	Workers   int    // children of the master serving the current config
	Draining  int    // old workers still finishing requests after a reload
}

// Describe says what nginx runs now. Only the unit's state must be read;
// the master and its workers are 0 when they cannot be.
func (n *Nginx) Describe(ctx context.Context) (Proxy, error) {
	p := Proxy{Unit: n.NginxUnit}
	if n.Systemd == nil {
		return p, errors.New("D-Bus not reachable")
	}
	var err error
	if p.Active, err = n.state(ctx); err != nil {
		return p, err
	}
	if master, err := nginx.MainPID(ctx, n.Systemd, n.NginxUnit); err == nil {
		p.MasterPID = master
		if gen, err := n.Procs.Snapshot(master); err == nil {
			p.Draining = len(n.Procs.ShuttingDown(gen.Workers))
			p.Workers = len(gen.Workers) - p.Draining
		}
	}
	return p, nil
}

// workerCreds returns who nginx's workers run as, read from the first
// worker's /proc status when first asked (the checks, before the slot
// starts): a later look costs no D-Bus call.
func (n *Nginx) workerCreds(ctx context.Context) (creds, error) {
	if n.workers != nil {
		return *n.workers, nil
	}
	if n.Systemd == nil {
		return creds{}, errors.New("D-Bus not reachable")
	}
	master, err := nginx.MainPID(ctx, n.Systemd, n.NginxUnit)
	if err != nil {
		return creds{}, err
	}
	workers, err := n.Procs.Children(master)
	if err != nil {
		return creds{}, fmt.Errorf("nginx's workers: %w", err)
	}
	if len(workers) == 0 {
		return creds{}, fmt.Errorf("nginx master %d shows no workers in /proc (mounted with hidepid?), so who they run as is unknown; run edgeswitch as root", master)
	}
	c, err := readCreds(n.Procs.Root, workers[0])
	if err == nil {
		n.workers = &c
	}
	return c, err
}
