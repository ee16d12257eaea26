package swap

import (
	"context"
	"net"
	"os"
	"strconv"
	"strings"

	"github.com/edgeswitch/edgeswitch/route"
)

// Router is how traffic moves from one slot to another: swap decides which
// slot and when, a router tells the proxy. route.Reload rewrites the
// upstream block and reloads nginx (mode "reload"); route.Socket points the
// link the block lists at the new slot's socket (mode "socket").
type Router interface {
	// Read returns the slot addresses that get traffic now.
	Read() (route.Listing, error)
	// Checks are what must hold before the router may act (the proxy runs,
	// its config passes as it is); they change nothing.
	Checks(ctx context.Context) []route.Check
	// Resume is told, before Plan, that an earlier switch that was changing
	// file did not finish, so that the plan redoes what may not have taken
	// effect.
	Resume(file string)
	// Plan computes the change that gives the traffic to the backends,
	// touching nothing. It follows Read.
	Plan(to []route.Backend) (*route.Change, error)
	// Drain waits, bounded, until the proxy holds nothing for the slot that
	// lost the traffic.
	Drain(ctx context.Context) route.Drained
	// Revert undoes whatever part of the planned change's steps ran; once
	// the proxy has taken the change, that moves the traffic back and
	// waits until nothing serves the new slot any more.
	Revert(ctx context.Context) error
	// Reverted says how Revert's wait for what served the new slot ended:
	// when Left is not 0, stopping the new slot cuts it.
	Reverted() route.Drained
	// UpstreamFailures counts the requests to addr that the proxy logged
	// as failed since the change, with the last such line: a bake watches
	// them.
	UpstreamFailures(addr string) (int, string)
	// Answers counts the answers from addr since the change, and those
	// that were 5xx, where the proxy records them (else 0, 0).
	Answers(addr string) (total, fiveXX int)
}

// router returns the router of one switch: env's, for tests, or else the
// mode's router on the real effects.
func (e Env) router(o Options) Router {
	if e.NewRouter != nil {
		return e.NewRouter(o)
	}
	var slots []string
	for _, p := range o.Ports {
		slots = append(slots, o.tcpAddr(p))
	}
	if o.socketMode() {
		slots = append(slots, "unix:"+o.link())
	}
	r := &route.Reload{
		Upstream: o.Upstream, Slots: slots,
		NginxConf: o.NginxConf, NginxBin: o.NginxBin, NginxUnit: o.NginxUnit,
		ReloadTimeout: o.ReloadTimeout, DrainTimeout: o.DrainTimeout,
		Systemctl: o.systemctl(),
		Run:       e.Run, Procs: e.Procs,
	}
	if e.Systemd != nil { // a nil *dbus.Conn inside the interface would not be nil
		r.Systemd = e.Systemd
	}
	if o.socketMode() {
		sl := o.Slots()
		return &route.Socket{Link: o.link(), Sockets: []string{sl[0].Addr, sl[1].Addr}, Reload: r}
	}
	return r
}

// Slot is one of the app's two copies: the port that names it (the
// instance of the template unit), its unit, and the address nginx sends
// its traffic to.
type Slot struct {
	Port int
	Unit string
	Addr string
}

// port is the slot's port, or nil for the zero Slot (no slot).
func (s Slot) port() *int {
	if s.Port == 0 {
		return nil
	}
	return &s.Port
}

// Slots returns the two slots.
func (o Options) Slots() [2]Slot {
	return [2]Slot{o.slot(o.Ports[0]), o.slot(o.Ports[1])}
}

func (o Options) slot(port int) Slot {
	addr := o.tcpAddr(port)
	if o.socketMode() {
		addr = "unix:" + strings.ReplaceAll(o.Socket, "{port}", strconv.Itoa(port))
	}
	return Slot{Port: port, Unit: o.SlotUnit(port), Addr: addr}
}

// servingAt is where slot answers now, for a look that changes nothing
// (status, check): its own address, except in socket mode before the
// conversion, when the slot that serves still listens on its port, not on
// a socket.
func (o Options) servingAt(slot Slot) Slot {
	if path, ok := strings.CutPrefix(slot.Addr, "unix:"); ok {
		if _, err := os.Stat(path); err != nil {
			slot.Addr = o.tcpAddr(slot.Port)
		}
	}
	return slot
}

// tcpAddr is where slot port listens in reload mode.
func (o Options) tcpAddr(port int) string { return net.JoinHostPort(o.Host, strconv.Itoa(port)) }

// other returns the slot that is not s.
func (o Options) other(s Slot) Slot {
	if s.Port == o.Ports[0] {
		return o.slot(o.Ports[1])
	}
	return o.slot(o.Ports[0])
}

// byAddr returns the slots whose addresses are listed, in order.
func (o Options) byAddr(addrs []string) []Slot {
	var slots []Slot
	for _, a := range addrs {
		for _, s := range o.Slots() {
			if s.Addr == a {
				slots = append(slots, s)
			}
		}
	}
	return slots
}
