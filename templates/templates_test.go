package templates

import (
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/pelletier/go-toml/v2"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the templates")

// example is what edgeswitch init renders with the default settings.
var example = Data{App: "app", Host: "127.0.0.1", Ports: [2]int{4000, 4001}}

func render(t *testing.T, name string, d Data) []byte {
	t.Helper()
	out, err := Render(name, d)
	if err != nil {
		t.Fatalf("Render(%s): %v", name, err)
	}
	return out
}

func write(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestGolden shows every change to a rendered file in review: run
// go test ./templates -update and read the diff of testdata.
func TestGolden(t *testing.T) {
	for _, name := range []string{Config, Unit, Upstream} {
		t.Run(name, func(t *testing.T) {
			got := render(t, name, example)
			golden := filepath.Join("testdata", strings.TrimSuffix(name, ".tmpl")+".golden")
			if *update {
				write(t, golden, got)
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v; create it with go test ./templates -update", err)
			}
			if diff := cmp.Diff(string(want), string(got)); diff != "" {
				t.Errorf("%s differs from %s (-want +got); if that is intended, run go test ./templates -update:\n%s", name, golden, diff)
			}
		})
	}
}

// TestUnitPassesSystemdAnalyzeVerify checks the unit with systemd's own
// parser. systemd-analyze verify exits 0 on unknown keys and bad values
// (it only warns), so any output fails the test too. ExecStart points at
// /bin/true because verify also checks that the binary exists.
func TestUnitPassesSystemdAnalyzeVerify(t *testing.T) {
	bin, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skipf("no systemd-analyze: %v", err)
	}
	for _, d := range []Data{example, {App: "shop-web", Host: "::1", Ports: [2]int{5000, 5001}}} {
		t.Run(d.App, func(t *testing.T) {
			unit := string(render(t, Unit, d))
			execStart := regexp.MustCompile(`(?m)^ExecStart=.*$`)
			if n := len(execStart.FindAllString(unit, -1)); n != 1 {
				t.Fatalf("the unit has %d ExecStart= lines, want 1:\n%s", n, unit)
			}
			unit = execStart.ReplaceAllString(unit, "ExecStart=/bin/true --port %i")
			path := filepath.Join(t.TempDir(), d.App+"@.service")
			write(t, path, []byte(unit))
			out, err := exec.CommandContext(t.Context(), bin, "verify", "--man=no", path).CombinedOutput()
			if err != nil || len(out) > 0 {
				t.Errorf("systemd-analyze verify %s: %v\n%s\n%s", path, err, out, unit)
			}
		})
	}
}

// realNginx is where Debian's nginx-light puts nginx.
const realNginx = "/usr/sbin/nginx"

// TestUpstreamPassesNginxT includes the rendered upstream in a minimal
// nginx.conf whose server block is the location snippet from the file's own
// comment, so the advice is checked as well as the block.
func TestUpstreamPassesNginxT(t *testing.T) {
	if _, err := os.Stat(realNginx); err != nil {
		if testing.Short() {
			t.Skipf("no nginx binary (-short): %v", err)
		}
		t.Fatalf("no nginx binary; install nginx-light or run with -short: %v", err)
	}
	for _, d := range []Data{example, {App: "shop-web", Host: "::1", Ports: [2]int{5000, 5001}}} {
		t.Run(d.App, func(t *testing.T) {
			dir := t.TempDir()
			upstream := render(t, Upstream, d)
			var location []string
			for _, line := range strings.Split(string(upstream), "\n") {
				if snippet, ok := strings.CutPrefix(line, "#     "); ok {
					location = append(location, snippet)
				}
			}
			if len(location) == 0 || !strings.Contains(strings.Join(location, "\n"), "proxy_pass http://"+d.App+";") {
				t.Fatalf("no location snippet with proxy_pass http://%s in the comment:\n%s", d.App, upstream)
			}
			include := filepath.Join(dir, d.App+".conf")
			write(t, include, upstream)
			conf := filepath.Join(dir, "nginx.conf")
			write(t, conf, []byte(`pid `+dir+`/nginx.pid;
error_log `+dir+`/error.log;
events {}
http {
    access_log off;
    client_body_temp_path `+dir+`/body;
    proxy_temp_path `+dir+`/proxy;
    fastcgi_temp_path `+dir+`/fastcgi;
    uwsgi_temp_path `+dir+`/uwsgi;
    scgi_temp_path `+dir+`/scgi;
    include `+include+`;
    server {
        listen 127.0.0.1:18080;
`+strings.Join(location, "\n")+`
    }
}
`))
			out, err := exec.CommandContext(t.Context(), realNginx, "-t", "-q", "-c", conf).CombinedOutput()
			if err != nil || len(out) > 0 {
				t.Errorf("nginx -t -q -c %s: %v\n%s", conf, err, out)
			}
		})
	}
}

