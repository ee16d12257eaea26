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

// example is what edgeswitch init renders with the default settings, and
// socketExample what edgeswitch init --mode socket renders.
var (
	example       = Data{App: "app", Host: "127.0.0.1", Ports: [2]int{4000, 4001}}
	socketExample = Data{App: "app", Host: "127.0.0.1", Ports: [2]int{4000, 4001}, Mode: "socket"}
)

// examples are the data the checks by nginx and systemd render from: both
// modes, another name, an IPv6 host.
var examples = []Data{
	example,
	socketExample,
	{App: "shop-web", Host: "::1", Ports: [2]int{5000, 5001}},
	{App: "shop-web", Host: "::1", Ports: [2]int{5000, 5001}, Mode: "socket", StateDir: "/srv/state"},
}

// label names an example in subtest names.
func label(d Data) string { return d.App + "/" + d.withDefaults().Mode }

// defaults stand for the settings' defaults, which the CLI passes from its
// grammar (cmd/edgeswitch's tests check that it passes them all).
var defaults = map[string]string{
	"nginx-conf": `"/etc/nginx/nginx.conf"`, "nginx-bin": `"nginx"`, "nginx-unit": `"nginx.service"`,
	"health-path": `"/"`, "health-status": `"200-299"`, "health-interval": `"100ms"`, "health-timeout": `"60s"`,
	"health-scheme": `"http"`, "health-insecure": "false", "reload-timeout": `"10s"`, "drain-timeout": `"30s"`,
	"bake": `"0s"`, "canary": "0", "bake-max-5xx": `"5%"`, "user": "false", "warmup-requests": "0",
}

