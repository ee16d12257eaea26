package swap

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// Status is what is live now, as `status --json` prints it.
type Status struct {
	App      string `json:"app"`
	Upstream string `json:"upstream"`
	File     string `json:"file"`
	Line     int    `json:"line"`
	Mode     string `json:"mode"` // "reload" or "socket"
	// Link is socket mode's link and the socket it points at ("" when
	// there is no link yet); absent in reload mode.
	Link    *LinkStatus  `json:"link,omitempty"`
	Live    *int         `json:"live"` // the one listed slot; null when both or none are listed
	Listed  []int        `json:"listed"`
	Slots   []SlotStatus `json:"slots"`
	Nginx   NginxStatus  `json:"nginx"`
	Pending *Pending     `json:"pending"` // a switch that did not finish (crash); run switch again to finish it
	// Switching is the PID of a switch running now, 0 when none is.
	Switching int      `json:"switching,omitempty"`
	Last      *Record  `json:"last"`    // the last switch attempt, if any
	History   []Record `json:"history"` // the last few attempts, oldest first; never null
	// Problems put traffic at risk, one line each with what to run; status
	// exits 1 when there is one. Never null.
	Problems []string `json:"problems"`
	// Warnings say what status could not read (a damaged history line);
	// absent when there are none.
	Warnings []string `json:"warnings,omitempty"`
}

// LinkStatus is socket mode's link: the path the upstream lists and the
// socket it points at.
type LinkStatus struct {
	Path   string `json:"path"`
	Target string `json:"target"`
}

// SlotStatus is one slot's unit and its health answer now.
type SlotStatus struct {
	Port    int        `json:"port"`
	Unit    string     `json:"unit"`
	Active  string     `json:"active"`
	Sub     string     `json:"sub"`
	Since   *time.Time `json:"since,omitempty"` // absent for a unit that never ran
	Enabled bool       `json:"enabled"`         // it starts at boot
	Healthy bool       `json:"healthy"`
	Answer  string     `json:"answer"` // the health answer, or why there is none
	// Listener says, for a live slot that answers, who listens on its
	// address: "own" (only its unit's processes), "unverified" (a user who
	// is not root cannot see other users' descriptors), "foreign" (another
	// process, which may take its traffic: then it is not healthy) or
	// "unproven" (no listener its unit holds was found).
	Listener string `json:"listener,omitempty"`
}

// NginxStatus is nginx's unit and its workers.
type NginxStatus struct {
	Unit      string `json:"unit"`
	Active    string `json:"active"`
	MasterPID int    `json:"master_pid"`
	Workers   int    `json:"workers"`  // children of the master serving the current config
	Draining  int    `json:"draining"` // old workers still finishing requests after a reload
}

// historyShown is how many past attempts status reports.
const historyShown = 5

// ReadStatus reports the live slot from the nginx config, each slot's unit
// and health, nginx's unit and workers, and the recent history. It changes
// nothing.
func ReadStatus(ctx context.Context, o Options, env Env) (*Status, error) {
	r := env.Router(o)
	l, err := r.Read()
	if err != nil {
		return nil, Usage(err)
	}
	listed := o.byAddr(l.Addrs)
	st := &Status{App: o.app(), Upstream: o.Upstream, File: l.File, Line: l.Line, Listed: ports(listed), Mode: o.Mode}
	if o.SocketMode() {
		target, _ := os.Readlink(o.Link()) // Read refused anything but a link to a slot's socket
		st.Link = &LinkStatus{Path: o.Link(), Target: target}
	}
	if len(listed) == 1 {
		st.Live = &listed[0].Port
	}
	for _, slot := range o.Slots() {
		ss := slotStatus(ctx, o, env, slot)
		if ss.Healthy && slices.Contains(listed, slot) {
			ss.Listener, ss.Healthy, ss.Answer = lookAtListeners(ctx, env, o.servingAt(slot), ss.Answer)
		}
		st.Slots = append(st.Slots, ss)
	}
	p, err := r.Describe(ctx)
	if err != nil {
		return nil, Usage(err)
	}
	st.Nginx = NginxStatus(p)
	st.History = []Record{}
	var untrusted error
	if _, err := os.Stat(o.StateDir); err == nil {
		untrusted = stateDirTrusted(o.StateDir)
	}
	// What others could have planted there is not read as root.
	if untrusted == nil {
		if err := readState(o, env, st); err != nil {
			return nil, err
		}
	}
	st.Problems = problems(o, st, untrusted)
	return st, nil
}

