package swap

import (
	"context"
	"time"

	"github.com/edgeswitch/edgeswitch/nginx"
)

// Status is what is live now, as `status --json` prints it.
type Status struct {
	Upstream string       `json:"upstream"`
	File     string       `json:"file"`
	Line     int          `json:"line"`
	Live     *int         `json:"live"` // the one listed slot; null when both or none are listed
	Listed   []int        `json:"listed"`
	Slots    []SlotStatus `json:"slots"`
	Nginx    NginxStatus  `json:"nginx"`
	Pending  *Pending     `json:"pending"` // a switch that did not finish (crash); run switch again to finish it
	Last     *Record      `json:"last"`    // the last switch attempt, if any
	History  []Record     `json:"history"` // the last few attempts, oldest first
}

// SlotStatus is one slot's unit and its health answer now.
type SlotStatus struct {
	Port    int       `json:"port"`
	Unit    string    `json:"unit"`
	Active  string    `json:"active"`
	Sub     string    `json:"sub"`
	Since   time.Time `json:"since"`
	Healthy bool      `json:"healthy"`
	Answer  string    `json:"answer"` // the health answer, or why there is none
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
	l, err := env.router(o).Read()
	if err != nil {
		return nil, Usage(err)
	}
	listed := o.byAddr(l.Addrs)
	st := &Status{Upstream: o.Upstream, File: l.File, Line: l.Line, Listed: ports(listed)}
	if len(listed) == 1 {
		st.Live = &listed[0].Port
	}
	for _, slot := range o.Slots() {
		st.Slots = append(st.Slots, slotStatus(ctx, o, env, slot))
	}
	ng, err := getUnit(ctx, env.Systemd, o.NginxUnit)
	if err != nil {
		return nil, Usage(err)
	}
	st.Nginx = NginxStatus{Unit: o.NginxUnit, Active: ng.Active}
	if master, err := nginx.MainPID(ctx, env.Systemd, o.NginxUnit); err == nil {
		st.Nginx.MasterPID = master
		if gen, err := env.Procs.Snapshot(master); err == nil {
			st.Nginx.Draining = len(env.Procs.ShuttingDown(gen.Workers))
			st.Nginx.Workers = len(gen.Workers) - st.Nginx.Draining
		}
	}
	if st.Pending, err = readPending(o.StateDir, o.Upstream); err != nil {
		return nil, err
	}
	hist, err := History(o.StateDir, o.Upstream)
	if err != nil {
		return nil, err
	}
	if n := len(hist); n > 0 {
		st.Last = &hist[n-1]
		st.History = hist[max(0, n-historyShown):]
	}
	return st, nil
}

func slotStatus(ctx context.Context, o Options, env Env, slot Slot) SlotStatus {
	s := SlotStatus{Port: slot.Port, Unit: slot.Unit}
	u, err := getUnit(ctx, env.Systemd, s.Unit)
	if err != nil {
		s.Answer = err.Error()
		return s
	}
	s.Active, s.Sub, s.Since = u.Active, u.Sub, u.Since
	if !running(u.Active) {
		s.Answer = "not running"
		return s
	}
	s.Healthy, s.Answer = newHealthCheck(o, slot, env.HTTP).probe(ctx)
	return s
}
