package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/user"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/alecthomas/kong"
	"github.com/edgeswitch/edgeswitch/nginx"
	"github.com/edgeswitch/edgeswitch/swap"
)

// cli is the kong grammar: global settings, then one command.
type cli struct {
	Config  string           `short:"c" placeholder:"FILE" help:"TOML file with the settings below as keys (default /etc/edgeswitch/edgeswitch.toml, or EDGESWITCH_CONFIG)."`
	Version kong.VersionFlag `help:"Print the version and exit."`
	JSON    bool             `help:"Print JSON lines on stdout instead of text."`

	settings `embed:""`

	Switch   switchCmd   `cmd:"" help:"Move traffic to the other slot (or --to PORT): start it, wait until healthy, rewrite the upstream, nginx -t, reload, drain, stop the old slot."`
	Rollback rollbackCmd `cmd:"" help:"Switch back to the slot that was live before the last switch; instant when it still runs (--keep-old)."`
	Status   statusCmd   `cmd:"" help:"Show the live slot, each slot's unit and health, nginx's workers and the last switches."`
	Check    checkCmd    `cmd:"" help:"Check everything switch verifies before acting, as a checklist; changes nothing. Exit 0 when all pass, 2 otherwise."`
	Init     initCmd     `cmd:"" help:"Write an example config, a template unit and an upstream include into --dir (default: the current directory) and print where to install them. Overwrites nothing without --force."`

	Completion completionCmd `cmd:"" help:"Print a completion script for bash, zsh or fish on stdout. Install: edgeswitch completion bash > /etc/bash_completion.d/edgeswitch; edgeswitch completion zsh > /usr/local/share/zsh/site-functions/_edgeswitch; edgeswitch completion fish > ~/.config/fish/completions/edgeswitch.fish."`
	Man        manCmd        `cmd:"" help:"Print the man page (roff, section 1) on stdout: edgeswitch man > /usr/local/share/man/man1/edgeswitch.1."`
	VersionCmd versionCmd    `cmd:"" name:"version" help:"Print the version, as --version does."`
	Apps       appsCmd       `cmd:"" hidden:"" help:"Print the apps of the config file, one a line, for shell completion."`
}

