package swap

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/edgeswitch/edgeswitch/route"
)

// What the look at a slot's listeners can find besides the proof that its
// answers are its unit's.
var (
	// errSquatted: a process outside the slot's unit listens on its
	// address, and may take its connections: with SO_REUSEPORT, or on the
	// wildcard address, even while the slot listens too.
	errSquatted = errors.New("a process outside the slot's unit listens on")
	// errUnverified: a listener's holder is hidden from this user, who
	// cannot read other users' /proc/PID/fd, or the unit's cgroup is not
	// known (no D-Bus).
	errUnverified = errors.New("unverified")
	// errNoListener: nothing listens on the slot's address.
	errNoListener = errors.New("nothing listens on")
)

// proveOwner proves that the answers from slot's address come from its
// unit: every socket listening there is held by processes of the unit's
// cgroup (its ControlGroup) and by no other process. A unit that is not
// running has no cgroup, so then any listener is someone else's. The
// error wraps errSquatted (naming the processes), errUnverified,
// errNoListener, or none of them when /proc could not be read or a holder
// went away during the look.
func proveOwner(ctx context.Context, env Env, slot Slot) (string, error) {
	addr := slot.Addr.Name
	if env.Systemd == nil {
		return "", fmt.Errorf("%w: D-Bus is not reachable to name the cgroup of %s", errUnverified, slot.Unit)
	}
	prop, err := env.Systemd.GetServicePropertyContext(ctx, slot.Unit, "ControlGroup")
	if err != nil {
		return "", fmt.Errorf("cgroup of %s: %w", slot.Unit, err)
	}
	unitCG, _ := prop.Value.Value().(string) // "" when the unit does not run
	ls, denied, err := route.Listeners(env.ProcRoot, slot.Addr)
	if err != nil {
		return "", err
	}
	if len(ls) == 0 {
		return "", fmt.Errorf("%w %s", errNoListener, addr)
	}
	var foreign, own []string
	for _, l := range ls {
		for _, h := range l.Holders {
			who := fmt.Sprintf("PID %d (%s)", h.PID, printable(h.Program))
			if unitCG == "" || h.Cgroup != unitCG && !strings.HasPrefix(h.Cgroup, unitCG+"/") {
				foreign = append(foreign, fmt.Sprintf("%s in cgroup %s on %s", who, printable(h.Cgroup), l.Addr))
			} else if !slices.Contains(own, who) {
				own = append(own, who)
			}
		}
		switch {
		case len(l.Holders) > 0:
		case denied:
			return "", fmt.Errorf("%w: this user cannot read other users' /proc/PID/fd, so who listens on %s is not known; run as root to prove it is %s", errUnverified, l.Addr, slot.Unit)
		default:
			return "", fmt.Errorf("no process holds the socket listening on %s (inode %d) any more", l.Addr, l.Inode)
		}
	}
	if len(foreign) > 0 {
		return "", fmt.Errorf("%w %s: %s, not %s", errSquatted, addr, strings.Join(foreign, ", "), slot.Unit)
	}
	return fmt.Sprintf("only %s listens on %s: %s", slot.Unit, addr, strings.Join(own, ", ")), nil
}

// printable escapes the control characters of a name that a process
// chose itself (its program name, a cgroup it made), which would
// otherwise reach the operator's terminal.
func printable(s string) string {
	q := strconv.QuoteToGraphic(s)
	return q[1 : len(q)-1]
}

// notTaken refuses a slot whose address another process holds before the
// slot starts: the switch would give that process the traffic. Its own
// unit's listeners (a target already running) are no reason to refuse.
func notTaken(ctx context.Context, env Env, slot Slot) error {
	_, err := proveOwner(ctx, env, slot)
	switch {
	case err == nil || errors.Is(err, errNoListener):
		return nil
	case errors.Is(err, errSquatted) || errors.Is(err, errUnverified):
		return fmt.Errorf("slot %d is taken before it starts: %w; stop that process (or free %s) and switch again, as a switch would give it the traffic", slot.Port, err, slot.Addr.Name)
	}
	return fmt.Errorf("cannot tell who listens on slot %d's %s: %w", slot.Port, slot.Addr.Name, err)
}

// What status and check found of the sockets of a live slot that answers
// (SlotStatus.Listener).
const (
	listenerOwn        = "own"        // only its unit's processes listen there
	listenerUnverified = "unverified" // this user cannot see who does
	listenerForeign    = "foreign"    // another process does, and may take its traffic
	listenerUnproven   = "unproven"   // nothing that /proc shows answered
)

// lookAtListeners applies proveOwner to a live slot that answered as
// healthy, for status and check. It returns the slot's Listener, whether
// the answer still counts (an unverified one does: it is all a user who
// is not root can know), and the answer for people.
func lookAtListeners(ctx context.Context, env Env, slot Slot, answer string) (string, bool, string) {
	_, err := proveOwner(ctx, env, slot)
	switch {
	case err == nil:
		return listenerOwn, true, answer
	case errors.Is(err, errUnverified):
		return listenerUnverified, true, answer + " (" + err.Error() + ")"
	case errors.Is(err, errSquatted):
		return listenerForeign, false, err.Error()
	}
	return listenerUnproven, false, answer + ", but " + err.Error()
}
