package swap

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/coreos/go-systemd/v22/dbus"
)

// Options are the settings of a switch, each defined here once: its name
// (the long flag and the config file's key), its default, its help and its
// group are the CLI's kong tags. Two tags of edgeswitch's own say who may
// set it: sudo:"config" settings run a program, pick a path, a unit or
// what is switched, or set root's limits (what counts as healthy, how long
// root waits), so through sudo they come only from the root-owned config
// file; scope:"host" settings are the same for every app of a host, so
// they may only be set at the top of the file.
type Options struct {
	// App names the app in the state dir (lock, pending record) and the
	// history: its [app.NAME] in the config file. "" for a file with one
	// app, which is then named after its upstream.
	App string `kong:"-"`

	Upstream      string        `group:"nginx" sudo:"config" default:"app" help:"Name of the nginx upstream block to manage."`
	NginxConf     string        `group:"nginx" sudo:"config" scope:"host" default:"/etc/nginx/nginx.conf" help:"Main nginx config; the upstream is found in it or its includes."`
	NginxBin      string        `group:"nginx" sudo:"config" scope:"host" default:"nginx" help:"nginx binary used for nginx -t -c <nginx-conf>."`
	NginxUnit     string        `group:"nginx" sudo:"config" scope:"host" default:"nginx.service" help:"systemd unit that is reloaded (never restarted)."`
	ReloadTimeout time.Duration `group:"nginx" sudo:"config" default:"10s" help:"Wait this long for nginx's new workers."`
	DrainTimeout  time.Duration `group:"nginx" sudo:"config" default:"30s" help:"Wait this long for old nginx workers to finish."`

	Unit           string        `group:"slots" sudo:"config" default:"app@.service" help:"systemd template unit of the app; the instance is the port."`
	Host           string        `group:"slots" sudo:"config" default:"127.0.0.1" help:"Address of the slots."`
	Ports          []int         `group:"slots" sudo:"config" default:"4000,4001" help:"The two slot ports."`
	HealthPath     string        `group:"slots" sudo:"config" default:"/" help:"Path polled on the starting slot."`
	HealthStatus   string        `group:"slots" sudo:"config" default:"200-299" help:"Accepted status codes, e.g. 200-299,301."`
	HealthInterval time.Duration `group:"slots" sudo:"config" default:"100ms" help:"Time between health polls."`
	HealthTimeout  time.Duration `group:"slots" sudo:"config" default:"60s" help:"Give up on the new slot after this."`
	HealthHost     string        `group:"slots" sudo:"config" placeholder:"HOST" help:"Host header of the health request, for apps that route by host (default: the slot's address)."`
	HealthScheme   string        `group:"slots" sudo:"config" default:"http" placeholder:"http|https" help:"https for slots that only speak TLS."`
	HealthInsecure bool          `group:"slots" sudo:"config" help:"With health-scheme https: accept the slot's certificate unverified (self-signed)."`
	// HealthBody is nil for any body; set, it must not be empty.
	HealthBody *string `group:"slots" sudo:"config" placeholder:"TEXT" help:"Text the health answer's body must contain (in its first 64 KiB)."`
	// Warm-up requests go to the new slot once it is healthy, before
	// traffic moves, so that its first users do not pay its cold start (a
	// JSP compiled on first use, a cold JIT).
	Warmup         []string `group:"slots" sep:"none" placeholder:"PATH" help:"Path requested on the new slot after it is healthy and before traffic moves, so that its first users do not pay its cold start; repeat the flag per path. An answer outside health-status fails the switch."`
	WarmupRequests int      `group:"slots" default:"0" placeholder:"N" help:"How many warm-up requests in all, spread over the warmup paths and a few connections at once (0: one per path; at most 10000)."`

	Bake       time.Duration `group:"bake" default:"0s" help:"After the reload, keep the old slot running this long while the new one is watched (health, unit, nginx's failed requests to it); at its first failure traffic goes back to the old slot. 0s: no bake."`
	Canary     int           `group:"bake" default:"0" placeholder:"PERCENT" help:"With bake: the percent of requests (1-99) the new slot gets during the bake, both slots listed with nginx weights; then all. 0: none."`
	BakeMax5xx Percent       `name:"bake-max-5xx" group:"bake" sudo:"config" default:"5%" placeholder:"PERCENT" help:"During a bake, the share of 5xx answers from the new slot (over at least 20, read from an access log that records $upstream_addr and $upstream_status) that rolls back."`

	Mode       string `group:"socket" sudo:"config" default:"reload" placeholder:"reload|socket" help:"How traffic moves: reload rewrites the upstream and reloads nginx; socket points a link the upstream lists at the new slot's socket, with no reload."`
	Socket     string `group:"socket" sudo:"config" placeholder:"PATH" help:"Socket mode: where slot PORT listens, with {port} in it, e.g. /run/app/{port}.sock."`
	SocketLink string `group:"socket" sudo:"config" placeholder:"PATH" help:"Socket mode: the symlink the upstream lists as server unix:PATH, pointed at the live slot's socket (default: <state-dir>/<upstream>.sock)."`

	// The hooks are argv lists run without a shell, with EDGESWITCH_APP,
	// EDGESWITCH_UPSTREAM, EDGESWITCH_FROM and EDGESWITCH_TO set.
	PreStart   []string `group:"hooks" sudo:"config" sep:"none" placeholder:"ARG" help:"Hook run before the new slot starts (e.g. install the build); an argv list, no shell; repeat the flag per argument. Failing aborts the switch."`
	PostSwitch []string `group:"hooks" sudo:"config" sep:"none" placeholder:"ARG" help:"Hook run after a switch; an argv list, no shell. Failing only warns."`
	OnFailure  []string `group:"hooks" sudo:"config" sep:"none" placeholder:"ARG" help:"Hook run after a failed or rolled-back switch, with the error in EDGESWITCH_ERROR; an argv list, no shell. Failing only warns."`
	// HookUser is "" for edgeswitch's own user; the CLI fills in the sudo
	// caller's SUDO_UID:SUDO_GID.
	HookTimeout time.Duration `group:"hooks" sudo:"config" default:"5m" help:"Kill a hook, and every process it started, after this: a pre-start hook then fails the switch, a later one only warns."`
	HookUser    string        `group:"hooks" sudo:"config" placeholder:"USER" help:"Run the hooks as this user, a name, UID or UID:GID (default: the sudo caller, else edgeswitch's own user); through sudo, from the config file only."`

	StateDir    string `group:"state" sudo:"config" scope:"host" default:"/var/lib/edgeswitch" help:"Directory for the lock and the history."`
	UserManager bool   `name:"user" group:"state" sudo:"config" scope:"host" help:"Talk to the per-user systemd manager (systemctl --user)."`
}

