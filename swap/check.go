package swap

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"

	"github.com/edgeswitch/edgeswitch/nginx"
	"github.com/edgeswitch/edgeswitch/upstream"
)

// CheckItem is one line of the checklist: what was checked, whether it
// passed, and what was found or what to do.
type CheckItem struct {
	Name   string `json:"name"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail"`
}

// Check runs everything a switch verifies before acting, and changes
// nothing. env.Systemd may be nil when D-Bus cannot be reached; the items
// that need it then fail with that reason.
func Check(ctx context.Context, o Options, env Env) []CheckItem {
	var items []CheckItem
	add := func(name, ok string, err error) {
		if err != nil {
			items = append(items, CheckItem{Name: name, Detail: err.Error()})
		} else {
			items = append(items, CheckItem{Name: name, OK: true, Detail: ok})
		}
	}
	b, err := upstream.Find(o.NginxConf, o.Upstream, o.Slots())
	found := ""
	if err == nil {
		found = fmt.Sprintf("upstream %s at %s:%d lists %v", b.Name, b.File, b.Line, b.Listed())
	}
	add("upstream found once, only slot servers", found, err)
	add("nginx -t", o.NginxConf+" ok", nginxTest(ctx, o, env))
	if env.Systemd == nil {
		err := fmt.Errorf("D-Bus not reachable")
		add(o.NginxUnit+" active", "", err)
		add(o.Unit+" loads for both ports", "", err)
	} else {
		add(o.NginxUnit+" active", "active", nginxActive(ctx, o, env))
		err := slotLoaded(ctx, o, env, o.Ports[0])
		if err == nil {
			err = slotLoaded(ctx, o, env, o.Ports[1])
		}
		add(o.Unit+" loads for both ports", fmt.Sprintf("%s and %s", o.SlotUnit(o.Ports[0]), o.SlotUnit(o.Ports[1])), err)
	}
	add("state dir writable", o.StateDir, stateDirWritable(o.StateDir))
	if b != nil {
		live, ok := b.Live()
		var err error
		answer := ""
		if !ok {
			err = fmt.Errorf("upstream %s lists both slots: no single live slot yet; the first switch picks one", o.Upstream)
		} else if healthy, a := newHealthCheck(o, live, env.HTTP).probe(ctx); !healthy {
			err = fmt.Errorf("slot %d answers %s on %s; start it or fix the app (%s status %s)", live, a, o.HealthPath, o.systemctl(), o.SlotUnit(live))
		} else {
			answer = fmt.Sprintf("slot %d answers %s", live, a)
		}
		add("live slot healthy", answer, err)
	}
	return items
}

func nginxActive(ctx context.Context, o Options, env Env) error {
	ng, err := getUnit(ctx, env.Systemd, o.NginxUnit)
	if err != nil {
		return err
	}
	if ng.Active != "active" {
		return fmt.Errorf("%s is %s; edgeswitch never starts nginx: start it (%s start %s), then switch", o.NginxUnit, ng.Active, o.systemctl(), o.NginxUnit)
	}
	return nil
}

func slotLoaded(ctx context.Context, o Options, env Env, port int) error {
	unit := o.SlotUnit(port)
	u, err := getUnit(ctx, env.Systemd, unit)
	if err != nil {
		return err
	}
	if u.Load != "loaded" {
		return fmt.Errorf("unit %s is %s: install the template unit %s and run %s daemon-reload", unit, u.Load, o.Unit, o.systemctl())
	}
	return nil
}

func nginxTest(ctx context.Context, o Options, env Env) error {
	err := nginx.Test(ctx, env.Run, o.NginxBin, o.NginxConf)
	if errors.Is(err, nginx.ErrInvalid) {
		return fmt.Errorf("%w; fix the config first, edgeswitch changes nothing while nginx -t fails", err)
	}
	return err
}

// stateDirWritable checks, without creating anything, that the state dir
// (or the nearest existing parent it would be created in) is writable.
func stateDirWritable(dir string) error {
	d := dir
	for {
		if _, err := os.Stat(d); err == nil {
			break
		}
		parent := filepath.Dir(d)
		if parent == d {
			break
		}
		d = parent
	}
	if err := syscall.Access(d, 2 /* W_OK */); err != nil {
		return fmt.Errorf("%s: not writable (%w); make it writable or set state-dir", d, err)
	}
	return nil
}
