package route

import (
	"github.com/edgeswitch/edgeswitch/nginx"
)

// Listener is a socket listening on a backend's address, with the
// processes that hold it: whoever holds one may answer for the backend.
type Listener struct {
	Addr    string // where it listens: "[::]:4001", "/run/app/4001.sock"
	Inode   uint64
	Holders []Holder // none when its holders are hidden or gone
}

// Holder is a process holding a listening socket.
type Holder struct {
	PID     int
	Program string // its comm, as the process chose it
	Cgroup  string // in systemd's hierarchy, as a unit's ControlGroup names it
}

// Listeners returns the sockets listening on addr, read from the kernel's
// tables under procRoot (tcp and tcp6, wildcards and v4-mapped addresses;
// every unix listener on a socket's path), with their holders. hidden
// reports that some processes' descriptors could not be read (they are
// another user's), so a listener without holders may be held by them.
// A holder that exits during the look is left out.
func Listeners(procRoot string, addr Addr) (ls []Listener, hidden bool, err error) {
	procs := nginx.Procs{Root: procRoot}
	found, err := nginx.Listeners(procRoot, addr.String())
	if err != nil || len(found) == 0 {
		return nil, false, err
	}
	holders, hidden, err := procs.Holders(found)
	if err != nil {
		return nil, false, err
	}
	for _, f := range found {
		l := Listener{Addr: f.Addr, Inode: f.Inode}
		for _, pid := range holders[f.Inode] {
			cg, err := procs.Cgroup(pid)
			if err != nil {
				continue // gone since: it holds nothing now
			}
			l.Holders = append(l.Holders, Holder{PID: pid, Program: procs.Comm(pid), Cgroup: cg})
		}
		ls = append(ls, l)
	}
	return ls, hidden, nil
}
