package swap

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/coreos/go-systemd/v22/dbus"
	"github.com/edgeswitch/edgeswitch/nginx"
	"github.com/edgeswitch/edgeswitch/route"
)

// Options are the settings of a switch. The CLI fills them from flags and
// the config file; Defaults gives the values it starts from.
type Options struct {
	// App names the app in the state dir (lock, pending record) and the
	// history: its [app.NAME] in the config file. "" for a file with one
	// app, which is then named after its upstream.
	App       string
	Upstream  string // name of the upstream block; default "app"
	NginxConf string // main nginx config; default /etc/nginx/nginx.conf
	NginxBin  string // binary for nginx -t; default "nginx"
	NginxUnit string // unit that is reloaded; default nginx.service
	Unit      string // template unit of the app, instance = port; default app@.service
	Host      string // address of the slots; default 127.0.0.1
	Ports     [2]int // the two slot ports; default 4000 and 4001

	HealthPath     string        // polled on the starting slot; default "/"
	HealthStatus   string        // accepted codes, e.g. "200-299,301"; default "200-299"
	HealthInterval time.Duration // between polls; default 100ms
	HealthTimeout  time.Duration // give up on the new slot; default 60s
	HealthHost     string        // Host header of the health request; default "": the slot's address
	HealthScheme   string        // "http" or "https"; default "http"
	HealthInsecure bool          // https: accept any certificate of the slot (self-signed); default false
	HealthBody     string        // text the health answer's body must contain (in its first 64 KiB); default "": any body
	ReloadTimeout  time.Duration // wait for nginx's new workers; default 10s
	DrainTimeout   time.Duration // wait for old workers to exit; default 30s
	StateDir       string        // lock and history; default /var/lib/edgeswitch
	UserManager    bool          // the units are the per-user manager's; default false
	// Bake keeps the old slot running this long after the reload while the
	// new one is watched, and rolls back at its first failure; 0: no bake.
	Bake time.Duration
	// BakeMax5xx is the share of 5xx answers from the new slot, in
	// percent, that fails a bake once it has given MinAnswers answers.
	BakeMax5xx float64
	// Canary is the percent of requests the new slot gets during the bake,
	// both slots listed with weights; then all. 0: no canary.
	Canary int

	// Mode is how traffic moves: "reload" rewrites the upstream block and
	// reloads nginx; "socket" points a symlink the block lists at the new
	// slot's socket, with no reload. Default "reload".
	Mode string
	// Socket is where slot PORT listens in socket mode, with {port} in
	// it: /run/app/{port}.sock.
	Socket string
	// SocketLink is the symlink the upstream lists in socket mode; default
	// <state-dir>/<upstream>.sock.
	SocketLink string

	// Hooks are argv lists run without a shell, with EDGESWITCH_FROM,
	// EDGESWITCH_TO and EDGESWITCH_UPSTREAM set. None by default.
	PreStart   []string // before the target starts (e.g. install the build); failing aborts
	PostSwitch []string // after a switch that moved traffic; failing only warns
	OnFailure  []string // after a failed or rolled-back switch, with EDGESWITCH_ERROR; failing only warns
	// HookTimeout bounds each hook: then it and every process it started
	// are killed, and it fails. Default 5m.
	HookTimeout time.Duration
	// HookUser is whom hooks run as: a name, a UID or UID:GID; default "":
	// as edgeswitch (the CLI fills in the sudo caller's SUDO_UID:SUDO_GID).
	HookUser string
}

// app names the app in the state dir and the history.
func (o Options) app() string { return cmp.Or(o.App, o.Upstream) }

// describe names what is switched, for messages: the app and its upstream.
func (o Options) describe() string {
	if o.App == "" || o.App == o.Upstream {
		return "upstream " + o.Upstream
	}
	return "app " + o.App + " (upstream " + o.Upstream + ")"
}

// command is edgeswitch's command verb for this app, for the hints in
// messages: with several apps, the app is its first argument.
func (o Options) command(verb string) string {
	if o.App != "" {
		return "edgeswitch " + verb + " " + o.App
	}
	return "edgeswitch " + verb
}

// systemctl and journalctl name the commands for the manager in use, for
// the hints in messages.
func (o Options) systemctl() string  { return o.withUser("systemctl") }
func (o Options) journalctl() string { return o.withUser("journalctl") }

// wantedBy is the target a slot's [Install] section names.
func (o Options) wantedBy() string {
	if o.UserManager {
		return "default.target"
	}
	return "multi-user.target"
}

func (o Options) withUser(cmd string) string {
	if o.UserManager {
		return cmd + " --user"
	}
	return cmd
}