// healthBody is the text the health answer must contain, "" for any.
func (o Options) healthBody() string {
	if o.HealthBody == nil {
		return ""
	}
	return *o.HealthBody
}

// Percent is a share in percent, written "5%" (or "5").
type Percent float64

// UnmarshalText reads "5%" or "5".
func (p *Percent) UnmarshalText(text []byte) error {
	v, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(string(text)), "%"), 64)
	if err != nil {
		return fmt.Errorf("%q is not a percent: set it like \"5%%\"", text)
	}
	*p = Percent(v)
	return nil
}

func (p Percent) String() string { return strconv.FormatFloat(float64(p), 'f', -1, 64) + "%" }

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

// Systemctl and journalctl name the commands for the manager in use, for
// the hints in messages.
func (o Options) Systemctl() string  { return o.withUser("systemctl") }
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

// SocketMode reports whether traffic moves by a link, not a reload.
func (o Options) SocketMode() bool { return o.Mode == "socket" }

// Link is the socket-link setting, or its default.
func (o Options) Link() string {
	return cmp.Or(o.SocketLink, filepath.Join(o.StateDir, o.Upstream+".sock"))
}

// checkSocket rejects socket-mode settings that cannot work.
func (o Options) checkSocket() error {
	bad := func(format string, a ...any) error { return Usage(fmt.Errorf(format, a...)) }
	switch {
	case o.Mode != "reload" && o.Mode != "socket":
		return bad("mode %q: set it to \"reload\" (rewrite the upstream and reload nginx) or \"socket\" (point a link at the new slot's socket, no reload)", o.Mode)
	case !o.SocketMode() && (o.Socket != "" || o.SocketLink != ""):
		return bad("socket and socket-link are for mode = \"socket\": set mode too, or drop them")
	case !o.SocketMode():
		return nil
	case o.Socket == "":
		return bad("mode = \"socket\" needs socket, where slot PORT listens, e.g. socket = \"/run/app/{port}.sock\"")
	case !filepath.IsAbs(o.Socket) || !strings.Contains(o.Socket, "{port}"):
		return bad("socket %q must be an absolute path with {port} in it, e.g. /run/app/{port}.sock", o.Socket)
	case !filepath.IsAbs(o.Link()):
		return bad("socket-link %q must be an absolute path, e.g. /var/lib/edgeswitch/app.sock", o.SocketLink)
	case strings.ContainsAny(strings.ReplaceAll(o.Socket, "{port}", "")+o.Link(), " \t\r\n;{}'\""):
		return bad("socket %q and socket-link %q go into nginx's config unquoted: use paths without blanks, quotes, ';' or braces", o.Socket, o.Link())
	case filepath.Dir(o.Link()) == filepath.Dir(o.Socket):
		return bad("socket-link %s is in the sockets' directory, which the app's unit makes (its user may write there, and at a reboot it is gone with the link): keep the default in the state dir, or another directory of root's", o.Link())
	case o.Canary > 0:
		return bad("canary %d%%: socket mode has one link and no weights; drop canary (a bake alone watches the new slot) or set mode = \"reload\"", o.Canary)
	}
	return nil
}