// TestConfigParses checks the example config as TOML, with its hook
// examples uncommented too. That every key is a setting of the CLI, with
// its default, is checked in cmd/edgeswitch, which knows the settings.
func TestConfigParses(t *testing.T) {
	text := string(render(t, Config, example))
	var got map[string]any
	if err := toml.Unmarshal([]byte(text), &got); err != nil {
		t.Fatalf("%v\n%s", err, text)
	}
	if got["upstream"] != "app" || got["unit"] != "app@.service" || !cmp.Equal(got["ports"], []any{int64(4000), int64(4001)}) {
		t.Errorf("upstream, unit and ports do not follow Data: %v", got)
	}
	hooks := regexp.MustCompile(`(?m)^# ((pre-start|post-switch|on-failure) = )`).ReplaceAllString(text, "$1")
	got = nil
	if err := toml.Unmarshal([]byte(hooks), &got); err != nil {
		t.Fatalf("with the hooks uncommented: %v\n%s", err, hooks)
	}
	for _, k := range []string{"pre-start", "post-switch", "on-failure"} {
		if list, ok := got[k].([]any); !ok || len(list) < 2 {
			t.Errorf("hook %s = %#v, want a command and its arguments", k, got[k])
		}
	}
}

func TestCheck(t *testing.T) {
	tests := []struct {
		name string
		data Data
		says string // empty: accepted
	}{
		{"the defaults", example, ""},
		{"a name with dots, dashes and underscores and a host name", Data{App: "shop.web_2-a", Host: "localhost", Ports: [2]int{1, 65535}}, ""},
		{"an IPv6 host", Data{App: "app", Host: "::1", Ports: [2]int{4000, 4001}}, ""},
		{"an empty name", Data{Host: "127.0.0.1", Ports: [2]int{4000, 4001}}, `app name ""`},
		{"a name with a slash", Data{App: "../app", Host: "127.0.0.1", Ports: [2]int{4000, 4001}}, `app name "../app"`},
		{"a name with a space", Data{App: "my app", Host: "127.0.0.1", Ports: [2]int{4000, 4001}}, `app name "my app"`},
		{"a name with @", Data{App: "app@", Host: "127.0.0.1", Ports: [2]int{4000, 4001}}, `app name "app@"`},
		{"a host with a semicolon", Data{App: "app", Host: "127.0.0.1;", Ports: [2]int{4000, 4001}}, `host "127.0.0.1;"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Render(Unit, tt.data)
			switch {
			case tt.says == "" && err != nil:
				t.Errorf("refused: %v", err)
			case tt.says != "" && (err == nil || !strings.Contains(err.Error(), tt.says)):
				t.Errorf("got error %v, want one with %q", err, tt.says)
			}
		})
	}
}

func TestRenderUnknownTemplate(t *testing.T) {
	if _, err := Render("nope.tmpl", example); err == nil {
		t.Error("no error for a template that does not exist")
	}
}

// A unit for a per-user manager must be wanted by a target that manager
// reaches at login, or enabling it would bring nothing back.
func TestUnitForAUserManagerIsWantedByDefaultTarget(t *testing.T) {
	d := example
	d.UserManager = true
	unit, err := Render(Unit, d)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(unit), "\n[Install]\nWantedBy=default.target\n") {
		t.Errorf("unit for a user manager:\n%s", unit)
	}
}