// Defaults returns the documented default settings.
func Defaults() Options {
	return Options{
		Upstream:       "app",
		NginxConf:      "/etc/nginx/nginx.conf",
		NginxBin:       "nginx",
		NginxUnit:      "nginx.service",
		Unit:           "app@.service",
		Host:           "127.0.0.1",
		Ports:          [2]int{4000, 4001},
		HealthPath:     "/",
		HealthStatus:   "200-299",
		HealthInterval: 100 * time.Millisecond,
		HealthTimeout:  60 * time.Second,
		HealthScheme:   "http",
		ReloadTimeout:  10 * time.Second,
		DrainTimeout:   30 * time.Second,
		StateDir:       "/var/lib/edgeswitch",
		BakeMax5xx:     5,
		Mode:           "reload",
		HookTimeout:    5 * time.Minute,
	}
}

// socketMode reports whether traffic moves by a link, not a reload.
func (o Options) socketMode() bool { return o.Mode == "socket" }

// link is the socket-link setting, or its default.
func (o Options) link() string {
	return cmp.Or(o.SocketLink, filepath.Join(o.StateDir, o.Upstream+".sock"))
}

// checkSocket rejects socket-mode settings that cannot work.
func (o Options) checkSocket() error {
	bad := func(format string, a ...any) error { return Usage(fmt.Errorf(format, a...)) }
	switch {
	case o.Mode != "reload" && o.Mode != "socket":
		return bad("mode %q: set it to \"reload\" (rewrite the upstream and reload nginx) or \"socket\" (point a link at the new slot's socket, no reload)", o.Mode)
	case !o.socketMode() && (o.Socket != "" || o.SocketLink != ""):
		return bad("socket and socket-link are for mode = \"socket\": set mode too, or drop them")
	case !o.socketMode():
		return nil
	case o.Socket == "":
		return bad("mode = \"socket\" needs socket, where slot PORT listens, e.g. socket = \"/run/app/{port}.sock\"")
	case !filepath.IsAbs(o.Socket) || !strings.Contains(o.Socket, "{port}"):
		return bad("socket %q must be an absolute path with {port} in it, e.g. /run/app/{port}.sock", o.Socket)
	case !filepath.IsAbs(o.link()):
		return bad("socket-link %q must be an absolute path, e.g. /var/lib/edgeswitch/app.sock", o.SocketLink)
	case strings.ContainsAny(strings.ReplaceAll(o.Socket, "{port}", "")+o.link(), " \t\r\n;{}'\""):
		return bad("socket %q and socket-link %q go into nginx's config unquoted: use paths without blanks, quotes, ';' or braces", o.Socket, o.link())
	case filepath.Dir(o.link()) == filepath.Dir(o.Socket):
		return bad("socket-link %s is in the sockets' directory, which the app's unit makes (its user may write there, and at a reboot it is gone with the link): keep the default in the state dir, or another directory of root's", o.link())
	case o.Canary > 0:
		return bad("canary %d%%: socket mode has one link and no weights; drop canary (a bake alone watches the new slot) or set mode = \"reload\"", o.Canary)
	}
	return nil
}

// Check rejects settings that cannot work, before anything is touched.
func (o Options) Check() error {
	bad := func(format string, a ...any) error { return Usage(fmt.Errorf(format, a...)) }
	if err := CheckPorts(o.Ports[:]); err != nil {
		return err
	}
	switch {
	case !strings.Contains(o.Unit, "@.") && !strings.HasSuffix(o.Unit, "@"):
		return bad("unit %q is not a template unit; set unit to a name like app@.service (the instance is the port)", o.Unit)
	case !strings.HasPrefix(o.HealthPath, "/"):
		return bad("health-path %q must start with /", o.HealthPath)
	case o.HealthScheme != "http" && o.HealthScheme != "https":
		return bad("health-scheme %q: set it to \"http\" or \"https\"", o.HealthScheme)
	case o.HealthInsecure && o.HealthScheme != "https":
		return bad("health-insecure is for https slots: set health-scheme = \"https\" or drop it")
	case strings.ContainsAny(o.HealthHost, "/ \t\r\n"):
		return bad("health-host %q is not a host name; set it to the name the app routes by, e.g. app.example.com", o.HealthHost)
	case o.Canary < 0 || o.Canary > 99:
		return bad("canary %d: set the percent of requests the new slot gets during the bake, from 1 to 99", o.Canary)
	case o.Canary > 0 && o.Bake == 0:
		return bad("canary %d%% needs a bake, the time the new slot takes its share while it is watched: set bake too, e.g. --bake 5m", o.Canary)
	case o.BakeMax5xx < 0 || o.BakeMax5xx > 100:
		return bad("bake-max-5xx %g%% is not a share: set it from 0%% to 100%%, e.g. \"5%%\"", o.BakeMax5xx)
	case o.HealthInterval <= 0 || o.HealthTimeout <= 0 || o.ReloadTimeout <= 0 || o.DrainTimeout < 0 || o.Bake < 0:
		return bad("health-interval, health-timeout and reload-timeout must be positive, drain-timeout and bake not negative")
	case o.HookTimeout <= 0:
		return bad("hook-timeout %s: set how long a hook may run before it is killed, e.g. 5m", o.HookTimeout)
	case o.Upstream == "" || o.NginxConf == "" || o.NginxUnit == "" || o.StateDir == "":
		return bad("upstream, nginx-conf, nginx-unit and state-dir must not be empty")
	}
	if _, err := parseStatus(o.HealthStatus); err != nil {
		return bad("%v", err)
	}
	return o.checkSocket()
}