func render(t *testing.T, name string, d Data) []byte {
	t.Helper()
	if d.Defaults == nil {
		d.Defaults = defaults
	}
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
// go test ./templates -update and read the diff of testdata. The files of
// socket mode are in testdata/socket.
func TestGolden(t *testing.T) {
	for _, tt := range []struct {
		dir  string
		data Data
	}{{"testdata", example}, {"testdata/socket", socketExample}} {
		for _, name := range []string{Config, Unit, Upstream, AppTable} {
			t.Run(tt.dir+"/"+name, func(t *testing.T) {
				golden(t, filepath.Join(tt.dir, strings.TrimSuffix(name, ".tmpl")+".golden"), render(t, name, tt.data))
			})
		}
	}
}

// golden compares got with the file golden, or writes it with -update.
func golden(t *testing.T, golden string, got []byte) {
	t.Helper()
	if *update {
		if err := os.MkdirAll(filepath.Dir(golden), 0o755); err != nil {
			t.Fatal(err)
		}
		write(t, golden, got)
		return
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v; create it with go test ./templates -update", err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("the rendered file differs from %s (-want +got); if that is intended, run go test ./templates -update:\n%s", golden, diff)
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
	for _, d := range examples {
		t.Run(label(d), func(t *testing.T) {
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
// nginx.conf that holds the snippets from the file's own comment: the
// location in its server block, the others (log_format, map) in http { },
// so the advice is checked as well as the block.
func TestUpstreamPassesNginxT(t *testing.T) {
	if _, err := os.Stat(realNginx); err != nil {
		if testing.Short() {
			t.Skipf("no nginx binary (-short): %v", err)
		}
		t.Fatalf("no nginx binary; install nginx-light or run with -short: %v", err)
	}
	for _, d := range examples {
		t.Run(label(d), func(t *testing.T) {
			dir := t.TempDir()
			upstream := render(t, Upstream, d)
			location, http := snippets(string(upstream))
			if !strings.Contains(location, "proxy_pass http://"+d.App+";") {
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
`+strings.ReplaceAll(http, "/var/log/nginx/", dir+"/")+`
    include `+include+`;
    server {
        listen 127.0.0.1:18080;
`+location+`
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

// snippets returns the config in a rendered file's comments: runs of lines
// indented by four spaces or more after the '#'. The run that starts with
// location goes in a server block, the others in http { }.
func snippets(text string) (location, http string) {
	var runs [][]string
	in := false
	for _, line := range strings.Split(text, "\n") {
		code, ok := strings.CutPrefix(line, "#    ")
		if !ok {
			in = false
			continue
		}
		if !in {
			runs = append(runs, nil)
			in = true
		}
		runs[len(runs)-1] = append(runs[len(runs)-1], code)
	}
	for _, run := range runs {
		if strings.HasPrefix(strings.TrimSpace(run[0]), "location ") {
			location += strings.Join(run, "\n") + "\n"
		} else {
			http += strings.Join(run, "\n") + "\n"
		}
	}
	return location, http
}

// TestConfigParses checks the example config as TOML, with its hook
// examples uncommented too. That every key is a setting of the CLI, with
// its default, is checked in cmd/edgeswitch, which knows the settings.
func TestConfigParses(t *testing.T) {
	for _, d := range []Data{example, socketExample} {
		t.Run(label(d), func(t *testing.T) { configParses(t, d) })
	}
}

func configParses(t *testing.T, d Data) {
	text := string(render(t, Config, d))
	var got map[string]any
	if err := toml.Unmarshal([]byte(text), &got); err != nil {
		t.Fatalf("%v\n%s", err, text)
	}
	if got["upstream"] != "app" || got["unit"] != "app@.service" || !cmp.Equal(got["ports"], []any{int64(4000), int64(4001)}) {
		t.Errorf("upstream, unit and ports do not follow Data: %v", got)
	}
	socket := map[string]any{"mode": "socket", "socket": "/run/app/{port}.sock"}
	if d.Mode != "socket" {
		socket = map[string]any{}
	}
	for k := range got {
		if k == "mode" || k == "socket" {
			if got[k] != socket[k] {
				t.Errorf("%s = %v, want %v", k, got[k], socket[k])
			}
			delete(socket, k)
		}
	}
	if len(socket) > 0 {
		t.Errorf("no key for %v", socket)
	}
	hooks := regexp.MustCompile(`(?m)^# ((pre-start|post-switch|on-failure|hook-user|socket-link) = )`).ReplaceAllString(text, "$1")
	got = nil
	if err := toml.Unmarshal([]byte(hooks), &got); err != nil {
		t.Fatalf("with the hooks uncommented: %v\n%s", err, hooks)
	}
	for _, k := range []string{"pre-start", "post-switch", "on-failure"} {
		if list, ok := got[k].([]any); !ok || len(list) < 2 {
			t.Errorf("hook %s = %#v, want a command and its arguments", k, got[k])
		}
	}
	if link, ok := got["socket-link"]; d.Mode == "socket" && link != "/var/lib/edgeswitch/app.sock" || d.Mode != "socket" && ok {
		t.Errorf("socket-link, uncommented: %v", link)
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
		{"socket mode", socketExample, ""},
		{"socket mode with another state dir", Data{App: "app", Host: "127.0.0.1", Ports: [2]int{4000, 4001}, Mode: "socket", StateDir: "/srv/edgeswitch"}, ""},
		{"another mode", Data{App: "app", Host: "127.0.0.1", Ports: [2]int{4000, 4001}, Mode: "sockets"}, `mode "sockets"`},
		{"a relative state dir", Data{App: "app", Host: "127.0.0.1", Ports: [2]int{4000, 4001}, StateDir: "state"}, `state-dir "state"`},
		{"a state dir with a semicolon", Data{App: "app", Host: "127.0.0.1", Ports: [2]int{4000, 4001}, Mode: "socket", StateDir: "/srv/a;b"}, `state-dir "/srv/a;b"`},
		{"a runtime dir with a blank", Data{App: "app", Host: "127.0.0.1", Ports: [2]int{4000, 4001}, Mode: "socket", RuntimeDir: "/run/user/a b"}, `runtime directory "/run/user/a b"`},
		{"a link too long for a unix socket", Data{App: "app", Host: "127.0.0.1", Ports: [2]int{4000, 4001}, Mode: "socket", StateDir: "/" + strings.Repeat("d", 100)}, "longer than the 107 bytes"},
		{"a long state dir in reload mode, with no link", Data{App: "app", Host: "127.0.0.1", Ports: [2]int{4000, 4001}, StateDir: "/" + strings.Repeat("d", 100)}, ""},
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

// The unit of socket mode has systemd make the sockets' directory and keep
// it while either slot runs, passes the socket to the app, and the upstream
// lists the link, with no keepalive; for a per-user manager the directory
// is in its runtime directory.
func TestSocketModeFiles(t *testing.T) {
	for _, tt := range []struct {
		name   string
		data   Data
		socket string
		link   string
	}{
		{"the system manager", socketExample, "/run/app/%i.sock", "/var/lib/edgeswitch/app.sock"},
		{"a user manager", Data{App: "app", Host: "127.0.0.1", Ports: [2]int{4000, 4001}, Mode: "socket", UserManager: true, RuntimeDir: "/run/user/1000", StateDir: "/home/u/state"},
			"/run/user/1000/app/%i.sock", "/home/u/state/app.sock"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			unit := string(render(t, Unit, tt.data))
			for _, line := range []string{
				"ExecStart=/srv/app/%i/current/bin/app --socket " + tt.socket + "\n",
				"RuntimeDirectory=app\n", "RuntimeDirectoryPreserve=yes\n", "RuntimeDirectoryMode=0755\n",
			} {
				if !strings.Contains(unit, "\n"+line) {
					t.Errorf("the unit lacks %q:\n%s", line, unit)
				}
			}
			if strings.Contains(unit, "--port") || strings.Contains(unit, "PORT=") {
				t.Errorf("the unit of socket mode has the app listen on a port:\n%s", unit)
			}
			upstream := string(render(t, Upstream, tt.data))
			block := upstream[strings.Index(upstream, "\nupstream "):]
			if want := "\nupstream app {\n    server unix:" + tt.link + ";\n    keepalive 16;\n    keepalive_time 10s;\n    keepalive_timeout 10s;\n}\n"; block != want {
				t.Errorf("upstream block %q, want %q", block, want)
			}
			config := string(render(t, Config, tt.data))
			if want := "\nsocket = \"" + strings.ReplaceAll(tt.socket, "%i", "{port}") + "\"\n"; !strings.Contains(config, want) {
				t.Errorf("config lacks %q:\n%s", want, config)
			}
		})
	}
}

// A setting whose default the CLI did not pass fails the rendering rather
// than leave a hole in the example config.
func TestConfigWithoutADefaultFails(t *testing.T) {
	d := example
	d.Defaults = map[string]string{"nginx-conf": `"/etc/nginx/nginx.conf"`}
	if _, err := Render(Config, d); err == nil || !strings.Contains(err.Error(), "no default for nginx-bin") {
		t.Errorf("rendering without nginx-bin's default: %v", err)
	}
}
