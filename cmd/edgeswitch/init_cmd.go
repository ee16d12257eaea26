package main

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/alecthomas/kong"

	"github.com/edgeswitch/edgeswitch/internal/atomicfile"
	"github.com/edgeswitch/edgeswitch/swap"
	"github.com/edgeswitch/edgeswitch/templates"
)

// initCmd writes the three files a new host needs into one directory, the
// current one by default, so that trying it touches nothing under /etc: the
// files are examples to review and copy into place as the printed steps say.
// The mode setting picks their kind: with --mode socket the slots listen on
// unix sockets and the upstream lists the link.
type initCmd struct {
	Dir   string `default:"." placeholder:"DIR" help:"Directory to write edgeswitch.toml, <app>@.service and <app>.conf into (default: the current one); review them, then copy them into place as printed."`
	Force bool   `help:"Overwrite those files where they exist in DIR."`
	App   string `placeholder:"NAME" help:"Name of the app: the upstream block, the unit <app>@.service and the slot directories /srv/<app>/<port>, and with --mode socket the sockets /run/<app>/<port>.sock (default: the upstream setting)."`
}

// tomlDefaults are the defaults of the settings among flags, as TOML
// values by key, for the example config.
func tomlDefaults(flags []*kong.Flag) map[string]string {
	defaults := map[string]string{}
	for _, f := range flags {
		switch kind := f.Target.Kind(); {
		case notSetting[f.Name]:
		case kind == reflect.Bool: // false unless its tag says otherwise
			defaults[f.Name] = strconv.FormatBool(f.Default == "true")
		case !f.HasDefault:
		case kind == reflect.Int:
			defaults[f.Name] = f.Default
		case kind == reflect.Slice:
			defaults[f.Name] = "[" + strings.ReplaceAll(f.Default, ",", ", ") + "]"
		default: // text, durations, percents
			defaults[f.Name] = strconv.Quote(f.Default)
		}
	}
	return defaults
}

// initFile is one file init writes: the template, its name in DIR and
// where it is installed.
type initFile struct{ tmpl, name, dest string }

func (c *initCmd) Run(_ context.Context, g *cli, d *deps, k *kong.Context) error {
	app := c.App
	if app == "" {
		app = g.Upstream
	}
	if err := swap.CheckPorts(g.Ports); err != nil {
		return err
	}
	data := templates.Data{App: app, Host: g.Host, Ports: [2]int{g.Ports[0], g.Ports[1]}, UserManager: g.UserManager,
		Mode: g.Mode, StateDir: g.StateDir, Defaults: tomlDefaults(k.Model.Flags)}
	if g.UserManager { // where the user manager makes the unit's RuntimeDirectory=
		data.RuntimeDir = cmp.Or(os.Getenv("XDG_RUNTIME_DIR"), fmt.Sprintf("/run/user/%d", os.Getuid()))
	}
	if err := data.Check(); err != nil {
		return swap.Usage(err)
	}
	files := []initFile{
		{templates.Config, "edgeswitch.toml", defaultConfig},
		{templates.Unit, app + "@.service", "/etc/systemd/system/" + app + "@.service"},
		{templates.Upstream, app + ".conf", "/etc/nginx/conf.d/" + app + ".conf"},
	}
	// Render and look for existing files before writing any, so that a
	// refusal changes nothing.
	texts := make([][]byte, len(files))
	var exist []string
	for i, f := range files {
		text, err := templates.Render(f.tmpl, data)
		if err != nil {
			return err
		}
		texts[i] = text
		path := filepath.Join(c.Dir, f.name)
		fi, err := os.Lstat(path)
		if err == nil && fi.Mode()&fs.ModeSymlink != 0 {
			return swap.Usage(fmt.Errorf("%s %w: remove it", path, atomicfile.ErrSymlink))
		}
		if err == nil {
			if i == 0 && c.App != "" && !c.Force {
				// One more app: its table goes into the settings there.
				if texts[0], err = addApp(path, data); err != nil {
					return err
				}
				continue
			}
			exist = append(exist, path)
		}
	}
	if len(exist) > 0 && !c.Force {
		verb := "exists"
		if len(exist) > 1 {
			verb = "exist"
		}
		return swap.Usage(fmt.Errorf("%s %s; pass --force to overwrite, or --dir DIR to write elsewhere", strings.Join(exist, ", "), verb))
	}
	dir, err := filepath.Abs(c.Dir)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := ownDir(dir); err != nil {
		return err
	}
	wrote := make([]string, len(files))
	for i, f := range files {
		wrote[i] = filepath.Join(dir, f.name)
		if err := atomicfile.WriteOwn(wrote[i], texts[i], 0o644); err != nil {
			return swap.Usage(err)
		}
	}
	if d.out.json {
		d.out.line(map[string]any{"wrote": wrote})
		return nil
	}
	nextSteps(d.out.stdout, dir, data, files, c.App != "")
	return nil
}

