// Package testedge runs a sandbox edge for end-to-end tests and `make demo`:
// a real systemd user manager reached over a real D-Bus session bus, a real
// nginx as a user unit, and the two app slots as a template unit running
// cmd/demoapp. edgeswitch then switches it exactly as it would switch a
// production host, with `--user`.
//
// Every edge has its own unit names (es-<id>-...) and directory, so edges
// never clash, and Close removes everything it added. The user manager is
// shared: one that answers is reused (and never stopped); otherwise Start
// starts one, and the last Close of the last process using it stops it.
package testedge

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// NginxBin is the nginx the edge runs (Debian's nginx-light).
var NginxBin = "/usr/sbin/nginx"

// startTimeout bounds the wait for nginx to answer from the first slot.
const startTimeout = 10 * time.Second

// Options configure Start.
type Options struct {
	// Dir holds this edge's configs, logs and binaries; required. It must
	// not contain white space, quotes or any of %$\;{}#, which unit files
	// and nginx.conf would need escaped.
	Dir string
	// Ports are the two slot ports; a zero entry is replaced by a free
	// loopback port.
	Ports [2]int
	// AppArgs are extra demoapp flags in the template unit's ExecStart
	// (e.g. "-ready-after=300ms"); none by default.
	AppArgs []string
	// Apps are further apps beside the first (upstream app): each gets its
	// own template unit, two slot ports, upstream block and nginx server
	// on a port of its own, for tests of several apps on one host.
	Apps []AppOptions
	// AccessLog, when set, makes nginx log every request to
	// <Dir>/nginx/access.log (Edge.AccessLog) in the format the README
	// shows, which records $upstream_addr and $upstream_status: a bake then
	// watches the new slot's 5xx answers. Off by default (access_log off).
	AccessLog bool
	// Socket makes a socket-mode edge (edgeswitch's mode = "socket"): the
	// first app's slots listen on unix sockets <Dir>/run/<port>.sock
	// (Edge.SocketPattern), and its upstream lists one server,
	// unix:<StateDir>/app.sock (Edge.SocketLink), a symlink to the first
	// slot's socket as a switch would leave it, with upstream keepalive
	// bounded by KeepaliveBounds.
	// Further apps (Apps) stay on TCP. Off by default: slots on TCP ports.
	Socket bool
}

// accessLogFormat is the log_format of Options.AccessLog, as the README
// and init's upstream include show it.
const accessLogFormat = `log_format edgeswitch '$remote_addr [$time_local] "$request" $status $upstream_addr $upstream_status $request_time';`

// AppOptions configure one further app of an edge.
type AppOptions struct {
	// Name names its upstream block and its template unit
	// (es-<id>-<Name>@.service): letters, digits and '-', not "app".
	Name string
	// Ports are its two slot ports; a zero entry is replaced by a free
	// loopback port.
	Ports [2]int
	// AppArgs are extra demoapp flags of its template unit.
	AppArgs []string
	// File is the file of conf.d (ending in .conf) that holds its upstream
	// and server blocks; empty: the first app's UpstreamFile, after its
	// blocks.
	File string
}

// App is a further app of an edge (Options.Apps).
type App struct {
	Name         string // its upstream block
	Unit         string // es-<id>-<Name>@.service; the instance is the port
	Ports        [2]int
	ListenAddr   string // 127.0.0.1:<port> where nginx serves it
	UpstreamFile string // holds its upstream block

	e       *Edge
	appArgs []string
}

// URL is the address of path on the app's nginx server.
func (a *App) URL(path string) string { return "http://" + a.ListenAddr + path }

// SlotUnit is the app's unit instance for a slot port.
func (a *App) SlotUnit(port int) string {
	return strings.Replace(a.Unit, "@", "@"+strconv.Itoa(port), 1)
}