// Check rejects settings that cannot work, before anything is touched.
func (o Options) Check() error {
	bad := func(format string, a ...any) error { return Usage(fmt.Errorf(format, a...)) }
	if err := CheckPorts(o.Ports); err != nil {
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
		return bad("bake-max-5xx %s is not a share: set it from 0%% to 100%%, e.g. \"5%%\"", o.BakeMax5xx)
	case o.WarmupRequests < 0 || o.WarmupRequests > maxWarmup:
		return bad("warmup-requests %d: set how many warm-up requests to send in all, from 0 (one per warmup path) to %d", o.WarmupRequests, maxWarmup)
	case o.WarmupRequests > 0 && len(o.Warmup) == 0:
		return bad("warmup-requests %d without warmup: set the paths to warm up too, e.g. --warmup /", o.WarmupRequests)
	case slices.ContainsFunc(o.Warmup, func(p string) bool { return !strings.HasPrefix(p, "/") }):
		return bad("warmup %q: each warm-up path must be absolute, e.g. /app/index.jsp", o.Warmup)
	case o.HealthBody != nil && *o.HealthBody == "":
		return bad(`health-body is empty: set it to the text the health answer's body must contain, e.g. health-body = "ok", or drop it`)
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
	GetUnitPropertiesContext(ctx context.Context, unit string) (map[string]interface{}, error)
	// GetServicePropertyContext reads a slot's ControlGroup: whose
	// processes may answer for it.
	GetServicePropertyContext(ctx context.Context, unit string, propertyName string) (*dbus.Property, error)
	StartUnitContext(ctx context.Context, name string, mode string, ch chan<- string) (int, error)
	StopUnitContext(ctx context.Context, name string, mode string, ch chan<- string) (int, error)
	RestartUnitContext(ctx context.Context, name string, mode string, ch chan<- string) (int, error)
	// ResetFailedUnitContext clears a slot's start limit, which rapid
	// switches reach (by default 5 starts in 10 s).
	ResetFailedUnitContext(ctx context.Context, name string) error
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
	Systemd  Systemd      // nil when D-Bus cannot be reached (check only)
	ProcRoot string       // where /proc is: who holds a lock
	HTTP     *http.Client // health polls
	Now      func() time.Time
	Report   func(Event) // progress; nil reports nothing
	Login    string      // who runs the switch, for the history
	// Router gives each switch, status or check a router of its own, for
	// the options' mode.
	Router func(Options) Router
}

func (e Env) report(ev Event) {
	if e.Report != nil {
		e.Report(ev)
	}
}
