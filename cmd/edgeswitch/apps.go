package main

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/edgeswitch/edgeswitch/swap"
)

// commandApp is the app the command line names, if any.
func commandApp(c *cli) string {
	for _, a := range []appArg{c.Switch.appArg, c.Rollback.appArg, c.Status.appArg, c.Check.appArg} {
		if a.App != "" {
			return a.App
		}
	}
	return ""
}

// selectApps picks the apps a command acts on: the one it names, the only
// one, or for status and check all of them. switch and rollback act on one
// app, so with several they must name it.
func selectApps(command, named string, conf *tomlResolver, parsed map[string]*cli) ([]app, error) {
	names := conf.names()
	if len(names) == 0 { // a file without [app.NAME] tables is one app, named by its upstream
		c := parsed[""]
		if named != "" && named != c.Upstream {
			return nil, swap.Usage(fmt.Errorf("no app %s: %s describes one app, upstream %s; leave the app out or add [app.%s] tables", named, conf.path, c.Upstream, named))
		}
		return []app{{set: c}}, nil
	}
	if named != "" {
		if !slices.Contains(names, named) {
			return nil, swap.Usage(fmt.Errorf("no app %s in %s; the apps are: %s", named, conf.path, strings.Join(names, ", ")))
		}
		return []app{{name: named, set: parsed[named]}}, nil
	}
	cmd, _, _ := strings.Cut(command, " ")
	if len(names) > 1 && (cmd == "switch" || cmd == "rollback") {
		return nil, swap.Usage(fmt.Errorf("%s acts on one app: name it, e.g. edgeswitch %s %s; the apps are: %s", cmd, cmd, names[0], strings.Join(names, ", ")))
	}
	var apps []app
	for _, n := range names {
		apps = append(apps, app{name: n, set: parsed[n]})
	}
	return apps, nil
}

// distinctApps refuses two apps that claim the same port, upstream or unit
// instance: a switch of one would move or stop the other's traffic.
func distinctApps(parsed map[string]*cli) error {
	if len(parsed) < 2 {
		return nil
	}
	owner := map[string]string{} // what is claimed -> the app that claims it
	for _, name := range slices.Sorted(maps.Keys(parsed)) {
		o, err := parsed[name].options()
		if err != nil {
			return swap.Usage(fmt.Errorf("app %s: %w", name, err))
		}
		claims := []string{"upstream " + o.Upstream}
		for _, s := range o.Slots() {
			claims = append(claims, "address "+s.Addr, "unit "+s.Unit)
		}
		for _, c := range claims {
			if other, ok := owner[c]; ok {
				return swap.Usage(fmt.Errorf("apps %s and %s both claim %s; give each app its own ports, upstream and unit in its [app.NAME] table", other, name, c))
			}
			owner[c] = name
		}
	}
	return nil
}

// appsCmd prints the config file's apps, for the completion scripts to
// offer as the commands' first argument.
type appsCmd struct{}

func (appsCmd) Run(d *deps) error {
	for _, n := range d.names {
		fmt.Fprintln(d.out.stdout, n)
	}
	return nil
}
