package swap

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// CheckItem is one line of the checklist: what was checked, whether it
// passed, and what was found or what to do.
type CheckItem struct {
	App    string `json:"app,omitempty"` // set when the config file names its apps
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
	r := env.Router(o)
	l, err := r.Read()
	found := ""
	if err == nil {
		found = fmt.Sprintf("upstream %s at %s:%d lists %v", o.Upstream, l.File, l.Line, ports(o.byAddr(l.Addrs)))
	}
	add("upstream found once, only slot servers", found, err)
	for _, c := range r.Checks(ctx) {
		add(c.Name, c.OK, c.Err)
	}
	slots := o.Slots()
	if env.Systemd == nil {
		add(o.Unit+" loads and can be enabled", "", errors.New("D-Bus not reachable"))
	} else {
		err := slotInstalled(ctx, o, env, slots[0])
		if err == nil {
			err = slotInstalled(ctx, o, env, slots[1])
		}
		add(o.Unit+" loads and can be enabled", fmt.Sprintf("%s and %s", slots[0].Unit, slots[1].Unit), err)
	}
	stateErr := stateDirWritable(o.StateDir)
	if _, err := os.Stat(o.StateDir); stateErr == nil && err == nil {
		stateErr = stateDirTrusted(o.StateDir)
	}
	add("state dir writable", o.StateDir, stateErr)
	if len(o.PreStart) > 0 || len(o.PostSwitch) > 0 || len(o.OnFailure) > 0 {
		add("hooks can run", "found on "+HookPath, o.checkHooks())
	}
	if found != "" {
		var err error
		answer := ""
		if listed := o.byAddr(l.Addrs); len(listed) != 1 {
			err = fmt.Errorf("upstream %s lists both slots: no single live slot yet; the first switch picks one", o.Upstream)
		} else if firstDeploy(ctx, o, env, listed[0]) {
			answer = fmt.Sprintf("slot %d is not started yet: the first switch starts it (%s --to %d)", listed[0].Port, o.command("switch"), listed[0].Port)
		} else if healthy, a := newHealthCheck(o, o.servingAt(listed[0]), env.HTTP).probe(ctx); !healthy {
			err = fmt.Errorf("slot %d answers %s on %s; start it or fix the app (%s status %s)", listed[0].Port, a, o.HealthPath, o.Systemctl(), listed[0].Unit)
		} else if who, ok, a := lookAtListeners(ctx, env, o.servingAt(listed[0]), a); who == listenerForeign {
			err = fmt.Errorf("slot %d: %s; stop that process, which may take the slot's traffic", listed[0].Port, a)
		} else if !ok {
			err = fmt.Errorf("slot %d answers %s", listed[0].Port, a)
		} else {
			answer = fmt.Sprintf("slot %d answers %s", listed[0].Port, a)
		}
		add("live slot healthy", answer, err)
	}
	for i := range items {
		items[i].App = o.App
	}
	return items
}

// firstDeploy reports whether the listed slot has simply never been
// started: no switch of the app in the history and its unit not running.
// The first switch starts it; that is no failed check.
func firstDeploy(ctx context.Context, o Options, env Env, slot Slot) bool {
	if env.Systemd == nil {
		return false
	}
	hist, err := History(o.StateDir, o.app(), nil)
	if err != nil || len(hist) > 0 {
		return false
	}
	u, err := getUnit(ctx, env.Systemd, slot.Unit)
	return err == nil && !running(u.Active)
}

// slotInstalled checks that systemd knows the slot's unit and can enable
// it: without an [Install] section nothing would start the live slot after
// a reboot, and the site would stay dark.
func slotInstalled(ctx context.Context, o Options, env Env, slot Slot) error {
	u, err := getUnit(ctx, env.Systemd, slot.Unit)
	if err != nil {
		return err
	}
	if u.Load != "loaded" {
		return fmt.Errorf("unit %s is %s: install the template unit %s and run %s daemon-reload", slot.Unit, u.Load, o.Unit, o.Systemctl())
	}
	file, err := unitFile(ctx, env.Systemd, slot.Unit)
	if err != nil {
		return err
	}
	if file == "static" {
		return fmt.Errorf("unit %s has no [Install] section, so nothing would start the live slot after a reboot: add \"[Install]\" with \"WantedBy=%s\" to it and run %s daemon-reload",
			o.Unit, o.wantedBy(), o.Systemctl())
	}
	return nil
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
