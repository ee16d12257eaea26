package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"unicode"

	"github.com/alecthomas/kong"
	"github.com/google/go-cmp/cmp"
	"github.com/pelletier/go-toml/v2"

	"github.com/edgeswitch/edgeswitch/swap"
	"github.com/edgeswitch/edgeswitch/templates"
)

// runInit runs the CLI in-process.
func runInit(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errs bytes.Buffer
	code = run(t.Context(), args, &out, &errs)
	return code, out.String(), errs.String()
}

// files lists the names in dir, to see that no temp file is left behind.
func files(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

func TestInitWritesTheFilesAndOverwritesOnlyWithForce(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "new") // init creates it
	code, stdout, stderr := runInit(t, "init", "--dir", dir)
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	if diff := cmp.Diff([]string{"app.conf", "app@.service", "edgeswitch.toml"}, files(t, dir)); diff != "" {
		t.Errorf("files in DIR (-want +got):\n%s", diff)
	}
	data := templates.Data{App: "app", Host: "127.0.0.1", Ports: [2]int{4000, 4001}, Defaults: grammarDefaults(t)}
	for name, tmpl := range map[string]string{"edgeswitch.toml": templates.Config, "app@.service": templates.Unit, "app.conf": templates.Upstream} {
		want, err := templates.Render(tmpl, data)
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(string(want), string(got)); diff != "" {
			t.Errorf("%s is not the rendered %s (-want +got):\n%s", name, tmpl, diff)
		}
		if fi, err := os.Stat(filepath.Join(dir, name)); err != nil || fi.Mode().Perm() != 0o644 {
			t.Errorf("%s: mode %v, %v; want 0644", name, fi.Mode(), err)
		}
	}
	for _, step := range []string{
		"cp -n " + dir + "/app@.service /etc/systemd/system/app@.service\n",
		"systemctl daemon-reload\n",
		"cp -n " + dir + "/app.conf /etc/nginx/conf.d/app.conf\n",
		"include /etc/nginx/conf.d/*.conf;\n",
		"proxy_pass http://app;\n",
		"cp -n " + dir + "/edgeswitch.toml /etc/edgeswitch/edgeswitch.toml\n",
		"edgeswitch check\n",
		"edgeswitch switch --to 4000\n",
	} {
		if !strings.Contains(stdout, step) {
			t.Errorf("next steps lack %q:\n%s", step, stdout)
		}
	}
	for _, socket := range []string{"link", "Upgrade", ".sock"} {
		if strings.Contains(stdout, socket) {
			t.Errorf("next steps of the reload mode mention %q, of socket mode:\n%s", socket, stdout)
		}
	}

	edited := filepath.Join(dir, "app@.service")
	if err := os.WriteFile(edited, []byte("edited\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, stderr = runInit(t, "init", "--dir", dir)
	if code != 2 || !strings.Contains(stderr, edited) || !strings.Contains(stderr, "exist; pass --force") {
		t.Errorf("without --force: exit %d, want 2 naming %s and --force:\n%s", code, edited, stderr)
	}
	if b, _ := os.ReadFile(edited); string(b) != "edited\n" {
		t.Errorf("without --force the file was overwritten: %q", b)
	}

	code, _, stderr = runInit(t, "init", "--dir", dir, "--force")
	if b, _ := os.ReadFile(edited); code != 0 || string(b) == "edited\n" {
		t.Errorf("with --force: exit %d, file %q\n%s", code, b, stderr)
	}
	if diff := cmp.Diff([]string{"app.conf", "app@.service", "edgeswitch.toml"}, files(t, dir)); diff != "" {
		t.Errorf("files in DIR after --force (-want +got):\n%s", diff)
	}
}

func TestInitNamesAndPorts(t *testing.T) {
	tests := []struct {
		name   string
		args   []string
		app    string
		server string // the server line of the upstream
		first  string // the first switch in the next steps
	}{
		{"--app names the files and the commands", []string{"init", "--app", "shop"}, "shop", "server 127.0.0.1:4000;", "edgeswitch check shop\n       edgeswitch switch shop --to 4000"},
		{"the upstream setting is the default app", []string{"--upstream", "web", "init"}, "web", "server 127.0.0.1:4000;", "switch --to 4000"},
		{"the host and ports settings shape the files", []string{"init", "--host", "::1", "--ports", "5000,5001"}, "app", "server [::1]:5000;", "switch --to 5000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			code, stdout, stderr := runInit(t, append(tt.args, "--dir", dir)...)
			if code != 0 {
				t.Fatalf("exit %d\n%s", code, stderr)
			}
			want := []string{tt.app + ".conf", tt.app + "@.service", "edgeswitch.toml"}
			slices.Sort(want)
			if diff := cmp.Diff(want, files(t, dir)); diff != "" {
				t.Errorf("files (-want +got):\n%s", diff)
			}
			upstream, _ := os.ReadFile(filepath.Join(dir, tt.app+".conf"))
			if !strings.Contains(string(upstream), tt.server) {
				t.Errorf("upstream lacks %q:\n%s", tt.server, upstream)
			}
			if !strings.Contains(stdout, tt.first) {
				t.Errorf("next steps lack %q:\n%s", tt.first, stdout)
			}
		})
	}
}

func TestInitJSONListsTheFiles(t *testing.T) {
	dir := t.TempDir()
	code, stdout, stderr := runInit(t, "--json", "init", "--dir", dir)
	want := fmt.Sprintf(`{"wrote":[%q,%q,%q]}`+"\n",
		filepath.Join(dir, "edgeswitch.toml"), filepath.Join(dir, "app@.service"), filepath.Join(dir, "app.conf"))
	if code != 0 || stdout != want {
		t.Errorf("exit %d, stdout %q, want %q\n%s", code, stdout, want, stderr)
	}
}

func TestInitRefusesBadInputAndWritesNothing(t *testing.T) {
	for _, tt := range []struct {
		name string
		args []string
		says string
	}{
		{"an app name with a slash", []string{"init", "--app", "../etc/x"}, `app name "../etc/x"`},
		{"three ports", []string{"init", "--ports", "4000,4001,4002"}, "exactly two ports"},
		{"equal ports", []string{"init", "--ports", "4000,4000"}, "both slot ports are 4000"},
		{"an unknown mode", []string{"--mode", "sockets", "init"}, `mode "sockets"`},
		{"a link too long for a unix socket", []string{"--mode", "socket", "--state-dir", "/" + strings.Repeat("d", 100), "init"}, "longer than the 107 bytes"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			code, _, stderr := runInit(t, append(tt.args, "--dir", dir)...)
			if code != 2 || !strings.Contains(stderr, tt.says) {
				t.Errorf("exit %d, want 2 with %q in:\n%s", code, tt.says, stderr)
			}
			if names := files(t, dir); len(names) > 0 {
				t.Errorf("wrote %v", names)
			}
		})
	}
}

