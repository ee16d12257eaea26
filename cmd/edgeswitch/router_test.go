package main

import (
	"testing"

	"github.com/edgeswitch/edgeswitch/route"
)

// TestRouterForTheMode: each mode gets its router on the options'
// settings, and no connection means a nil Systemd, not a nil *manager in
// the interface.
func TestRouterForTheMode(t *testing.T) {
	o := parseSettings(t, "", "")
	r, ok := routerFor(nil)(o).(*route.Reload)
	if !ok {
		t.Fatalf("reload mode's router is %T, want *route.Reload", routerFor(nil)(o))
	}
	if r.Upstream != "app" || r.NginxConf != o.NginxConf || r.NginxUnit != o.NginxUnit || len(r.Slots) != 2 || r.Slots[1] != route.TCP("127.0.0.1:4001") || r.Systemd != nil {
		t.Errorf("reload router %+v does not carry the settings", r)
	}
	if r, ok := routerFor(&manager{})(o).(*route.Reload); !ok || r.Systemd == nil {
		t.Errorf("with a connection the router has no Systemd")
	}

	o.Mode, o.Socket = "socket", "/run/app/{port}.sock"
	s, ok := routerFor(nil)(o).(*route.Socket)
	if !ok {
		t.Fatalf("socket mode's router is %T, want *route.Socket", routerFor(nil)(o))
	}
	want := []route.SocketSlot{{Port: route.TCP("127.0.0.1:4000"), Socket: "/run/app/4000.sock"}, {Port: route.TCP("127.0.0.1:4001"), Socket: "/run/app/4001.sock"}}
	if s.Link != o.Link() || len(s.Slots) != 2 || s.Slots[0] != want[0] || s.Slots[1] != want[1] {
		t.Errorf("socket router: link %s, slots %+v; want %s, %+v", s.Link, s.Slots, o.Link(), want)
	}
}