// SetAppArgs replaces the demoapp flags of the app's template unit and
// reloads the manager, as Edge.SetAppArgs does for the first app.
func (a *App) SetAppArgs(ctx context.Context, args ...string) error {
	a.appArgs = slices.Clone(args)
	if err := a.e.writeUnits(); err != nil {
		return err
	}
	_, err := a.e.Systemctl(ctx, "daemon-reload")
	return err
}

// appName is what a further app may be called: it goes into unit and
// file names and nginx's config unquoted.
var appName = regexp.MustCompile(`^[a-z0-9][a-z0-9-]*$`)

// Edge is a running sandbox edge. Its fields are what edgeswitch needs as
// settings (nginx-conf, nginx-unit, unit, ports, state-dir, --user).
type Edge struct {
	Dir          string
	Env          []string // XDG_RUNTIME_DIR and DBUS_SESSION_BUS_ADDRESS for child processes (edgeswitch)
	NginxConf    string   // main nginx.conf
	UpstreamFile string   // holds `upstream app { server 127.0.0.1:<Ports[0]>; ... }`, included by NginxConf
	NginxUnit    string   // es-<id>-nginx.service
	AppUnit      string   // es-<id>-app@.service; the instance is the port
	Ports        [2]int
	ListenAddr   string // 127.0.0.1:<port> where nginx listens
	PIDFile      string // nginx's master PID
	StateDir     string // empty directory for edgeswitch's state-dir
	Apps         []*App // the further apps of Options.Apps, in order
	AccessLog    string // nginx's access log with Options.AccessLog; empty without
	// SocketPattern is where slots listen with Options.Socket,
	// <Dir>/run/{port}.sock: edgeswitch's socket setting. Empty without.
	SocketPattern string
	// SocketLink is the symlink the upstream's server names with
	// Options.Socket, <StateDir>/app.sock: edgeswitch's socket-link
	// setting. Empty without.
	SocketLink string

	id        string
	appArgs   []string
	unitDir   string   // where the unit files are, once written
	unitFiles []string // what Close removes
	managed   bool     // holds a reference on the user manager
	closeOnce sync.Once
	closeErr  error
}

// Start builds an edge in o.Dir and returns once nginx answers from the
// first slot. On error, everything it had started is cleaned up.
func Start(ctx context.Context, o Options) (*Edge, error) {
	if err := prerequisites(); err != nil {
		return nil, err
	}
	e, err := newEdge(o)
	if err != nil {
		return nil, err
	}
	if err := e.start(ctx); err != nil {
		return nil, errors.Join(err, e.Close())
	}
	return e, nil
}

// prerequisites says which required program is missing.
func prerequisites() error {
	for _, p := range []string{NginxBin, "/lib/systemd/systemd"} {
		if _, err := os.Stat(p); err != nil {
			return fmt.Errorf("testedge needs %s: %w (install nginx-light and systemd)", p, err)
		}
	}
	for _, p := range []string{"systemctl", "unshare"} {
		if _, err := exec.LookPath(p); err != nil {
			return fmt.Errorf("testedge needs %s: %w", p, err)
		}
	}
	return nil
}