// settings are the options every command shares; their names are the keys
// of the config file.
type settings struct {
	Upstream       string        `default:"${upstream}" help:"Name of the nginx upstream block to manage."`
	NginxConf      string        `default:"${nginx_conf}" help:"Main nginx config; the upstream is found in it or its includes."`
	NginxBin       string        `default:"${nginx_bin}" help:"nginx binary used for nginx -t -c <nginx-conf>."`
	NginxUnit      string        `default:"${nginx_unit}" help:"systemd unit that is reloaded (never restarted)."`
	Unit           string        `default:"${unit}" help:"systemd template unit of the app; the instance is the port."`
	Host           string        `default:"${host}" help:"Address of the slots."`
	Ports          []int         `default:"${ports}" help:"The two slot ports."`
	HealthPath     string        `default:"${health_path}" help:"Path polled on the starting slot."`
	HealthStatus   string        `default:"${health_status}" help:"Accepted status codes, e.g. 200-299,301."`
	HealthInterval time.Duration `default:"${health_interval}" help:"Time between health polls."`
	HealthTimeout  time.Duration `default:"${health_timeout}" help:"Give up on the new slot after this."`
	HealthHost     string        `placeholder:"HOST" help:"Host header of the health request, for apps that route by host (default: the slot's address)."`
	HealthScheme   string        `default:"${health_scheme}" placeholder:"http|https" help:"https for slots that only speak TLS."`
	HealthInsecure bool          `help:"With health-scheme https: accept the slot's certificate unverified (self-signed)."`
	HealthBody     *string       `placeholder:"TEXT" help:"Text the health answer's body must contain (in its first 64 KiB)."`
	ReloadTimeout  time.Duration `default:"${reload_timeout}" help:"Wait this long for nginx's new workers."`
	DrainTimeout   time.Duration `default:"${drain_timeout}" help:"Wait this long for old nginx workers to finish."`
	Bake           time.Duration `default:"${bake}" help:"After the reload, keep the old slot running this long while the new one is watched (health, unit, nginx's failed requests to it); at its first failure traffic goes back to the old slot. 0s: no bake."`
	Canary         int           `default:"0" placeholder:"PERCENT" help:"With bake: the percent of requests (1-99) the new slot gets during the bake, both slots listed with nginx weights; then all. 0: none."`
	BakeMax5xx     string        `name:"bake-max-5xx" default:"${bake_max_5xx}" placeholder:"PERCENT" help:"During a bake, the share of 5xx answers from the new slot (over at least 20, read from an access log that records $upstream_addr and $upstream_status) that rolls back."`
	Mode           string        `default:"${mode}" placeholder:"reload|socket" help:"How traffic moves: reload rewrites the upstream and reloads nginx; socket points a link the upstream lists at the new slot's socket, with no reload."`
	Socket         string        `placeholder:"PATH" help:"Socket mode: where slot PORT listens, with {port} in it, e.g. /run/app/{port}.sock."`
	SocketLink     string        `placeholder:"PATH" help:"Socket mode: the symlink the upstream lists as server unix:PATH, pointed at the live slot's socket (default: <state-dir>/<upstream>.sock)."`
	StateDir       string        `default:"${state_dir}" help:"Directory for the lock and the history."`
	User           bool          `help:"Talk to the per-user systemd manager (systemctl --user)."`
	PreStart       []string      `sep:"none" placeholder:"ARG" help:"Hook run before the new slot starts (e.g. install the build); an argv list, no shell; repeat the flag per argument. Failing aborts the switch."`
	PostSwitch     []string      `sep:"none" placeholder:"ARG" help:"Hook run after a switch; an argv list, no shell. Failing only warns."`
	OnFailure      []string      `sep:"none" placeholder:"ARG" help:"Hook run after a failed or rolled-back switch, with the error in EDGESWITCH_ERROR; an argv list, no shell. Failing only warns."`
	HookTimeout    time.Duration `default:"${hook_timeout}" group:"hooks" help:"Kill a hook, and every process it started, after this: a pre-start hook then fails the switch, a later one only warns."`
	HookUser       string        `placeholder:"USER" group:"hooks" help:"Run the hooks as this user, a name, UID or UID:GID (default: the sudo caller, else edgeswitch's own user); through sudo, from the config file only."`
}

// options turns the settings into swap's options.
func (s settings) options() (swap.Options, error) {
	if err := swap.CheckPorts(s.Ports); err != nil {
		return swap.Options{}, err
	}
	o := swap.Options{
		Upstream: s.Upstream, NginxConf: s.NginxConf, NginxBin: s.NginxBin, NginxUnit: s.NginxUnit,
		Unit: s.Unit, Host: s.Host, Ports: [2]int{s.Ports[0], s.Ports[1]},
		HealthPath: s.HealthPath, HealthStatus: s.HealthStatus,
		HealthInterval: s.HealthInterval, HealthTimeout: s.HealthTimeout,
		HealthHost: s.HealthHost, HealthScheme: s.HealthScheme, HealthInsecure: s.HealthInsecure,
		ReloadTimeout: s.ReloadTimeout, DrainTimeout: s.DrainTimeout, Bake: s.Bake, Canary: s.Canary, StateDir: s.StateDir,
		UserManager: s.User, PreStart: s.PreStart, PostSwitch: s.PostSwitch, OnFailure: s.OnFailure,
		HookTimeout: s.HookTimeout, HookUser: s.HookUser,
		Mode: s.Mode, Socket: s.Socket, SocketLink: s.SocketLink,
	}
	if o.HookUser == "" && underSudo() {
		o.HookUser = os.Getenv("SUDO_UID") + ":" + os.Getenv("SUDO_GID") // never root on the caller's paths
	}
	if s.HealthBody != nil { // set, unlike swap's "" for any body
		if *s.HealthBody == "" {
			return swap.Options{}, swap.Usage(errors.New(`health-body is empty: set it to the text the health answer's body must contain, e.g. health-body = "ok", or drop it`))
		}
		o.HealthBody = *s.HealthBody
	}
	max5xx, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(s.BakeMax5xx), "%"), 64)
	if err != nil {
		return swap.Options{}, swap.Usage(fmt.Errorf("bake-max-5xx %q is not a percent: set it like \"5%%\"", s.BakeMax5xx))
	}
	o.BakeMax5xx = max5xx
	return o, o.Check()
}