// CheckPorts refuses a ports setting that is not two different ports from
// 1 to 65535.
func CheckPorts(ports []int) error {
	if len(ports) != 2 {
		return Usage(errors.New("ports must list exactly two ports, e.g. --ports 4000,4001"))
	}
	for _, p := range ports {
		if p < 1 || p > 65535 {
			return Usage(fmt.Errorf("port %d is out of range; ports must be two different numbers from 1 to 65535", p))
		}
	}
	if ports[0] == ports[1] {
		return Usage(fmt.Errorf("both slot ports are %d; set ports to two different ports, e.g. [4000, 4001]", ports[0]))
	}
	return nil
}

// Slot returns the slot on port, or an error saying which ports are slots.
func (o Options) Slot(port int) (Slot, error) {
	for _, s := range o.Slots() {
		if s.Port == port {
			return s, nil
		}
	}
	return Slot{}, Usage(fmt.Errorf("--to %d is not a slot; pass --to %d or --to %d", port, o.Ports[0], o.Ports[1]))
}

// SlotUnit returns the unit of the slot on port: app@.service -> app@4001.service.
func (o Options) SlotUnit(port int) string {
	p := strconv.Itoa(port)
	if strings.HasSuffix(o.Unit, "@") {
		return o.Unit + p + ".service"
	}
	return strings.Replace(o.Unit, "@.", "@"+p+".", 1)
}

// statusRange is one accepted range of HTTP status codes.
type statusRange struct{ lo, hi int }

// parseStatus reads "200-299,301" into ranges.
func parseStatus(s string) ([]statusRange, error) {
	var rs []statusRange
	for part := range strings.SplitSeq(s, ",") {
		lo, hi, isRange := strings.Cut(strings.TrimSpace(part), "-")
		if !isRange {
			hi = lo
		}
		l, err1 := strconv.Atoi(lo)
		h, err2 := strconv.Atoi(hi)
		if err1 != nil || err2 != nil || l < 100 || h > 599 || l > h {
			return nil, fmt.Errorf("health-status %q: want codes or ranges like 200-299,301", s)
		}
		rs = append(rs, statusRange{l, h})
	}
	return rs, nil
}

// Systemd is the part of *dbus.Conn a switch uses, with go-systemd's own
// signatures so the real connection fits as it is. Restart appears only for
// app slots; nginx is only ever reloaded.
type Systemd interface {
	route.Systemd
	StartUnitContext(ctx context.Context, name string, mode string, ch chan<- string) (int, error)
	StopUnitContext(ctx context.Context, name string, mode string, ch chan<- string) (int, error)
	RestartUnitContext(ctx context.Context, name string, mode string, ch chan<- string) (int, error)
	// Enablement: the live slot starts at boot, the other does not.
	EnableUnitFilesContext(ctx context.Context, files []string, runtime bool, force bool) (bool, []dbus.EnableUnitFileChange, error)
	// No daemon-reload after them: the links are what a boot reads, and
	// systemd's UnitFileState follows them at once (a reload would add about
	// a second to every switch).
	DisableUnitFilesContext(ctx context.Context, files []string, runtime bool) ([]dbus.DisableUnitFileChange, error)
	// GetUnitFileStateContext is the manager's GetUnitFileState, which
	// go-systemd lacks (the CLI's connection adds it): "enabled",
	// "disabled", "static" (no [Install] section), ... from the links on
	// disk now; the UnitFileState property of a loaded unit is only as new
	// as the last daemon-reload.
	GetUnitFileStateContext(ctx context.Context, unit string) (string, error)
	// A hook runs in a transient scope of its own, and all in it is
	// killed at once: what a hook starts cannot outlive its time.
	StartTransientUnitContext(ctx context.Context, name string, mode string, properties []dbus.Property, ch chan<- string) (int, error)
	KillUnitWithTarget(ctx context.Context, name string, target dbus.Who, signal int32) error
}

// Env holds the effects a switch has on the world, as values so tests can
// replace any of them.
type Env struct {
	Systemd Systemd      // nil when D-Bus cannot be reached (check only)
	Run     nginx.Runner // runs nginx -t; nginx.ExecRunner in production
	Procs   nginx.Procs  // reads /proc for nginx's workers
	HTTP    *http.Client // health polls
	Now     func() time.Time
	Report  func(Event) // progress; nil reports nothing
	Login   string      // who runs the switch, for the history
	// NewRouter gives each switch its router; nil means route.Reload on
	// the effects above.
	NewRouter func(Options) Router
}

func (e Env) report(ev Event) {
	if e.Report != nil {
		e.Report(ev)
	}
}
