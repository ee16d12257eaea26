package main

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/edgeswitch/edgeswitch/swap"
)

// actor is a command that acts on the apps of the config file, as opposed
// to one that only prints (man, completion, apps, version), which checks
// nothing of it.
type actor interface {
	// named is the app the command line names, "" for none.
	named() string
	// every reports whether, named none, the command takes every app of
	// the file (status, check) rather than exactly one (switch, rollback).
	every() bool
}

func (a appArg) named() string { return a.App }

func (switchCmd) every() bool   { return false }
func (rollbackCmd) every() bool { return false }
func (statusCmd) every() bool   { return true }
func (checkCmd) every() bool    { return true }
func (initCmd) named() string   { return "" }
func (initCmd) every() bool     { return true }

// selectApps picks the apps a command acts on: the one it names, the only
// one, or, for a command that takes every app, all of them.
func selectApps(command string, act actor, conf *tomlResolver, parsed map[string]*cli) ([]app, error) {
	names, named := conf.names(), act.named()
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
	if len(names) > 1 && !act.every() {
		return nil, swap.Usage(fmt.Errorf("%s acts on one app: name it, e.g. edgeswitch %s %s; the apps are: %s", command, command, names[0], strings.Join(names, ", ")))
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
		o, err := app{name, parsed[name]}.options()
		if err != nil {
			return swap.Usage(fmt.Errorf("app %s: %w", name, err))
		}
		claims := []string{"upstream " + o.Upstream}
		for _, s := range o.Slots() {
			claims = append(claims, "address "+s.Addr.String(), "unit "+s.Unit)
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