// kebab turns a settings field name into its flag and key, as kong does:
// HealthPath -> health-path.
func kebab(s string) string {
	var b strings.Builder
	for i, r := range s {
		if unicode.IsUpper(r) && i > 0 {
			b.WriteByte('-')
		}
		b.WriteRune(unicode.ToLower(r))
	}
	return b.String()
}

// hooksOn uncomments the examples of the example config: the hooks,
// hook-user, health-host, health-body and warmup.
var hooksOn = regexp.MustCompile(`(?m)^# ((pre-start|post-switch|on-failure|hook-user|health-host|health-body|warmup) = )`)

// socketKeys are the settings of socket mode, which the example config of
// the reload mode leaves out (its bytes are as they were before socket mode).
var socketKeys = []string{"mode", "socket", "socket-link"}

// grammarDefaults are the settings' defaults as init gives them to the
// templates.
func grammarDefaults(t *testing.T) map[string]string {
	t.Helper()
	k, err := kong.New(&cli{}, grammar()...)
	if err != nil {
		t.Fatal(err)
	}
	return tomlDefaults(k.Model.Flags)
}

// parseSettings parses the CLI's settings for switch as the CLI would,
// with file (if not "") as the config file, read for app (if not "").
func parseSettings(t *testing.T, file, app string) swap.Options {
	t.Helper()
	var opts []kong.Option
	if file != "" {
		conf, err := loadConfig(file, true)
		if err != nil {
			t.Fatal(err)
		}
		if app != "" {
			conf = conf.forApp(app)
		}
		opts = append(opts, kong.Resolvers(conf))
	}
	var c cli
	p, err := kong.New(&c, grammar(opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Parse([]string{"switch"}); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	return c.Options
}

// TestInitConfigHoldsEverySettingWithItsDefault keeps the example config in
// step with the settings struct: one key per setting (the hooks commented
// out; in reload mode, none for socket mode), none other; read through the
// CLI's own loader it changes nothing from the defaults but the mode, and
// its hook examples load as hooks.
func TestInitConfigHoldsEverySettingWithItsDefault(t *testing.T) {
	for _, mode := range []string{"reload", "socket"} {
		t.Run(mode, func(t *testing.T) { configHoldsEverySetting(t, mode) })
	}
}

func configHoldsEverySetting(t *testing.T, mode string) {
	dir := t.TempDir()
	if code, _, stderr := runInit(t, "--mode", mode, "init", "--dir", dir); code != 0 {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	path := filepath.Join(dir, "edgeswitch.toml")
	text, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	uncomment := hooksOn
	if mode == "socket" {
		uncomment = regexp.MustCompile(`(?m)^# ((pre-start|post-switch|on-failure|hook-user|health-host|health-body|warmup|socket-link) = )`)
	}
	withHooks := filepath.Join(dir, "hooks.toml")
	if err := os.WriteFile(withHooks, uncomment.ReplaceAll(text, []byte("$1")), 0o644); err != nil {
		t.Fatal(err)
	}

	var keys map[string]any
	if err := toml.Unmarshal(uncomment.ReplaceAll(text, []byte("$1")), &keys); err != nil {
		t.Fatal(err)
	}
	var want, got []string
	st := reflect.TypeFor[swap.Options]()
	for i := range st.NumField() {
		if st.Field(i).Tag.Get("kong") == "-" {
			continue // not a setting
		}
		name := st.Field(i).Tag.Get("name") // kong's name, where the field's is not it
		if name == "" {
			name = kebab(st.Field(i).Name)
		}
		if mode == "socket" || !slices.Contains(socketKeys, name) {
			want = append(want, name)
		}
	}
	for k := range keys {
		got = append(got, k)
	}
	slices.Sort(want)
	slices.Sort(got)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("keys of edgeswitch.toml, hooks uncommented, against the settings (-settings +keys):\n%s", diff)
	}

	defaults := parseSettings(t, "", "")
	if mode == "socket" {
		defaults.Mode, defaults.Socket = "socket", "/run/app/{port}.sock"
	}
	if diff := cmp.Diff(defaults, parseSettings(t, path, "")); diff != "" {
		t.Errorf("the example config changes settings from their defaults (-defaults +file):\n%s", diff)
	}
	hooked := defaults
	hooked.PreStart = []string{"install", "-m", "0644", "/home/deploy/{app}.jar", "/srv/{app}/{to}/{app}.jar"}
	hooked.PostSwitch = []string{"/usr/local/bin/notify", "{app} deployed to {to}"}
	hooked.OnFailure = []string{"/usr/local/bin/notify", "{app}: deploy to {to} failed"}
	hooked.HookUser = "deploy"
	hooked.HealthHost = "app.example.com"
	hooked.HealthBody = new("app")
	hooked.Warmup = []string{"/", "/index.jsp"}
	if mode == "socket" {
		hooked.SocketLink = "/var/lib/edgeswitch/app.sock" // its default, uncommented
	}
	if diff := cmp.Diff(hooked, parseSettings(t, withHooks, "")); diff != "" {
		t.Errorf("the hook examples, uncommented (-want +got):\n%s", diff)
	}

	// And the whole CLI takes both: refusing --to 1 comes after the file
	// is loaded and checked, and before anything needs D-Bus.
	for _, file := range []string{path, withHooks} {
		var stdout, stderr bytes.Buffer
		if code := run(t.Context(), []string{"-c", file, "switch", "--to", "1"}, &stdout, &stderr); code != 2 ||
			!strings.Contains(stderr.String(), "--to 1 is not a slot; pass --to 4000 or --to 4001") {
			t.Errorf("run -c %s: exit %d\n%s", file, code, stderr.String())
		}
	}
}

// TestInitAddsAnApp: with --app, init adds one more app's table to the
// settings in DIR and writes its unit and upstream, leaving the others;
// what would clash is refused and nothing is written.
func TestInitAddsAnApp(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "edgeswitch.toml")
	apps := "health-path = \"/health\"\n\n[app.api]\nunit = \"api@.service\"\nports = [4000, 4001]\n"
	if err := os.WriteFile(conf, []byte(apps), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, _, stderr := runInit(t, "init", "--dir", dir, "--app", "web"); code != 2 || !strings.Contains(stderr, "app api in "+conf+" uses ports [4000 4001] already") {
		t.Errorf("init --app web on api's ports: exit %d\n%s", code, stderr)
	}
	if code, _, stderr := runInit(t, "init", "--dir", dir, "--app", "tpi", "--ports", "5000,5001"); code != 0 {
		t.Fatalf("init --app tpi: exit %d\n%s", code, stderr)
	}
	got, _ := os.ReadFile(conf)
	if !strings.HasPrefix(string(got), apps) || !strings.Contains(string(got), "[app.tpi]\nunit = \"tpi@.service\"\nports = [5000, 5001]\n") {
		t.Errorf("edgeswitch.toml after init --app tpi:\n%s", got)
	}
	for _, f := range []string{"tpi@.service", "tpi.conf"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Error(err)
		}
	}
	// The file still loads, with both apps.
	r, err := loadConfig(conf, true)
	if err != nil || strings.Join(r.names(), " ") != "api tpi" {
		t.Errorf("apps after init --app: %v, %v", r.names(), err)
	}

	flat := t.TempDir()
	if err := os.WriteFile(filepath.Join(flat, "edgeswitch.toml"), []byte("upstream = \"shop\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, _, stderr := runInit(t, "init", "--dir", flat, "--app", "tpi", "--ports", "5000,5001"); code != 2 || !strings.Contains(stderr, "describes one app") || !strings.Contains(stderr, "[app.shop]") {
		t.Errorf("init --app on a one-app file: exit %d\n%s", code, stderr)
	}
}

// TestInitSocketMode: init --mode socket writes the files of socket mode
// (their text is in templates/testdata/socket) and next steps that fit it;
// the settings of --state-dir reach the link; an app added with --app has
// its own socket.
func TestInitSocketMode(t *testing.T) {
	dir := t.TempDir()
	code, stdout, stderr := runInit(t, "--mode", "socket", "init", "--dir", dir)
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	data := templates.Data{App: "app", Host: "127.0.0.1", Ports: [2]int{4000, 4001}, Mode: "socket", Defaults: grammarDefaults(t)}
	for name, tmpl := range map[string]string{"edgeswitch.toml": templates.Config, "app@.service": templates.Unit, "app.conf": templates.Upstream} {
		want, err := templates.Render(tmpl, data)
		if err != nil {
			t.Fatal(err)
		}
		if got, _ := os.ReadFile(filepath.Join(dir, name)); string(got) != string(want) {
			t.Errorf("%s is not the rendered %s of socket mode:\n%s", name, tmpl, got)
		}
	}
	for _, step := range []string{
		"runs the app on\n   its socket, /run/app/%i.sock, which it makes writable for nginx:\n   mode 0666)",
		"It lists /var/lib/edgeswitch/app.sock, the link the first switch (step 4)\n",
		"proxy_set_header Upgrade $http_upgrade;\n",
		"proxy_set_header Connection $connection_upgrade;\n",
		"points the link at its socket",
		"edgeswitch switch --to 4000\n",
	} {
		if !strings.Contains(stdout, step) {
			t.Errorf("next steps lack %q:\n%s", step, stdout)
		}
	}
	if strings.Contains(stdout, `Connection "";`) {
		t.Errorf("next steps of socket mode clear the Connection header, which a WebSocket needs:\n%s", stdout)
	}

	// The link follows state-dir, in the upstream and in the config.
	other := t.TempDir()
	if code, _, stderr := runInit(t, "--mode", "socket", "--state-dir", "/srv/state", "init", "--dir", other); code != 0 {
		t.Fatalf("--state-dir: exit %d\n%s", code, stderr)
	}
	upstream, _ := os.ReadFile(filepath.Join(other, "app.conf"))
	config, _ := os.ReadFile(filepath.Join(other, "edgeswitch.toml"))
	if !strings.Contains(string(upstream), "\n    server unix:/srv/state/app.sock;\n") || !strings.Contains(string(config), "\nstate-dir = \"/srv/state\"\n") {
		t.Errorf("with --state-dir /srv/state:\n%s\n%s", upstream, config)
	}

	// A second app, in a file with apps: its table has its own socket.
	apps := t.TempDir()
	conf := filepath.Join(apps, "edgeswitch.toml")
	top := "health-path = \"/health\"\nmode = \"socket\"\n\n[app.api]\nunit = \"api@.service\"\nports = [4000, 4001]\nsocket = \"/run/api/{port}.sock\"\n"
	if err := os.WriteFile(conf, []byte(top), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, _, stderr := runInit(t, "--mode", "socket", "init", "--dir", apps, "--app", "tpi", "--ports", "5000,5001"); code != 0 {
		t.Fatalf("init --mode socket --app tpi: exit %d\n%s", code, stderr)
	}
	got, _ := os.ReadFile(conf)
	if !strings.HasPrefix(string(got), top) || !strings.HasSuffix(string(got), "[app.tpi]\nunit = \"tpi@.service\"\nports = [5000, 5001]\nmode = \"socket\"\nsocket = \"/run/tpi/{port}.sock\"\n") {
		t.Errorf("edgeswitch.toml after init --mode socket --app tpi:\n%s", got)
	}
	unit, _ := os.ReadFile(filepath.Join(apps, "tpi@.service"))
	upstream, _ = os.ReadFile(filepath.Join(apps, "tpi.conf"))
	if !strings.Contains(string(unit), "\nRuntimeDirectory=tpi\n") || !strings.Contains(string(upstream), "\nupstream tpi {\n    server unix:/var/lib/edgeswitch/tpi.sock;\n    keepalive 16;\n") {
		t.Errorf("tpi's unit and upstream:\n%s\n%s", unit, upstream)
	}
	for app, socket := range map[string]string{"api": "/run/api/{port}.sock", "tpi": "/run/tpi/{port}.sock"} {
		s := parseSettings(t, conf, app)
		if err := s.Check(); err != nil || s.Mode != "socket" || s.Socket != socket {
			t.Errorf("app %s: mode %q, socket %q, %v; want socket mode on %s", app, s.Mode, s.Socket, err, socket)
		}
	}
}

// TestInitNeverWritesThroughALinkNorIntoAnothersDir: with --force, a link
// planted where a file goes is refused, its target untouched; a --dir of
// another user is refused before anything is written.
func TestInitNeverWritesThroughALinkNorIntoAnothersDir(t *testing.T) {
	dir := t.TempDir()
	victim := filepath.Join(t.TempDir(), "victim")
	if err := os.WriteFile(victim, []byte("precious\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(victim, filepath.Join(dir, "app.conf")); err != nil {
		t.Fatal(err)
	}
	code, _, stderr := runInit(t, "init", "--force", "--dir", dir)
	if got, _ := os.ReadFile(victim); code != 2 || string(got) != "precious\n" || !strings.Contains(stderr, "is a symlink") || len(files(t, dir)) != 1 {
		t.Errorf("init --force over a link: exit %d, victim %q, files %v:\n%s", code, got, files(t, dir), stderr)
	}
	if os.Geteuid() != 0 {
		return
	}
	theirs := filepath.Join(t.TempDir(), "theirs")
	if err := os.Mkdir(theirs, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(theirs, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	code, _, stderr = runInit(t, "init", "--dir", theirs)
	if code != 2 || !strings.Contains(stderr, "is owned by uid 65534, not by you") || len(files(t, theirs)) != 0 {
		t.Errorf("init into nobody's dir: exit %d, files %v:\n%s", code, files(t, theirs), stderr)
	}
}
