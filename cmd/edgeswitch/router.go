package main

import (
	"github.com/edgeswitch/edgeswitch/nginx"
	"github.com/edgeswitch/edgeswitch/route"
	"github.com/edgeswitch/edgeswitch/swap"
)

// routerFor returns what builds each command's router for its options'
// mode, acting on nginx through conn (nil when D-Bus cannot be reached: the
// checks that need it say so).
func routerFor(conn *manager) func(swap.Options) swap.Router {
	return func(o swap.Options) swap.Router {
		n := &route.Nginx{
			NginxConf: o.NginxConf, NginxBin: o.NginxBin, NginxUnit: o.NginxUnit,
			ReloadTimeout: o.ReloadTimeout, DrainTimeout: o.DrainTimeout,
			Systemctl: o.Systemctl(),
			Run:       nginx.ExecRunner, Procs: nginx.Procs{Root: "/proc"},
		}
		if conn != nil { // a nil *manager inside the interface would not be nil
			n.Systemd = conn
		}
		slots := o.Slots()
		if !o.SocketMode() {
			return &route.Reload{Nginx: n, Upstream: o.Upstream, Slots: []route.Addr{slots[0].Addr, slots[1].Addr}}
		}
		var ss []route.SocketSlot
		for _, sl := range slots {
			path, _ := sl.Addr.Socket()
			ss = append(ss, route.SocketSlot{Port: o.TCPAddr(sl.Port), Socket: path})
		}
		return route.NewSocket(n, o.Upstream, o.Link(), ss)
	}
}