// appArg is the app a command acts on, the first argument.
type appArg struct {
	App string `arg:"" optional:"" placeholder:"APP" help:"The app, as an [app.NAME] table of the config file names it; may be left out when the file describes one app."`
}

type switchCmd struct {
	appArg
	To      *int `placeholder:"PORT" help:"Slot to move traffic to (default: the one that is not live)."`
	DryRun  bool `help:"Show the config diff and change nothing."`
	KeepOld bool `help:"Leave the old slot running, for an instant rollback."`
}

func (c *switchCmd) Run(ctx context.Context, d *deps) error {
	req := swap.Request{DryRun: c.DryRun, KeepOld: c.KeepOld}
	o, env, err := d.setup(ctx, func(o swap.Options) error {
		if c.To != nil {
			if _, err := o.Slot(*c.To); err != nil {
				return err
			}
		}
		return needRoot("switch", c.DryRun, o.UserManager)
	})
	if err != nil {
		return err
	}
	if c.To != nil {
		req.To = *c.To
	}
	res, err := swap.Switch(ctx, o, req, env)
	if err == nil {
		d.out.result(res, c.DryRun)
	}
	return err
}

type rollbackCmd struct {
	appArg
	DryRun  bool `help:"Show the config diff and change nothing."`
	KeepOld bool `help:"Leave the slot rolled back from running."`
}

func (c *rollbackCmd) Run(ctx context.Context, d *deps) error {
	o, env, err := d.setup(ctx, func(o swap.Options) error { return needRoot("rollback", c.DryRun, o.UserManager) })
	if err != nil {
		return err
	}
	res, err := swap.Rollback(ctx, o, swap.Request{DryRun: c.DryRun, KeepOld: c.KeepOld}, env)
	if err == nil {
		d.out.result(res, c.DryRun)
	}
	return err
}

type statusCmd struct{ appArg }

// Run shows each app the command names (all of them when it names none).
func (c *statusCmd) Run(ctx context.Context, d *deps) error {
	var sts []*swap.Status
	atRisk := false
	for _, a := range d.apps {
		o, err := a.options()
		if err != nil {
			return err
		}
		env, err := d.env(ctx, o.UserManager)
		if err != nil {
			return err
		}
		st, err := swap.ReadStatus(ctx, o, env)
		if err != nil {
			return err
		}
		sts = append(sts, st)
		atRisk = atRisk || len(st.Problems) > 0
	}
	d.out.statuses(sts)
	if atRisk {
		return errAtRisk
	}
	return nil
}

// versionCmd is --version as a command, as scripts and the design name it.
type versionCmd struct{}

func (versionCmd) Run(d *deps) error {
	fmt.Fprintln(d.out.stdout, version)
	return nil
}

// errAtRisk is status's exit 1; the problems above say what to run.
var errAtRisk = errors.New("traffic is at risk; see the problems above")

type checkCmd struct{ appArg }

// Run checks each app the command names (all of them when it names none).
func (c *checkCmd) Run(ctx context.Context, d *deps) error {
	failed := false
	for i, a := range d.apps {
		if len(d.apps) > 1 {
			if i > 0 {
				d.out.blank()
			}
			d.out.heading("app " + a.name)
		}
		items := c.items(ctx, d, a)
		d.out.checklist(items)
		failed = failed || slices.ContainsFunc(items, func(it swap.CheckItem) bool { return !it.OK })
	}
	if failed {
		return errChecks
	}
	return nil
}

