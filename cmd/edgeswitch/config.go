package main

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"sort"
	"strings"

	"github.com/alecthomas/kong"
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

// tomlResolver feeds kong the settings of a flat TOML file whose keys are
// the long flag names.
type tomlResolver struct {
	path   string
	values map[string]any
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
	return &tomlResolver{path: path, values: values}, nil
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

// Validate refuses keys that are not settings, so a typo is not ignored.
func (r *tomlResolver) Validate(app *kong.Application) error {
	var names []string
	for _, f := range app.Flags {
		if !notSetting[f.Name] {
			names = append(names, f.Name)
		}
	}
	var unknown []string
	for k := range r.values {
		if !slices.Contains(names, k) {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) == 0 {
		return nil
	}
	sort.Strings(unknown)
	sort.Strings(names)
	return fmt.Errorf("config file %s: unknown setting %s; the settings are: %s",
		r.path, strings.Join(unknown, ", "), strings.Join(names, ", "))
}

// Resolve returns the file's value for a flag: lists as they are, other
// values as the text kong would parse from the command line.
func (r *tomlResolver) Resolve(_ *kong.Context, _ *kong.Path, flag *kong.Flag) (any, error) {
	v, ok := r.values[flag.Name]
	if !ok {
		return nil, nil
	}
	if list, ok := v.([]any); ok {
		return list, nil // kong decodes a list into a slice flag as it is
	}
	return fmt.Sprint(v), nil
}
