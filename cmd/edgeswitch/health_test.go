package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/alecthomas/kong"

	"github.com/edgeswitch/edgeswitch/swap"
)

// TestBadHealthInput runs the CLI in-process on health settings that must
// be refused before anything is touched: exit 2 and one line with the fix.
func TestBadHealthInput(t *testing.T) {
	dir := t.TempDir()
	conf := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	const emptyBody = `edgeswitch: health-body is empty: set it to the text the health answer's body must contain, e.g. health-body = "ok", or drop it`
	const insecure = `edgeswitch: health-insecure is for https slots: set health-scheme = "https" or drop it`
	tests := []struct {
		name string
		args []string
		says string
	}{
		{"an empty health-body in the file", []string{"-c", conf("body.toml", "health-body = \"\"\n"), "switch"}, emptyBody},
		{"an empty health-body in an app's table", []string{"-c", conf("appbody.toml", "[app.tpi]\nports = [5000, 5001]\nhealth-body = \"\"\n"), "switch", "tpi"}, emptyBody},
		{"an empty --health-body", []string{"switch", "--health-body="}, emptyBody},
		{"health-insecure without https", []string{"-c", conf("insecure.toml", "health-insecure = true\n"), "switch"}, insecure},
		{"--health-insecure with http", []string{"switch", "--health-insecure", "--health-scheme", "http"}, insecure},
		{"a scheme that is not http or https", []string{"-c", conf("scheme.toml", "health-scheme = \"tcp\"\n"), "switch"}, `edgeswitch: health-scheme "tcp": set it to "http" or "https"`},
		{"a URL as health-host", []string{"switch", "--health-host", "https://tpi.example.com/"}, `edgeswitch: health-host "https://tpi.example.com/" is not a host name`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(t.Context(), tt.args, &stdout, &stderr)
			if code != 2 || !strings.HasPrefix(stderr.String(), tt.says) || strings.Count(stderr.String(), "\n") != 1 {
				t.Errorf("exit %d, want 2 with the one line %q in:\n%s", code, tt.says, stderr.String())
			}
		})
	}
}

// TestHealthSettingsReachTheOptions reads the health settings from the
// file, at the top and in an app's table, and from flags.
func TestHealthSettingsReachTheOptions(t *testing.T) {
	p := filepath.Join(t.TempDir(), "es.toml")
	text := "health-scheme = \"https\"\nhealth-insecure = true\n\n[app.api]\nports = [4000, 4001]\n\n" +
		"[app.tpi]\nports = [5000, 5001]\nhealth-host = \"tpi.example.com\"\nhealth-body = \"tpi\"\n"
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	conf, err := loadConfig(p, true)
	if err != nil {
		t.Fatal(err)
	}
	parse := func(app string, args ...string) swap.Options {
		t.Helper()
		var c cli
		parser, err := kong.New(&c, grammar(kong.Resolvers(conf.forApp(app)))...)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := parser.Parse(append([]string{"switch", app}, args...)); err != nil {
			t.Fatal(err)
		}
		return c.Options
	}
	for _, tt := range []struct {
		app  string
		args []string
		host string
		body string
	}{
		{"api", nil, "", ""},
		{"tpi", nil, "tpi.example.com", "tpi"},
		{"tpi", []string{"--health-host", "tpi.internal", "--health-body", "profile: tpi"}, "tpi.internal", "profile: tpi"},
	} {
		o := parse(tt.app, tt.args...)
		if err := o.Check(); err != nil {
			t.Fatalf("%s %q: %v", tt.app, tt.args, err)
		}
		body := ""
		if o.HealthBody != nil {
			body = *o.HealthBody
		}
		if o.HealthScheme != "https" || !o.HealthInsecure || o.HealthHost != tt.host || body != tt.body {
			t.Errorf("%s %q: scheme %q, insecure %v, host %q, body %q; want https, true, %q, %q",
				tt.app, tt.args, o.HealthScheme, o.HealthInsecure, o.HealthHost, body, tt.host, tt.body)
		}
	}
}
