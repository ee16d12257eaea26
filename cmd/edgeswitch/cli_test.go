package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/alecthomas/kong"
	"github.com/google/go-cmp/cmp"

	"github.com/edgeswitch/edgeswitch/swap"
)

// TestBadInput runs the CLI in-process on input that must be refused before
// anything is touched: exit 2 and a one-line message naming the thing and
// the fix.
func TestBadInput(t *testing.T) {
	dir := t.TempDir()
	conf := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name string
		args []string
		says string
	}{
		{"--to is not a slot", []string{"switch", "--to", "5000"}, "--to 5000 is not a slot; pass --to 4000 or --to 4001"},
		{"--to is not a number", []string{"switch", "--to", "blue"}, `--to: expected a valid 64 bit int but got "blue"`},
		{"both ports equal", []string{"switch", "--ports", "4000,4000"}, "both slot ports are 4000"},
		{"three ports", []string{"switch", "--ports", "4000,4001,4002"}, "exactly two ports"},
		{"a config file that is missing", []string{"-c", filepath.Join(dir, "nope.toml"), "switch"}, "nope.toml: no such file"},
		{"a config file that does not parse", []string{"-c", conf("bad.toml", "upstream = \"app\"\nports = [4000,\n"), "switch"}, "bad.toml:2:"},
		{"an unknown setting", []string{"-c", conf("typo.toml", "helth-path = \"/up\"\n"), "switch"}, "unknown setting helth-path"},
		{"a command flag in the config file", []string{"-c", conf("to.toml", "to = 4001\n"), "switch"}, "unknown setting to"},
		{"a bad value in the config file", []string{"-c", conf("val.toml", "health-interval = \"soon\"\n"), "switch"}, "health-interval"},
		{"an unknown command", []string{"deploy"}, "unexpected argument deploy"},
		{"a canary without a bake", []string{"switch", "--canary", "10"}, "canary 10% needs a bake"},
		{"a canary out of range", []string{"switch", "--canary", "150", "--bake", "1m"}, "canary 150: set the percent"},
		{"a 5xx share that is no percent", []string{"switch", "--bake-max-5xx", "five"}, `--bake-max-5xx: "five" is not a percent: set it like "5%"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(t.Context(), tt.args, &stdout, &stderr)
			if code != 2 || !strings.Contains(stderr.String(), tt.says) {
				t.Errorf("exit %d, want 2 with %q in:\n%s", code, tt.says, stderr.String())
			}
		})
	}
}

// TestJSONErrorsAreOneValue: with --json, a refusal before the command
// runs is one JSON object on stdout, as a script parsing it expects.
func TestJSONErrorsAreOneValue(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nope.toml")
	for _, cmd := range []string{"status", "check", "switch"} {
		t.Run(cmd, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(t.Context(), []string{"-c", missing, cmd, "--json"}, &stdout, &stderr)
			var got struct {
				Error string
				Exit  int
			}
			dec := json.NewDecoder(&stdout)
			if err := dec.Decode(&got); err != nil || code != 2 || got.Exit != 2 || !strings.Contains(got.Error, "nope.toml: no such file") || dec.More() {
				t.Errorf("exit %d (%v), want 2 and one object {error, exit: 2}; stdout:\n%s", code, err, stdout.String())
			}
		})
	}
}

func TestConfigFileFeedsTheSettingsAndFlagsOverrideIt(t *testing.T) {
	p := filepath.Join(t.TempDir(), "es.toml")
	text := "upstream = \"shop\"\nports = [5000, 5001]\nhealth-interval = \"250ms\"\nuser = true\n"
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	// --to 4000 is not a slot once the file sets the ports to 5000 and 5001.
	code := run(t.Context(), []string{"-c", p, "switch", "--to", "4000"}, &stdout, &stderr)
	if code != 2 || !strings.Contains(stderr.String(), "pass --to 5000 or --to 5001") {
		t.Errorf("ports from the file were not used: exit %d\n%s", code, stderr.String())
	}
	stderr.Reset()
	code = run(t.Context(), []string{"-c", p, "switch", "--ports", "4000,4001", "--to", "5000"}, &stdout, &stderr)
	if code != 2 || !strings.Contains(stderr.String(), "pass --to 4000 or --to 4001") {
		t.Errorf("--ports did not override the file: exit %d\n%s", code, stderr.String())
	}
}

func TestConfigPath(t *testing.T) {
	for _, tt := range []struct {
		flag, env, want string
		explicit        bool
	}{
		{"", "", defaultConfig, false},
		{"a.toml", "", "a.toml", true},
		{"", "env.toml", "env.toml", true},
		{"flag.toml", "env.toml", "flag.toml", true},
	} {
		t.Setenv("EDGESWITCH_CONFIG", tt.env)
		got, explicit := configPath(tt.flag)
		if got != tt.want || explicit != tt.explicit {
			t.Errorf("configPath(%q) with EDGESWITCH_CONFIG=%q = %q, %v; want %q, %v", tt.flag, tt.env, got, explicit, tt.want, tt.explicit)
		}
	}
}

// twoApps is a config file for two apps on one host, as README shows it.
const twoApps = `nginx-conf = "/etc/nginx/nginx.conf"
health-path = "/health"

[app.api]
unit = "api@.service"
ports = [4000, 4001]

[app.tpi]
unit = "tpi@.service"
ports = [5000, 5001]
health-body = "tpi"
`

// TestSeveralAppsInOneFile: each app gets the top level under its own
// table, switch and rollback must name one, and what cannot work together
// is refused before anything is touched.
func TestSeveralAppsInOneFile(t *testing.T) {
	dir := t.TempDir()
	conf := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	text := strings.Replace(twoApps, "health-body = \"tpi\"\n", "", 1)
	good := conf("apps.toml", text)
	for _, tt := range []struct {
		name string
		args []string
		says string
	}{
		{"switch without an app", []string{"-c", good, "switch"}, "switch acts on one app: name it, e.g. edgeswitch switch api; the apps are: api, tpi"},
		{"rollback without an app", []string{"-c", good, "rollback"}, "rollback acts on one app"},
		{"an app that does not exist", []string{"-c", good, "switch", "web"}, "no app web in " + good + "; the apps are: api, tpi"},
		{"an app's own ports", []string{"-c", good, "switch", "tpi", "--to", "4000"}, "--to 4000 is not a slot; pass --to 5000 or --to 5001"},
		{"two apps on one port", []string{"-c", conf("port.toml", strings.Replace(text, "[5000, 5001]", "[5000, 4001]", 1)), "status"}, "apps api and tpi both claim address 127.0.0.1:4001"},
		{"two apps on one upstream", []string{"-c", conf("up.toml", text+"upstream = \"api\"\n"), "status"}, "apps api and tpi both claim upstream api"},
		{"two apps on one unit instance", []string{"-c", conf("unit.toml", strings.NewReplacer(`"tpi@.service"`, `"api@.service"`, "[5000, 5001]", "[4000, 4001]\nhost = \"127.0.0.2\"").Replace(text)), "check"}, "apps api and tpi both claim unit api@4000.service"},
		{"an unknown key in an app's table", []string{"-c", conf("typo.toml", text+"helth-path = \"/\"\n"), "status"}, "[app.tpi]: unknown setting helth-path"},
		{"a host-wide key in an app's table", []string{"-c", conf("host.toml", text+"state-dir = \"/tmp/x\"\n"), "status"}, "[app.tpi]: state-dir is the same for every app on a host: set it at the top of the file"},
		{"an app name that is no unit name", []string{"-c", conf("name.toml", "[app.\"my app\"]\nports = [4000, 4001]\n"), "status"}, `[app.my app]: app name "my app"`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(t.Context(), tt.args, &stdout, &stderr)
			if code != 2 || !strings.Contains(stderr.String(), tt.says) || strings.Count(stderr.String(), "\n") != 1 {
				t.Errorf("exit %d, want 2 with one line saying %q:\n%s", code, tt.says, stderr.String())
			}
		})
	}

	// Each app's settings: its table over the top level, its upstream named
	// after it.
	r, err := loadConfig(good, true)
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]swap.Options{
		"api": {Upstream: "api", Unit: "api@.service", Ports: []int{4000, 4001}, HealthPath: "/health"},
		"tpi": {Upstream: "tpi", Unit: "tpi@.service", Ports: []int{5000, 5001}, HealthPath: "/health"},
	} {
		var c cli
		p, err := kong.New(&c, grammar(kong.Resolvers(r.forApp(name)))...)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := p.Parse([]string{"status", name}); err != nil {
			t.Fatal(err)
		}
		got := swap.Options{Upstream: c.Upstream, Unit: c.Unit, Ports: c.Ports, HealthPath: c.HealthPath}
		if d := cmp.Diff(want, got); d != "" {
			t.Errorf("settings of app %s (-want +got):\n%s", name, d)
		}
	}
}

// An upstream at the top of a file with several apps would name them all
// alike.
func TestATopLevelUpstreamWithAppsIsRefused(t *testing.T) {
	p := filepath.Join(t.TempDir(), "apps.toml")
	if err := os.WriteFile(p, []byte("upstream = \"app\"\n"+twoApps), 0o644); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	if code := run(t.Context(), []string{"-c", p, "status"}, &stdout, &stderr); code != 2 || !strings.Contains(stderr.String(), "upstream at the top would give every app the same upstream") {
		t.Errorf("exit %d\n%s", code, stderr.String())
	}
}

// TestSwitchHelpLeadsWithItsOwnFlags: a person running switch looks for
// --to, --dry-run and --keep-old, so they come before the settings, which
// follow in their groups.
func TestSwitchHelpLeadsWithItsOwnFlags(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run(t.Context(), []string{"-c", os.DevNull, "switch", "--help"}, &stdout, &stderr); code != 0 {
		t.Fatalf("switch --help: exit %d\n%s", code, stderr.String())
	}
	help := stdout.String()
	order := []string{"--to=PORT", "--dry-run", "--keep-old",
		"nginx:", "--upstream=", "Slots and health:", "--health-path=", "Bake and canary:", "--bake=",
		"Socket mode:", "--socket=", "Hooks:", "--pre-start=", "State and systemd:", "--state-dir="}
	at := 0
	for _, want := range order {
		i := strings.Index(help[at:], want)
		if i < 0 {
			t.Fatalf("switch --help has no %q after %q:\n%s", want, help[:at], help)
		}
		at += i
	}
}