// ownDir refuses a --dir that is neither the caller's nor root's: its
// owner could swap what init writes there (a unit, nginx's include) for
// their own before it is installed, or plant links in it.
func ownDir(dir string) error {
	fi, err := os.Stat(dir)
	if err != nil {
		return err
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Uid != 0 && int(st.Uid) != os.Geteuid() {
		return swap.Usage(fmt.Errorf("--dir %s is owned by uid %d, not by you: init writes only into a directory of yours or root's; pass another --dir", dir, st.Uid))
	}
	return nil
}

// nextSteps tells where each file goes. cp -n, because an existing unit,
// upstream or config on the host is the user's and wins. With named (init
// --app), the commands take the app as their first argument.
func nextSteps(w io.Writer, dir string, data templates.Data, files []initFile, named bool) {
	config, unit, upstream := files[0], files[1], files[2]
	app := ""
	if named {
		app = " " + data.App
	}
	src := func(f initFile) string { return filepath.Join(dir, f.name) }
	// What socket mode says differently: where the app listens, what the
	// upstream lists, the proxy lines, what the first switch does.
	listen := "1. Edit %[2]s: ExecStart= (the command that runs the app on port %%i)\n   and User=."
	lists, proxy := "", `proxy_set_header Connection "";`
	first := "(this starts it and enables it, so that it comes back\n   after a reboot)"
	if data.SocketMode() {
		listen = "1. Edit %[2]s: ExecStart= (the command that runs the app on\n   its socket, " +
			data.Socket("%%i") + ", which it makes writable for nginx:\n   mode 0666) and User=."
		lists = "   It lists " + data.Link() + ", the link the first switch (step 4)\n" +
			"   makes. An upstream " + data.App + " that lists a port already is converted by\n" +
			"   that switch (one reload): remove its keepalive line first.\n"
		proxy = "proxy_set_header Upgrade $http_upgrade;\n" +
			"       proxy_set_header Connection $connection_upgrade;\n" +
			"   with the map $http_upgrade $connection_upgrade from the comment of\n" +
			"   " + upstream.name + " in http { }, unless nginx has it already."
		first = "(this starts it, points the link at its socket and\n   enables it, so that it comes back after a reboot)"
	}
	fmt.Fprintf(w, `Wrote %s, %s and %s.
Next steps, as root. cp -n copies only where no file exists yet; where one
does, compare it with the new one.

`+listen+` Then install it and let systemd load it:
       cp -n %[2]s %[4]s
       systemctl daemon-reload
2. Unless nginx already has an upstream %[5]s, install the upstream:
       cp -n %[3]s %[6]s
%[10]s   If nginx.conf does not include conf.d yet, add inside its http { } block:
       include /etc/nginx/conf.d/*.conf;
   and send the app's traffic to the upstream in your server block:
       proxy_pass http://%[5]s;
       proxy_http_version 1.1;
       %[11]s
3. Review edgeswitch.toml (health-path especially), then install it:
       mkdir -p %[7]s
       cp -n %[1]s %[8]s
4. Install the first build in /srv/%[5]s/%[9]d/current, check the setup and
   put slot %[9]d live %[12]s:
       edgeswitch check%[13]s
       edgeswitch switch%[13]s --to %[9]d
`, src(config), src(unit), src(upstream), unit.dest, data.App, upstream.dest,
		filepath.Dir(config.dest), config.dest, data.Ports[0], lists, proxy, first, app)
}

// addApp returns the settings file at path with data's app added as an
// [app.NAME] table, leaving the other apps as they are.
func addApp(path string, data templates.Data) ([]byte, error) {
	conf, err := loadConfig(path, true)
	if err != nil {
		return nil, err
	}
	switch names := conf.names(); {
	case len(names) == 0:
		first, _ := conf.values["upstream"].(string)
		return nil, swap.Usage(fmt.Errorf("%s describes one app, with no [app.NAME] table: move that app's own settings (upstream, unit, ports, hooks) into [app.%s], then run edgeswitch init --app %s again",
			path, cmp.Or(first, "NAME"), data.App))
	case slices.Contains(names, data.App):
		return nil, swap.Usage(fmt.Errorf("%s has an [app.%s] already; pick another name, or --force to write the files anew", path, data.App))
	}
	want := fmt.Sprint([]int64{int64(data.Ports[0]), int64(data.Ports[1])})
	for _, name := range conf.names() {
		ports, ok := conf.apps[name]["ports"]
		if !ok {
			ports = conf.values["ports"]
		}
		if list, ok := ports.([]any); ok && fmt.Sprint(list) == want {
			return nil, swap.Usage(fmt.Errorf("app %s in %s uses ports %v already: pass --ports with two others for app %s", name, path, list, data.App))
		}
	}
	table, err := templates.Render(templates.AppTable, data)
	if err != nil {
		return nil, err
	}
	old, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return append(old, table...), nil
}
