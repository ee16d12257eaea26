// Package templates holds the files that edgeswitch init writes: an example
// config, a systemd template unit for the app's two slots and the nginx
// upstream block that edgeswitch switches. They are embedded text/templates,
// so that the binary alone can set up a new host, and they are rendered from
// a few values (Data) rather than copied, so that the unit name, the upstream
// name and the ports agree with each other and with the config. One set of
// templates serves both modes of the mode setting: in socket mode the unit's
// slots listen on unix sockets and the upstream lists the link edgeswitch
// points at the live one.
package templates

import (
	"bytes"
	"embed"
	"fmt"
	"net"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"text/template"
)

// The names of the templates, for Render.
const (
	Config   = "edgeswitch.toml.tmpl" // the settings file, /etc/edgeswitch/edgeswitch.toml
	Unit     = "app@.service.tmpl"    // the template unit <app>@.service; the instance is the port
	Upstream = "upstream.conf.tmpl"   // the upstream block, an include such as conf.d/<app>.conf
	AppTable = "app.toml.tmpl"        // one more app's [app.NAME] table, appended to the settings file
)

//go:embed *.tmpl
var files embed.FS

// parsed panics as the program starts if a template does not parse, and the
// tests render each one, so a broken template never reaches a user.
var parsed = template.Must(template.New("").Option("missingkey=error").ParseFS(files, "*.tmpl"))

// Data is what the templates are rendered from.
type Data struct {
	// App names the upstream block, the unit (<App>@.service) and the slot
	// directories (/srv/<App>/<port>). See Check for what it may contain.
	App string
	// Host is the address the slots listen on, as in the host setting
	// (default 127.0.0.1): an IP address or a host name.
	Host string
	// Ports are the two slot ports, as in the ports setting; the upstream
	// starts out listing Ports[0].
	Ports [2]int
	// UserManager: the unit is for a per-user manager (the user setting),
	// so it is wanted by default.target rather than multi-user.target.
	UserManager bool
	// Mode is the mode setting: "reload" (the default when empty) or
	// "socket", where the slots listen on unix sockets (Socket) and the
	// upstream lists the link (Link).
	Mode string
	// StateDir is the state-dir setting, where the link lives in socket
	// mode; DefaultStateDir when empty.
	StateDir string
	// RuntimeDir is where the manager of the unit makes its
	// RuntimeDirectory=: "/run" (the default when empty) for the system
	// manager, $XDG_RUNTIME_DIR for a per-user one.
	RuntimeDir string
	// Defaults are the settings' defaults as TOML values, by key
	// ("reload-timeout": `"10s"`): the example config writes them as the
	// CLI defines them.
	Defaults map[string]string
}

// Default is the default of setting key as a TOML value; a key with none
// fails the rendering.
func (d Data) Default(key string) (string, error) {
	v, ok := d.Defaults[key]
	if !ok {
		return "", fmt.Errorf("no default for %s", key)
	}
	return v, nil
}

// maxSocketPath is the longest path of a unix socket on Linux (sun_path
// less its terminating NUL).
const maxSocketPath = 107

// DefaultStateDir is the default of the state-dir setting.
const DefaultStateDir = "/var/lib/edgeswitch"

// SocketMode reports whether d is for socket mode.
func (d Data) SocketMode() bool { return d.Mode == "socket" }

// Socket is where the slot named port listens in socket mode: in the unit's
// runtime directory, <RuntimeDir>/<App>/<port>.sock. port is "%i" in the unit and
// "{port}" in the socket setting.
func (d Data) Socket(port string) string {
	return filepath.Join(d.withDefaults().RuntimeDir, d.App, port+".sock")
}

// SlotSocket is the socket of slot i (0 or 1) in socket mode.
func (d Data) SlotSocket(i int) string { return d.Socket(strconv.Itoa(d.Ports[i])) }

// Link is the default of the socket-link setting, the path the upstream
// lists in socket mode: <StateDir>/<App>.sock.
func (d Data) Link() string { return filepath.Join(d.withDefaults().StateDir, d.App+".sock") }

// appName is what one name can be at once: an nginx upstream name without
// quoting, the prefix of a systemd unit name and a file name.
var appName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`)

// CheckName refuses an app name that cannot name an upstream, a unit and a
// file at once.
func CheckName(app string) error {
	if !appName.MatchString(app) {
		return fmt.Errorf("app name %q: use letters, digits, '_', '.' and '-', starting with a letter or digit", app)
	}
	return nil
}

// hostName is a DNS name; anything else that is not an IP address would
// break the server line of the upstream.
var hostName = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$`)

// Check refuses names that would render files that do not work, such as an
// app name with a slash or a space, before anything is written. The ports
// are the caller's to check, with the rule every command uses
// (swap.CheckPorts). An empty Mode or StateDir is its default.
func (d Data) Check() error {
	d = d.withDefaults()
	if err := CheckName(d.App); err != nil {
		return err
	}
	if net.ParseIP(d.Host) == nil && !hostName.MatchString(d.Host) {
		return fmt.Errorf("host %q is neither an IP address nor a host name; slots listen on an address such as 127.0.0.1", d.Host)
	}
	if d.Mode != "reload" && d.Mode != "socket" {
		return fmt.Errorf("mode %q: set it to \"reload\" or \"socket\"", d.Mode)
	}
	// The directories go into TOML strings, the unit and, in socket mode,
	// unquoted into nginx's config.
	for _, dir := range []struct{ name, path string }{{"state-dir", d.StateDir}, {"runtime directory", d.RuntimeDir}} {
		if !filepath.IsAbs(dir.path) || strings.ContainsAny(dir.path, " \t\r\n;{}'\"\\#%") {
			return fmt.Errorf("%s %q: use an absolute path without blanks, quotes, '#', '%%', ';' or braces", dir.name, dir.path)
		}
	}
	// A unix socket's path, as connect and bind take it, holds at most
	// 107 bytes: nginx connects to the link, the app binds its socket.
	if d.SocketMode() {
		for _, p := range []string{d.Link(), d.SlotSocket(0), d.SlotSocket(1)} {
			if len(p) > maxSocketPath {
				return fmt.Errorf("socket path %s is longer than the %d bytes a unix socket's path may have: use a shorter app name or state-dir", p, maxSocketPath)
			}
		}
	}
	return nil
}

// withDefaults returns d with its empty Mode and StateDir set to their
// defaults.
func (d Data) withDefaults() Data {
	if d.Mode == "" {
		d.Mode = "reload"
	}
	if d.StateDir == "" {
		d.StateDir = DefaultStateDir
	}
	if d.RuntimeDir == "" {
		d.RuntimeDir = "/run"
	}
	return d
}

// Addr is host:port of slot i (0 or 1), with brackets for IPv6, as nginx
// writes it in a server line.
func (d Data) Addr(i int) string {
	return net.JoinHostPort(d.Host, strconv.Itoa(d.Ports[i]))
}

// Render renders the template name (Config, Unit, Upstream or AppTable)
// with d, its empty Mode and StateDir taken as their defaults, after
// d.Check.
func Render(name string, d Data) ([]byte, error) {
	d = d.withDefaults()
	if err := d.Check(); err != nil {
		return nil, err
	}
	var b bytes.Buffer
	if err := parsed.ExecuteTemplate(&b, name, d); err != nil {
		return nil, fmt.Errorf("render %s: %w", name, err)
	}
	return b.Bytes(), nil
}