func newEdge(o Options) (*Edge, error) {
	if o.Dir == "" {
		return nil, errors.New("testedge: Options.Dir is required")
	}
	dir, err := filepath.Abs(o.Dir)
	if err != nil {
		return nil, err
	}
	if strings.ContainsAny(dir, " \t\n\"'%$\\;{}#") {
		return nil, fmt.Errorf("testedge: Options.Dir %q has characters that unit files or nginx.conf would need escaped; choose a plain path", dir)
	}
	ports := o.Ports
	for i := range ports {
		for ports[i] == 0 || (i == 1 && o.Ports[1] == 0 && ports[1] == ports[0]) {
			if ports[i], err = freePort(); err != nil {
				return nil, err
			}
		}
	}
	if ports[0] == ports[1] {
		return nil, fmt.Errorf("testedge: Options.Ports are both %d; give two different ports", ports[0])
	}
	used := slices.Clone(ports[:]) // every port of the edge, given or picked
	for _, a := range o.Apps {
		for _, p := range a.Ports {
			if p != 0 {
				used = append(used, p)
			}
		}
	}
	// pick returns a free port that no other part of the edge uses.
	pick := func() (int, error) {
		for {
			p, err := freePort()
			if err != nil || !slices.Contains(used, p) {
				used = append(used, p)
				return p, err
			}
		}
	}
	listen, err := pick()
	if err != nil {
		return nil, err
	}
	b := make([]byte, 3)
	if _, err := rand.Read(b); err != nil {
		return nil, err
	}
	id := hex.EncodeToString(b)
	confD := filepath.Join(dir, "nginx", "conf.d")
	e := &Edge{
		Dir:          dir,
		Env:          userEnv(),
		NginxConf:    filepath.Join(dir, "nginx", "nginx.conf"),
		UpstreamFile: filepath.Join(dir, "nginx", "conf.d", "app.conf"),
		NginxUnit:    "es-" + id + "-nginx.service",
		AppUnit:      "es-" + id + "-app@.service",
		Ports:        ports,
		ListenAddr:   net.JoinHostPort("127.0.0.1", strconv.Itoa(listen)),
		PIDFile:      filepath.Join(dir, "nginx", "nginx.pid"),
		StateDir:     filepath.Join(dir, "state"),
		id:           id,
		appArgs:      slices.Clone(o.AppArgs),
	}
	if o.AccessLog {
		e.AccessLog = filepath.Join(dir, "nginx", "access.log")
	}
	if o.Socket {
		if err := e.socketPaths(); err != nil {
			return nil, err
		}
	}
	for i, ao := range o.Apps {
		what := fmt.Sprintf("testedge: Options.Apps[%d]", i)
		if !appName.MatchString(ao.Name) || ao.Name == "app" || slices.ContainsFunc(e.Apps, func(a *App) bool { return a.Name == ao.Name }) {
			return nil, fmt.Errorf("%s.Name %q: give each app its own name of lower-case letters, digits and '-', not app", what, ao.Name)
		}
		a := &App{Name: ao.Name, Unit: "es-" + id + "-" + ao.Name + "@.service", Ports: ao.Ports, UpstreamFile: e.UpstreamFile, e: e, appArgs: slices.Clone(ao.AppArgs)}
		if ao.File != "" {
			if !strings.HasSuffix(ao.File, ".conf") || strings.ContainsRune(ao.File, '/') || ao.File == filepath.Base(e.UpstreamFile) {
				return nil, fmt.Errorf("%s.File %q: name a new file of conf.d ending in .conf", what, ao.File)
			}
			a.UpstreamFile = filepath.Join(confD, ao.File)
		}
		for j := range a.Ports {
			if a.Ports[j] == 0 {
				if a.Ports[j], err = pick(); err != nil {
					return nil, err
				}
			}
		}
		if a.Ports[0] == a.Ports[1] {
			return nil, fmt.Errorf("%s.Ports are both %d; give two different ports", what, a.Ports[0])
		}
		p, err := pick()
		if err != nil {
			return nil, err
		}
		a.ListenAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(p))
		e.Apps = append(e.Apps, a)
	}
	return e, nil
}

