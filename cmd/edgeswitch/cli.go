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
	"time"

	"github.com/alecthomas/kong"
	"github.com/edgeswitch/edgeswitch/swap"
)

// cli is the kong grammar: global settings, then one command.
type cli struct {
	Config  string           `group:"global" short:"c" placeholder:"FILE" help:"TOML file with the settings below as keys (default /etc/edgeswitch/edgeswitch.toml, or EDGESWITCH_CONFIG)."`
	Version kong.VersionFlag `group:"global" help:"Print the version and exit."`
	JSON    bool             `group:"global" help:"Print JSON lines on stdout instead of text."`

	// The settings every command shares, defined in swap.Options; their
	// names are the keys of the config file.
	swap.Options `embed:""`

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
	o := a.set.Options
	o.App = a.name
	if o.HookUser == "" && underSudo() {
		o.HookUser = os.Getenv("SUDO_UID") + ":" + os.Getenv("SUDO_GID") // never root on the caller's paths
	}
	return o, o.Check()
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
		return d.connected(), nil
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
	return d.connected(), nil
}

// connected is the environment with the systemd connection.
func (d *deps) connected() swap.Env {
	env := d.offline()
	env.Systemd, env.Router = d.conn, routerFor(d.conn)
	return env
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
		ProcRoot: "/proc",
		Router:   routerFor(nil),
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

// grammar is the kong grammar's options, then opts.
func grammar(opts ...kong.Option) []kong.Option {
	return append([]kong.Option{
		kong.Name("edgeswitch"),
		kong.Description("Zero-downtime blue/green switch between two app slots behind one nginx."),
		settingGroups,
		kong.Vars{"version": version},
	}, opts...)
}

// settingGroups orders the settings in --help after a command's own flags,
// the ones a person running it looks for first.
var settingGroups = kong.ExplicitGroups([]kong.Group{
	{Key: "nginx", Title: "nginx:"},
	{Key: "slots", Title: "Slots and health:"},
	{Key: "bake", Title: "Bake and canary:"},
	{Key: "socket", Title: "Socket mode:"},
	{Key: "hooks", Title: "Hooks:"},
	{Key: "state", Title: "State and systemd:"},
	{Key: "global", Title: "Config file and output:"},
})

// run parses args, runs the command and returns the exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	p := &parser{args: args, stdout: stdout, stderr: stderr, exit: -1}
	// The config file feeds the defaults of the real parse, so a first
	// parse finds which file and which command: kong knows which words are
	// flag values (a hook's "-c" is not the config flag).
	var first cli
	fctx, err := p.parse(&first)
	if p.exit >= 0 { // --help, --version
		return p.exit
	}
	if err != nil {
		fmt.Fprintf(stderr, "edgeswitch: %v; run edgeswitch --help for the usage\n", err)
		return 2
	}
	kctx, c, d, err := p.load(&first, fctx.Selected())
	if p.exit >= 0 {
		return p.exit
	}
	if err != nil {
		// In the command's own form: with --json, one JSON value on stdout.
		newPrinter(stdout, stderr, first.JSON).fail(swap.Usage(err))
		return 2
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

// parser parses one command line with edgeswitch's grammar.
type parser struct {
	args           []string
	stdout, stderr io.Writer
	exit           int // kong's exit code once it has exited (--help), else -1
}

func (p *parser) parse(c *cli, opts ...kong.Option) (*kong.Context, error) {
	k, err := kong.New(c, grammar(append([]kong.Option{
		kong.UsageOnError(),
		kong.Writers(p.stdout, p.stderr),
		kong.Exit(func(code int) { p.exit = code }),
	}, opts...)...)...)
	if err != nil {
		panic(err) // the grammar is wrong: a bug, not a user error
	}
	return k.Parse(p.args)
}

// load reads the config file, parses the command line once per app of it,
// each with that app's settings, and picks the apps the command acts on. It
// returns the parse the command runs on: that of the last app it acts on.
func (p *parser) load(first *cli, command *kong.Node) (*kong.Context, *cli, *deps, error) {
	act, acts := command.Target.Addr().Interface().(actor)
	if acts && underSudo() {
		if err := sudoConfig(first.Config); err != nil {
			return nil, nil, nil, err
		}
	}
	conf, err := loadConfig(configPath(first.Config))
	if err == nil && acts {
		err = conf.trusted()
	}
	if err != nil {
		return nil, nil, nil, err
	}
	names := conf.names()
	if len(names) == 0 {
		names = []string{""} // one app, named by its upstream
	}
	parsed, ctxs := map[string]*cli{}, map[string]*kong.Context{}
	for _, name := range names {
		c := &cli{}
		kctx, err := p.parse(c, kong.Resolvers(conf.forApp(name)))
		if p.exit >= 0 {
			return nil, nil, nil, nil
		}
		if err == nil && acts && underSudo() {
			err = sudoFlags(kctx)
		}
		if err != nil {
			return nil, nil, nil, err
		}
		parsed[name], ctxs[name] = c, kctx
	}
	var apps []app
	last := names[len(names)-1]
	if acts {
		if apps, err = selectApps(command.Name, act, conf, parsed); err == nil {
			err = distinctApps(parsed)
		}
		if err != nil {
			return nil, nil, nil, err
		}
		last = apps[len(apps)-1].name
	}
	c := parsed[last]
	d := &deps{out: newPrinter(p.stdout, p.stderr, c.JSON), config: conf.describe(), apps: apps, names: conf.names()}
	if len(d.names) == 0 {
		d.names = []string{c.Upstream}
	}
	return ctxs[last], c, d, nil
}
