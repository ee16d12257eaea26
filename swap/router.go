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
// slot and when, a router tells the proxy. The command builds it for the
// mode (Env.Router): route.Reload rewrites the upstream block and reloads
// nginx, route.Socket points the link the block lists at the new slot's
// socket. A router serves one switch, in the order its methods are listed.
type Router interface {
	// Read returns the slot addresses that get traffic now. It comes
	// first: the other methods work on what it found.
	Read() (route.Listing, error)
	// Checks are what must hold before the router may act (the proxy runs,
	// its config passes as it is); they change nothing.
	Checks(ctx context.Context) []route.Check
	// Plan computes the change that gives the traffic to the backends,
	// touching nothing. resume names the file an earlier switch was
	// changing when it stopped ("" for none): the plan then redoes what
	// may not have taken effect. Plans chain, each from where the one
	// before leaves the proxy (a canary, then the new slot alone).
	Plan(to []route.Backend, resume string) (*route.Change, error)
	// Watch starts counting what the proxy logs of addr from now on (a
	// bake watches the new slot through it).
	Watch(ctx context.Context, addr route.Addr) route.Watch
	// Drain waits, bounded, until the proxy holds nothing for the slot
	// that lost the traffic.
	Drain(ctx context.Context) route.Drained
	// Revert undoes whatever part of the planned changes' steps ran; once
	// the proxy has taken a change, that moves the traffic back and waits
	// until nothing serves the new slot any more. When the Drained it
	// returns has Left, stopping the new slot cuts what is still open.
	Revert(ctx context.Context) (route.Drained, error)
	// Describe says what the proxy runs now, for status.
	Describe(ctx context.Context) (route.Proxy, error)
}

// Slot is one of the app's two copies: the port that names it (the
// instance of the template unit), its unit, and the address nginx sends
// its traffic to.
type Slot struct {
	Port int
	Unit string
	Addr route.Addr
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
	addr := o.TCPAddr(port)
	if o.SocketMode() {
		addr = route.Unix(strings.ReplaceAll(o.Socket, "{port}", strconv.Itoa(port)))
	}
	return Slot{Port: port, Unit: o.SlotUnit(port), Addr: addr}
}

// servingAt is where slot answers now, for a look that changes nothing
// (status, check): its own address, except in socket mode before the
// conversion, when the slot that serves still listens on its port, not on
// a socket.
func (o Options) servingAt(slot Slot) Slot {
	if path, ok := slot.Addr.Socket(); ok {
		if _, err := os.Stat(path); err != nil {
			slot.Addr = o.TCPAddr(slot.Port)
		}
	}
	return slot
}

// TCPAddr is where slot port listens in reload mode.
func (o Options) TCPAddr(port int) route.Addr {
	return route.TCP(net.JoinHostPort(o.Host, strconv.Itoa(port)))
}

// other returns the slot that is not s.
func (o Options) other(s Slot) Slot {
	if s.Port == o.Ports[0] {
		return o.slot(o.Ports[1])
	}
	return o.slot(o.Ports[0])
}

// byAddr returns the slots whose addresses are listed, in order.
func (o Options) byAddr(addrs []route.Addr) []Slot {
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