func (e *Edge) start(ctx context.Context) error {
	for _, d := range []string{"bin", "nginx/conf.d", "nginx/tmp", "state"} {
		if err := os.MkdirAll(filepath.Join(e.Dir, d), 0o755); err != nil {
			return err
		}
	}
	if e.SocketPattern != "" {
		// As `edgeswitch switch` leaves it: the link names the live slot's socket.
		if err := os.Symlink(strings.ReplaceAll(e.SocketPattern, "{port}", strconv.Itoa(e.Ports[0])), e.SocketLink); err != nil {
			return err
		}
	}
	bin, err := BuildDemoapp(ctx)
	if err != nil {
		return err
	}
	if err := copyFile(bin, filepath.Join(e.Dir, "bin", "demoapp"), 0o755); err != nil {
		return fmt.Errorf("installing demoapp: %w", err)
	}
	if err := e.writeNginxConfig(); err != nil {
		return err
	}
	if err := acquireManager(ctx, filepath.Join(e.Dir, "systemd-user.log")); err != nil {
		return err
	}
	e.managed = true
	if e.unitDir, err = e.findUnitDir(ctx); err != nil {
		return err
	}
	if err := e.writeUnits(); err != nil {
		return err
	}
	if _, err := e.Systemctl(ctx, "daemon-reload"); err != nil {
		return err
	}
	if _, err := e.Systemctl(ctx, "start", e.SlotUnit(e.Ports[0])); err != nil {
		return fmt.Errorf("%w\napp log:\n%s", err, tail(e.appLog(e.Ports[0]), 10))
	}
	for _, a := range e.Apps {
		if _, err := e.Systemctl(ctx, "start", a.SlotUnit(a.Ports[0])); err != nil {
			return fmt.Errorf("%w\napp log:\n%s", err, tail(e.appLog(a.Ports[0]), 10))
		}
	}
	if _, err := e.Systemctl(ctx, "start", e.NginxUnit); err != nil {
		return fmt.Errorf("%w\nnginx unit log:\n%s\nnginx error log:\n%s", err,
			tail(filepath.Join(e.Dir, "nginx", "unit.log"), 10), tail(filepath.Join(e.Dir, "nginx", "error.log"), 10))
	}
	if err := e.waitServing(ctx, e.URL("/"), e.ListenAddr, e.Ports[0]); err != nil {
		return err
	}
	for _, a := range e.Apps {
		if err := e.waitServing(ctx, a.URL("/"), a.ListenAddr, a.Ports[0]); err != nil {
			return fmt.Errorf("app %s: %w", a.Name, err)
		}
	}
	return nil
}

// waitServing polls GET url (nginx at listen) until slot port answers it.
func (e *Edge) waitServing(ctx context.Context, url, listen string, port int) error {
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	client := &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	want := strconv.Itoa(port)
	last := "no answer yet"
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && resp.Header.Get("X-Slot") == want {
				return nil
			}
			last = fmt.Sprintf("%s from slot %q", resp.Status, resp.Header.Get("X-Slot"))
		} else {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("nginx at %s did not answer 200 from slot %d within %s (last: %s); app log:\n%s\nnginx error log:\n%s",
				listen, port, startTimeout, last, tail(e.appLog(port), 10), tail(filepath.Join(e.Dir, "nginx", "error.log"), 10))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Close stops and removes the edge's units, reloads the manager and, when
// this was the last edge of any process, stops the user manager if testedge
// started it. It is safe to call more than once.
func (e *Edge) Close() error {
	e.closeOnce.Do(func() { e.closeErr = e.close() })
	return e.closeErr
}

func (e *Edge) close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var errs []error
	if len(e.unitFiles) > 0 {
		// systemd puts template instances in a slice of their own, which
		// would otherwise stay loaded.
		units := []string{e.NginxUnit, strings.Replace(e.AppUnit, "@", "@*", 1), e.appSlice()}
		slots := []string{e.SlotUnit(e.Ports[0]), e.SlotUnit(e.Ports[1])}
		for _, a := range e.Apps {
			units = append(units, strings.Replace(a.Unit, "@", "@*", 1), sliceOf(a.Unit))
			slots = append(slots, a.SlotUnit(a.Ports[0]), a.SlotUnit(a.Ports[1]))
		}
		if _, err := e.Systemctl(ctx, append([]string{"stop"}, units...)...); err != nil {
			errs = append(errs, err)
		}
		// Switches enable the live slot: its link in default.target.wants goes too.
		if _, err := e.Systemctl(ctx, append([]string{"disable"}, slots...)...); err != nil {
			errs = append(errs, err)
		}
		// Failed units stay loaded after their file is gone.
		_, _ = e.Systemctl(ctx, append([]string{"reset-failed"}, units...)...)
		for _, f := range e.unitFiles {
			if err := os.Remove(f); err != nil && !os.IsNotExist(err) {
				errs = append(errs, err)
			}
		}
		if _, err := e.Systemctl(ctx, "daemon-reload"); err != nil {
			errs = append(errs, err)
		}
	}
	if e.managed {
		errs = append(errs, releaseManager())
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("closing test edge %s: %w", e.id, err)
	}
	return nil
}