func (c *checkCmd) items(ctx context.Context, d *deps, a app) []swap.CheckItem {
	items := []swap.CheckItem{{Name: "config file", OK: true, Detail: d.config}}
	o, err := a.options()
	if err != nil {
		return append(items, swap.CheckItem{Name: "settings", Detail: err.Error()})
	}
	env, err := d.env(ctx, o.UserManager)
	items = append(items, swap.CheckItem{Name: "D-Bus reachable", OK: err == nil, Detail: errText(err, "connected")})
	if err != nil {
		env = d.offline()
	}
	return append(items, swap.Check(ctx, o, env)...)
}

// errChecks is check's exit 2; the checklist already said what failed.
var errChecks = swap.Usage(errors.New("some checks failed; see above"))

func errText(err error, ok string) string {
	if err != nil {
		return err.Error()
	}
	return ok
}

// deps builds the real effects on demand, so that --help and bad usage
// never need D-Bus.
type deps struct {
	out    *printer
	conn   *manager
	config string   // which config file was read, for check
	apps   []app    // what the command acts on, in order
	names  []string // every app of the config file
}

// app is one app of the config file with its settings as parsed for it.
type app struct {
	name string // its [app.NAME]; "" for a file that describes one app
	set  *cli
}

func (a app) options() (swap.Options, error) {
	o, err := a.set.options()
	o.App = a.name
	return o, err
}

// setup turns the settings of the one app a switch acts on into options,
// checks them (and with check, what the command adds) before connecting to
// D-Bus, then connects.
func (d *deps) setup(ctx context.Context, check func(swap.Options) error) (swap.Options, swap.Env, error) {
	o, err := d.apps[0].options()
	if err == nil && check != nil {
		err = check(o)
	}
	if err != nil {
		return o, swap.Env{}, err
	}
	env, err := d.env(ctx, o.UserManager)
	return o, env, err
}

func (d *deps) env(ctx context.Context, userManager bool) (swap.Env, error) {
	if d.conn != nil { // user is host-wide: one connection serves every app
		env := d.offline()
		env.Systemd = d.conn
		return env, nil
	}
	which := "system"
	if userManager {
		which = "user"
	}
	// Not ctx: godbus closes a connection when its context ends, and a
	// rollback after Ctrl-C still needs to stop the slot it started.
	conn, err := connect(context.WithoutCancel(ctx), userManager)
	if err != nil {
		return swap.Env{}, swap.Usage(fmt.Errorf("cannot reach the %s systemd manager over D-Bus: %w; run on the host that runs nginx (with --user for a per-user manager)", which, err))
	}
	d.conn = conn
	env := d.offline()
	env.Systemd = conn
	return env, nil
}