// readState fills in what the state dir says: a switch left pending or
// running now, and the history.
func readState(o Options, env Env, st *Status) error {
	var err error
	if st.Pending, err = readPending(o.StateDir, o.app()); err != nil {
		return err
	}
	st.Switching = lockHolder(env.ProcRoot, filepath.Join(o.StateDir, lockFile(o.app())))
	hist, err := History(o.StateDir, o.app(), func(w string) { st.Warnings = append(st.Warnings, w) })
	if err != nil {
		return err
	}
	if n := len(hist); n > 0 {
		st.Last = &hist[n-1]
		st.History = hist[max(0, n-historyShown):]
	}
	return nil
}

// problems lists what puts traffic at risk now, each with what to run. A
// switch running now is shown, not counted: the slots are meant to move.
func problems(o Options, st *Status, untrusted error) []string {
	ps := []string{}
	// reloading is nginx at work (another app's switch, say): it serves.
	switch ng := st.Nginx; ng.Active {
	case "active", "reloading":
	case "activating":
		ps = append(ps, fmt.Sprintf("%s is starting, so nothing is served yet; see %s status %s", ng.Unit, o.Systemctl(), ng.Unit))
	default:
		ps = append(ps, fmt.Sprintf("%s is %s, so nothing is served: start it (%s start %s)", ng.Unit, ng.Active, o.Systemctl(), ng.Unit))
	}
	if untrusted != nil {
		ps = append(ps, untrusted.Error()+"; switch and rollback refuse it, and status does not read it, until then")
	}
	if st.Switching != 0 {
		return ps
	}
	if pd := st.Pending; pd != nil {
		ps = append(ps, fmt.Sprintf("a switch %d -> %d did not finish (since %s): nginx may route to either slot; run %s to finish it", pd.From, pd.To, pd.Time, o.command("switch")))
	}
	if st.Live == nil {
		if !slices.ContainsFunc(st.Slots, func(s SlotStatus) bool { return slices.Contains(st.Listed, s.Port) && s.Healthy }) {
			ps = append(ps, fmt.Sprintf("no slot that upstream %s lists is healthy: start one (%s start UNIT), then %s --to its port", st.Upstream, o.Systemctl(), o.command("switch")))
		}
		return ps
	}
	bootRight := true
	for _, s := range st.Slots {
		live := s.Port == *st.Live
		switch {
		case live && s.Listener == listenerForeign:
			ps = append(ps, fmt.Sprintf("slot %d is live but %s: stop that process, which may take the slot's traffic", s.Port, s.Answer))
		case live && !running(s.Active):
			ps = append(ps, fmt.Sprintf("slot %d is live but %s is %s: start it (%s start %s)", s.Port, s.Unit, s.Active, o.Systemctl(), s.Unit))
		case live && !s.Healthy:
			ps = append(ps, fmt.Sprintf("slot %d is live but answers %s on %s: see %s -u %s, or go back with %s", s.Port, s.Answer, o.HealthPath, o.journalctl(), s.Unit, o.command("rollback")))
		}
		bootRight = bootRight && s.Enabled == live
	}
	if !bootRight {
		live := o.slot(*st.Live)
		other := o.other(live)
		ps = append(ps, fmt.Sprintf("the slot enabled at boot is not the live slot %d, so a reboot would bring back the wrong one: run %s enable %s && %s disable %s",
			live.Port, o.Systemctl(), live.Unit, o.Systemctl(), other.Unit))
	}
	return ps
}

func slotStatus(ctx context.Context, o Options, env Env, slot Slot) SlotStatus {
	s := SlotStatus{Port: slot.Port, Unit: slot.Unit}
	u, err := getUnit(ctx, env.Systemd, s.Unit)
	if err != nil {
		s.Answer = err.Error()
		return s
	}
	file, _ := unitFile(ctx, env.Systemd, slot.Unit) // not installed: not enabled
	s.Active, s.Sub, s.Enabled = u.Active, u.Sub, enabled(file)
	if !u.Since.IsZero() {
		s.Since = &u.Since
	}
	if !running(u.Active) {
		s.Answer = "not running"
		return s
	}
	s.Healthy, s.Answer = newHealthCheck(o, o.servingAt(slot), env.HTTP).probe(ctx)
	return s
}