// Systemctl runs `systemctl --user args...` against the edge's manager and
// returns its output; the error carries the command line and the output.
func (e *Edge) Systemctl(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "systemctl", append([]string{"--user"}, args...)...)
	cmd.Env = append(os.Environ(), e.Env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("systemctl --user %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// URL is the address of path on the edge's nginx.
func (e *Edge) URL(path string) string { return "http://" + e.ListenAddr + path }

// SlotUnit is the app unit instance for a slot port, e.g. es-<id>-app@4001.service.
func (e *Edge) SlotUnit(port int) string {
	return strings.Replace(e.AppUnit, "@", "@"+strconv.Itoa(port), 1)
}

// socketPaths sets where the first app's slots listen in socket mode and
// the link, and makes the sockets' directory.
func (e *Edge) socketPaths() error {
	e.SocketPattern = filepath.Join(e.Dir, "run", "{port}.sock")
	e.SocketLink = filepath.Join(e.StateDir, "app.sock")
	// A unix socket's path has at most 107 bytes (sun_path).
	for _, p := range []string{strings.ReplaceAll(e.SocketPattern, "{port}", "65535"), e.SocketLink} {
		if len(p) > 107 {
			return fmt.Errorf("testedge: socket path %s is longer than the 107 bytes a unix socket allows; choose a shorter Options.Dir", p)
		}
	}
	return os.MkdirAll(filepath.Dir(e.SocketPattern), 0o755)
}

// BoundKeepalive adds to an upstream's "keepalive 16;" line the bounds that
// socket mode needs to keep it (nginx then closes its cached connections to
// the old slot soon after the link moves): short ones, so that a drain
// takes about half a second, within half of a drain-timeout of 1 s.
func BoundKeepalive(conf string) string {
	const line = "    keepalive 16;\n"
	return strings.Replace(conf, line, line+"    keepalive_time 500ms;\n    keepalive_timeout 500ms;\n", 1)
}

// UseSockets moves a TCP edge's first app to unix sockets as an operator
// does before the first switch in socket mode: slots started from now on
// listen on SocketPattern (the template unit is rewritten, the manager
// reloaded). The running slot and nginx's config stay as they are, and no
// link is made: converting the upstream is the first switch's job.
func (e *Edge) UseSockets(ctx context.Context) error {
	if err := e.socketPaths(); err != nil {
		return err
	}
	return e.SetAppArgs(ctx, e.appArgs...)
}

// SetAppArgs replaces the demoapp flags of the template unit and reloads
// the manager; slots started afterwards get them (e.g. -crash, -never-ready
// for failure-path tests), running slots keep theirs.
func (e *Edge) SetAppArgs(ctx context.Context, args ...string) error {
	e.appArgs = slices.Clone(args)
	if err := e.writeUnits(); err != nil {
		return err
	}
	_, err := e.Systemctl(ctx, "daemon-reload")
	return err
}

// appSlice is the slice systemd makes for the app template's instances,
// app-<escaped template prefix>.slice ("-" escapes to \x2d).
func (e *Edge) appSlice() string { return sliceOf(e.AppUnit) }

// sliceOf is the slice of a template unit's instances.
func sliceOf(template string) string {
	prefix, _, _ := strings.Cut(template, "@")
	return "app-" + strings.ReplaceAll(prefix, "-", `\x2d`) + ".slice"
}

// Boot is one start of a slot's app, as the app logged it.
type Boot struct {
	Started time.Time
	Healthy time.Time // from when /health answers 200; zero if never
}

// LastBoot reads the latest start of slot port from its app log.
func (e *Edge) LastBoot(port int) (Boot, error) {
	data, err := os.ReadFile(e.appLog(port))
	if err != nil {
		return Boot{}, err
	}
	const mark = "; started "
	i := strings.LastIndex(string(data), mark)
	if i < 0 {
		return Boot{}, fmt.Errorf("%s has no start line", e.appLog(port))
	}
	line, _, _ := strings.Cut(string(data[i+len(mark):]), "\n")
	started, healthy, _ := strings.Cut(line, ", ")
	var b Boot
	if b.Started, err = time.Parse(time.RFC3339Nano, started); err != nil {
		return Boot{}, fmt.Errorf("start line of %s: %w", e.appLog(port), err)
	}
	if at, ok := strings.CutPrefix(healthy, "healthy from "); ok {
		if b.Healthy, err = time.Parse(time.RFC3339Nano, at); err != nil {
			return Boot{}, fmt.Errorf("start line of %s: %w", e.appLog(port), err)
		}
	}
	return b, nil
}

func (e *Edge) appLog(port int) string {
	return filepath.Join(e.Dir, "app-"+strconv.Itoa(port)+".log")
}

// findUnitDir picks a directory the manager reads units from: the runtime
// one, which vanishes with /run/user, rather than ~/.config/systemd/user.
func (e *Edge) findUnitDir(ctx context.Context) (string, error) {
	out, err := e.Systemctl(ctx, "show", "-p", "UnitPath", "--value")
	if err != nil {
		return "", err
	}
	paths := strings.Fields(out)
	home, _ := os.UserHomeDir()
	for _, d := range []string{filepath.Join(runtimeDir(), "systemd", "user"), filepath.Join(home, ".config", "systemd", "user")} {
		if slices.Contains(paths, d) {
			return d, os.MkdirAll(d, 0o755)
		}
	}
	return "", fmt.Errorf("the user manager reads units from neither %s/systemd/user nor ~/.config/systemd/user (UnitPath=%s)", runtimeDir(), out)
}

func (e *Edge) writeNginxConfig() error {
	n := filepath.Join(e.Dir, "nginx")
	access := "access_log off;"
	if e.AccessLog != "" {
		access = accessLogFormat + "\n    access_log " + e.AccessLog + " edgeswitch;"
	}
	main := fmt.Sprintf(`# nginx for test edge %[1]s (internal/testedge); absolute paths, nothing outside %[2]s.
user root;
worker_processes 2;
pid %[3]s;
error_log %[2]s/error.log notice;

events {
    worker_connections 1024;
}

http {
    %[4]s
    client_body_temp_path %[2]s/tmp/body;
    proxy_temp_path %[2]s/tmp/proxy;
    fastcgi_temp_path %[2]s/tmp/fastcgi;
    uwsgi_temp_path %[2]s/tmp/uwsgi;
    scgi_temp_path %[2]s/tmp/scgi;

    map $http_upgrade $connection_upgrade {
        default upgrade;
        ''      '';
    }

    include %[2]s/conf.d/*.conf;
}
`, e.id, n, e.PIDFile, access)
	// Upgrade and Connection pass WebSocket handshakes on; for any other
	// request Connection is empty, which keeps upstream keep-alive.
	// proxy_read_timeout lets a quiet stream live for a minute.
	const location = `    location / {
        proxy_pass http://%s;
        proxy_http_version 1.1;
        proxy_set_header Upgrade $http_upgrade;
        proxy_set_header Connection $connection_upgrade;
        proxy_read_timeout 60s;
        proxy_next_upstream error timeout;
    }`
	upstream := fmt.Sprintf("upstream app {\n    server 127.0.0.1:%d;\n    keepalive 16;\n}", e.Ports[0])
	if e.SocketLink != "" {
		upstream = fmt.Sprintf("upstream app {\n    server unix:%s;\n%s}", e.SocketLink, BoundKeepalive("    keepalive 16;\n"))
	}
	app := fmt.Sprintf("%s\n\nserver {\n    listen %s;\n\n%s\n}\n", upstream, e.ListenAddr, fmt.Sprintf(location, "app"))
	files := map[string]string{e.UpstreamFile: app}
	for _, a := range e.Apps {
		files[a.UpstreamFile] += fmt.Sprintf(`
upstream %[1]s {
    server 127.0.0.1:%[2]d;
    keepalive 16;
}

server {
    listen %[3]s;

%[4]s
}
`, a.Name, a.Ports[0], a.ListenAddr, fmt.Sprintf(location, a.Name))
	}
	if err := os.WriteFile(e.NginxConf, []byte(main), 0o644); err != nil {
		return err
	}
	for path, text := range files {
		if err := os.WriteFile(path, []byte(strings.TrimPrefix(text, "\n")), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// writeUnits writes the nginx unit and the app template unit.
func (e *Edge) writeUnits() error {
	n := filepath.Join(e.Dir, "nginx")
	nginx := fmt.Sprintf(`[Unit]
Description=nginx of test edge %[1]s

[Service]
Type=forking
PIDFile=%[5]s
ExecStartPre=%[3]s -t -q -e %[2]s/error.log -c %[4]s
ExecStart=%[3]s -e %[2]s/error.log -c %[4]s
ExecReload=%[3]s -e %[2]s/error.log -c %[4]s -s reload
# SIGQUIT is nginx's graceful stop: workers finish their requests first.
KillSignal=SIGQUIT
KillMode=mixed
TimeoutStopSec=10
StandardOutput=append:%[2]s/unit.log
StandardError=inherit
`, e.id, n, NginxBin, e.NginxConf, e.PIDFile)
	files := map[string]string{e.NginxUnit: nginx, e.AppUnit: e.appUnit("app", e.appArgs)}
	for _, a := range e.Apps {
		files[a.Unit] = e.appUnit(a.Name, a.appArgs)
	}
	for name, text := range files {
		path := filepath.Join(e.unitDir, name)
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			return fmt.Errorf("writing unit: %w", err)
		}
		if !slices.Contains(e.unitFiles, path) {
			e.unitFiles = append(e.unitFiles, path)
		}
	}
	return nil
}

// appUnit is the template unit of an app whose slots run demoapp with
// appArgs; the first app's listen on their sockets with Options.Socket.
func (e *Edge) appUnit(name string, appArgs []string) string {
	args := ""
	if name == "app" && e.SocketPattern != "" {
		args = " -socket " + strings.ReplaceAll(e.SocketPattern, "{port}", "%i")
	}
	for _, a := range appArgs {
		args += " " + execQuote(a)
	}
	return fmt.Sprintf(`[Unit]
Description=%[4]s slot %%i of test edge %[1]s
# Benchmarks start each slot many times in ten seconds.
StartLimitIntervalSec=0

[Service]
Type=simple
ExecStart=%[2]s/bin/demoapp -port %%i%[3]s
KillSignal=SIGTERM
TimeoutStopSec=10
Restart=no
StandardOutput=append:%[2]s/app-%%i.log
StandardError=inherit

# edgeswitch enables the live slot so that it comes back with the manager.
[Install]
WantedBy=default.target
`, e.id, e.Dir, args, name)
}

// execQuote quotes one ExecStart argument: systemd expands % specifiers
// and $ variables, and splits on white space.
func execQuote(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, `%`, `%%`, `$`, `$$`)
	q := r.Replace(s)
	if q == s && s != "" && !strings.ContainsAny(s, " \t\n'") {
		return s
	}
	return `"` + q + `"`
}

// freePort asks the kernel for a free loopback port. Another process may
// take it before we bind it; tests accept that small race.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("finding a free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}
