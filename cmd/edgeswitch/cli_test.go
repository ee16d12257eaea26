package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
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
