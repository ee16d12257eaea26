package main

import (
	"context"
	"os"
	"strconv"

	"github.com/coreos/go-systemd/v22/dbus"
	godbus "github.com/godbus/dbus/v5"

	"github.com/edgeswitch/edgeswitch/swap"
)

// manager is the connection to systemd: go-systemd's, plus the one call
// swap needs that go-systemd lacks.
type manager struct {
	*dbus.Conn
	bus *godbus.Conn // go-systemd's own method connection, shared
}

var _ swap.Systemd = (*manager)(nil)

// connect connects to the system manager, or with userManager to the
// calling user's, as go-systemd's NewSystemConnectionContext and
// NewUserConnectionContext do, keeping the bus connection for
// GetUnitFileStateContext.
func connect(ctx context.Context, userManager bool) (*manager, error) {
	create := godbus.SystemBusPrivate
	if userManager {
		create = godbus.SessionBusPrivate
	}
	m := &manager{}
	dial := func() (*godbus.Conn, error) {
		c, err := create(godbus.WithContext(ctx))
		if err != nil {
			return nil, err
		}
		// EXTERNAL with the numeric uid, as go-systemd does: no user lookup.
		if err := c.Auth([]godbus.Auth{godbus.AuthExternal(strconv.Itoa(os.Getuid()))}); err != nil {
			c.Close()
			return nil, err
		}
		if err := c.Hello(); err != nil {
			c.Close()
			return nil, err
		}
		if m.bus == nil {
			m.bus = c
		}
		return c, nil
	}
	conn, err := dbus.NewConnection(dial)
	if err != nil {
		return nil, err
	}
	m.Conn = conn
	return m, nil
}

// GetUnitFileStateContext asks the manager whether a unit file is enabled,
// disabled or static, from the links on disk now. The UnitFileState
// property of a loaded unit says what it was at the last daemon-reload.
func (m *manager) GetUnitFileStateContext(ctx context.Context, unit string) (string, error) {
	var state string
	err := m.bus.Object("org.freedesktop.systemd1", "/org/freedesktop/systemd1").
		CallWithContext(ctx, "org.freedesktop.systemd1.Manager.GetUnitFileState", 0, unit).Store(&state)
	return state, err
}
