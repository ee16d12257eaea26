package nginx

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/coreos/go-systemd/v22/dbus"
	godbus "github.com/godbus/dbus/v5"
	"github.com/google/go-cmp/cmp"
)

// fakeSystemd answers like a systemd manager with one unit. A reload job
// reports job on the channel it is given, or nothing when job is "".
type fakeSystemd struct {
	job     string
	err     error // returned by every call
	mainPID any
	calls   []string
}

func (f *fakeSystemd) ReloadUnitContext(ctx context.Context, name string, mode string, ch chan<- string) (int, error) {
	f.calls = append(f.calls, "reload "+name+" "+mode)
	if f.err != nil {
		return 0, f.err
	}
	if f.job != "" {
		ch <- f.job
	}
	return 1, nil
}

func (f *fakeSystemd) GetServicePropertyContext(ctx context.Context, unit string, propertyName string) (*dbus.Property, error) {
	f.calls = append(f.calls, "get "+unit+" "+propertyName)
	if f.err != nil {
		return nil, f.err
	}
	return &dbus.Property{Name: propertyName, Value: godbus.MakeVariant(f.mainPID)}, nil
}

var _ Systemd = (*dbus.Conn)(nil)

func TestReload(t *testing.T) {
	tests := []struct {
		name    string
		sd      fakeSystemd
		wantIs  error
		wantMsg string
	}{
		{
			name: "a done job is a delivered reload",
			sd:   fakeSystemd{job: "done"},
		},
		{
			name:    "a failed job is a failed reload",
			sd:      fakeSystemd{job: "failed"},
			wantIs:  ErrReload,
			wantMsg: "nginx reload failed: nginx.service: job failed",
		},
		{
			name:    "a manager that refuses the job is a failed reload",
			sd:      fakeSystemd{err: errors.New("Unit nginx.service not loaded.")},
			wantIs:  ErrReload,
			wantMsg: "nginx reload failed: nginx.service: Unit nginx.service not loaded.",
		},
		{
			name:    "a job that never reports ends with the context, its outcome unknown",
			sd:      fakeSystemd{},
			wantIs:  context.DeadlineExceeded,
			wantMsg: "reload nginx.service: waiting for the job: context deadline exceeded",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
			t.Cleanup(cancel)
			err := Reload(ctx, &tt.sd, "nginx.service")
			checkErr(t, err, tt.wantIs, tt.wantMsg)
			if tt.wantIs != ErrReload && errors.Is(err, ErrReload) {
				t.Errorf("error %q wraps ErrReload", err)
			}
			if diff := cmp.Diff([]string{"reload nginx.service replace"}, tt.sd.calls); diff != "" {
				t.Errorf("calls (-want +got):\n%s", diff)
			}
		})
	}
}

func TestMainPID(t *testing.T) {
	tests := []struct {
		name    string
		sd      fakeSystemd
		want    int
		wantIs  error
		wantMsg string
	}{
		{
			name: "a running unit has its master's PID",
			sd:   fakeSystemd{mainPID: uint32(812)},
			want: 812,
		},
		{
			name:    "a stopped unit has none",
			sd:      fakeSystemd{mainPID: uint32(0)},
			wantIs:  ErrNotActive,
			wantMsg: "nginx.service has no main process: nginx is not running",
		},
		{
			name:    "a value of another type is an error",
			sd:      fakeSystemd{mainPID: "812"},
			wantMsg: `get MainPID of nginx.service: unexpected value "812"`,
		},
		{
			name:    "a D-Bus error names the unit",
			sd:      fakeSystemd{err: errors.New("connection closed")},
			wantMsg: "get MainPID of nginx.service: connection closed",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := MainPID(t.Context(), &tt.sd, "nginx.service")
			checkErr(t, err, tt.wantIs, tt.wantMsg)
			if got != tt.want {
				t.Errorf("got PID %d, want %d", got, tt.want)
			}
			if diff := cmp.Diff([]string{"get nginx.service MainPID"}, tt.sd.calls); diff != "" {
				t.Errorf("calls (-want +got):\n%s", diff)
			}
		})
	}
}