// offline is the environment without a systemd connection.
func (d *deps) offline() swap.Env {
	name := fmt.Sprint(os.Getuid())
	if u, err := user.Current(); err == nil {
		name = u.Username
	}
	if caller := os.Getenv("SUDO_USER"); underSudo() && caller != "" {
		name = caller // who asked, not root
	}
	return swap.Env{
		Run:   nginx.ExecRunner,
		Procs: nginx.Procs{Root: "/proc"},
		HTTP: &http.Client{
			Transport: &http.Transport{DisableKeepAlives: true},
			// A redirect to the public URL would be answered by nginx,
			// that is by the old slot: judge the slot's own answer.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		Now:    time.Now,
		Report: d.out.event,
		Login:  name,
	}
}

// defaultVars gives kong the defaults of swap.Defaults, so that they are
// written down once.
func defaultVars() kong.Vars {
	d := swap.Defaults()
	return kong.Vars{
		"version":         version,
		"upstream":        d.Upstream,
		"nginx_conf":      d.NginxConf,
		"nginx_bin":       d.NginxBin,
		"nginx_unit":      d.NginxUnit,
		"unit":            d.Unit,
		"host":            d.Host,
		"ports":           fmt.Sprintf("%d,%d", d.Ports[0], d.Ports[1]),
		"health_path":     d.HealthPath,
		"health_status":   d.HealthStatus,
		"health_interval": d.HealthInterval.String(),
		"health_timeout":  d.HealthTimeout.String(),
		"health_scheme":   d.HealthScheme,
		"reload_timeout":  d.ReloadTimeout.String(),
		"drain_timeout":   d.DrainTimeout.String(),
		"bake":            d.Bake.String(),
		"bake_max_5xx":    strconv.FormatFloat(d.BakeMax5xx, 'f', -1, 64) + "%",
		"state_dir":       d.StateDir,
		"mode":            d.Mode,
		"hook_timeout":    d.HookTimeout.String(),
	}
}

// run parses args, runs the command and returns the exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	exit := -1
	parse := func(c *cli, opts ...kong.Option) (*kong.Context, error) {
		parser, err := kong.New(c, append([]kong.Option{
			kong.Name("edgeswitch"),
			kong.Description("Zero-downtime blue/green switch between two app slots behind one nginx."),
			kong.UsageOnError(),
			defaultVars(),
			kong.Writers(stdout, stderr),
			kong.Exit(func(code int) { exit = code }),
		}, opts...)...)
		if err != nil {
			panic(err) // the grammar is wrong: a bug, not a user error
		}
		return parser.Parse(args)
	}
	// The config file feeds the defaults of the real parse, so a first
	// parse finds which file: kong knows which words are flag values (a
	// hook's "-c" is not the config flag).
	var first cli
	fctx, err := parse(&first)
	if exit >= 0 || err != nil {
		if exit < 0 {
			fmt.Fprintf(stderr, "edgeswitch: %v; run edgeswitch --help for the usage\n", err)
			exit = 2
		}
		return exit
	}
	acts := actsOnSettings(fctx.Command())
	if acts && underSudo() {
		if err := sudoConfig(first.Config); err != nil {
			fmt.Fprintln(stderr, "edgeswitch:", err)
			return 2
		}
	}
	conf, err := loadConfig(configPath(first.Config))
	if err == nil && acts {
		err = conf.trusted()
	}
	if err != nil {
		fmt.Fprintln(stderr, "edgeswitch:", err)
		return 2
	}
	// One parse per app of the file, each with that app's settings; the
	// command runs on the last one parsed of those it names.
	var kctx *kong.Context
	var c *cli
	var apps []app
	all := map[string]*cli{}
	names := conf.names()
	if len(names) == 0 {
		names = []string{""} // one app, named by its upstream
	}
	for _, name := range names {
		c = &cli{}
		if kctx, err = parse(c, kong.Resolvers(conf.forApp(name))); exit >= 0 {
			return exit
		}
		if err == nil && acts && underSudo() {
			err = sudoFlags(kctx)
		}
		if err != nil {
			fmt.Fprintln(stderr, "edgeswitch:", err)
			return 2
		}
		all[name] = c
	}
	if acts {
		apps, err = selectApps(fctx.Command(), commandApp(&first), conf, all)
		if err == nil {
			err = distinctApps(all)
		}
		if err != nil {
			fmt.Fprintln(stderr, "edgeswitch:", err)
			return 2
		}
		if c = apps[len(apps)-1].set; len(all) > 1 {
			// Run binds the command to the parse of the app it names.
			kctx, _ = parse(c, kong.Resolvers(conf.forApp(apps[len(apps)-1].name)))
		}
	}
	d := &deps{out: newPrinter(stdout, stderr, c.JSON), config: conf.describe(), apps: apps, names: conf.names()}
	if len(d.names) == 0 {
		d.names = []string{c.Upstream}
	}
	defer func() {
		if d.conn != nil {
			d.conn.Close()
		}
	}()
	kctx.BindTo(ctx, (*context.Context)(nil))
	err = kctx.Run(c, d)
	if err != nil {
		d.out.fail(err)
	}
	return swap.ExitCode(err)
}
