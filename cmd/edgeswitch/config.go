package main

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"sort"
	"strings"

	"github.com/alecthomas/kong"
	"github.com/edgeswitch/edgeswitch/templates"
	"github.com/pelletier/go-toml/v2"
)

// defaultConfig is read when it exists and no other file is named.
const defaultConfig = "/etc/edgeswitch/edgeswitch.toml"

// configPath picks the config file: the -c flag, else EDGESWITCH_CONFIG,
// else the default path. It reports whether the file was asked for (then it
// must exist).
func configPath(flag string) (string, bool) {
	if flag != "" {
		return flag, true
	}
	if p := os.Getenv("EDGESWITCH_CONFIG"); p != "" {
		return p, true
	}
	return defaultConfig, false
}

// tomlResolver feeds kong the settings of a TOML file whose keys are the
// long flag names: at the top for every app, and in an [app.NAME] table for
// one app. A file without such tables is one app.
type tomlResolver struct {
	path   string
	values map[string]any            // the top level: defaults for every app
	apps   map[string]map[string]any // the [app.NAME] tables
	app    string                    // the app Resolve answers for; "" for the top level alone
}

// loadConfig reads the config file. A missing default file is no error; a
// file that does not parse is, with its line and column.
func loadConfig(path string, explicit bool) (*tomlResolver, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) && !explicit {
		return &tomlResolver{path: path}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("config file: %w; create it (edgeswitch init) or pass -c FILE", err)
	}
	values := map[string]any{}
	if err := toml.Unmarshal(data, &values); err != nil {
		var derr *toml.DecodeError
		if errors.As(err, &derr) {
			row, col := derr.Position()
			return nil, fmt.Errorf("config file %s:%d:%d: %s; fix that line", path, row, col, derr.Error())
		}
		return nil, fmt.Errorf("config file %s: %w", path, err)
	}
	r := &tomlResolver{path: path, values: values}
	if tables, ok := values["app"]; ok {
		delete(values, "app")
		apps, ok := tables.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("config file %s: app is not a table; write one [app.NAME] table per app", path)
		}
		r.apps = map[string]map[string]any{}
		for name, t := range apps {
			table, ok := t.(map[string]any)
			if !ok {
				return nil, fmt.Errorf("config file %s: app.%s is not a table; write [app.%s] and its settings below it", path, name, name)
			}
			if err := templates.CheckName(name); err != nil {
				return nil, fmt.Errorf("config file %s: [app.%s]: %w", path, name, err)
			}
			r.apps[name] = table
		}
	}
	return r, nil
}

// names returns the apps of the file, sorted; none for a file without
// [app.NAME] tables.
func (r *tomlResolver) names() []string { return slices.Sorted(maps.Keys(r.apps)) }

// forApp returns the resolver of one app: its table over the top level.
func (r *tomlResolver) forApp(name string) *tomlResolver {
	c := *r
	c.app = name
	return &c
}

// notSetting names the global flags that are not settings of the file.
var notSetting = map[string]bool{"help": true, "config": true, "version": true, "json": true}

// describe says which file the settings came from, for check.
func (r *tomlResolver) describe() string {
	if r.values == nil {
		return r.path + " absent: defaults and flags only"
	}
	return r.path + " parsed"
}

// Validate refuses keys that are not settings, so a typo is not ignored,
// and host-wide settings inside an app's table.
func (r *tomlResolver) Validate(app *kong.Application) error {
	var names []string
	hostWide := map[string]bool{}
	for _, f := range app.Flags {
		if !notSetting[f.Name] {
			names = append(names, f.Name)
		}
		// The same for every app on a host: only at the top of the file.
		hostWide[f.Name] = f.Tag.Get("scope") == "host"
	}
	sort.Strings(names)
	unknown := func(where string, values map[string]any) error {
		var bad []string
		for k := range values {
			if !slices.Contains(names, k) {
				bad = append(bad, k)
			}
		}
		if len(bad) == 0 {
			return nil
		}
		sort.Strings(bad)
		return fmt.Errorf("config file %s: %sunknown setting %s; the settings are: %s",
			r.path, where, strings.Join(bad, ", "), strings.Join(names, ", "))
	}
	if err := unknown("", r.values); err != nil {
		return err
	}
	if _, ok := r.values["upstream"]; ok && len(r.apps) > 0 {
		return fmt.Errorf("config file %s: upstream at the top would give every app the same upstream: set it in the [app.NAME] tables that differ from their NAME, or drop it", r.path)
	}
	for _, name := range r.names() {
		table := r.apps[name]
		if err := unknown("[app."+name+"]: ", table); err != nil {
			return err
		}
		for _, k := range slices.Sorted(maps.Keys(table)) {
			if hostWide[k] {
				return fmt.Errorf("config file %s: [app.%s]: %s is the same for every app on a host: set it at the top of the file", r.path, name, k)
			}
		}
	}
	return nil
}

// Resolve returns the file's value for a flag: lists as they are, other
// values as the text kong would parse from the command line.
func (r *tomlResolver) Resolve(_ *kong.Context, _ *kong.Path, flag *kong.Flag) (any, error) {
	v, ok := r.apps[r.app][flag.Name]
	if !ok {
		v, ok = r.values[flag.Name]
	}
	if !ok && r.app != "" && flag.Name == "upstream" {
		return r.app, nil // an app's upstream is named after it unless it says otherwise
	}
	if !ok {
		return nil, nil
	}
	if list, ok := v.([]any); ok {
		return list, nil // kong decodes a list into a slice flag as it is
	}
	return fmt.Sprint(v), nil
}
