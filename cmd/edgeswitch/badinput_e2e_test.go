package main

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/edgeswitch/edgeswitch/internal/testedge"
)

// The bad-input tests run the real binary against a real sandbox edge with
// one thing wrong at a time. Each must give a one-line error that names the
// thing and says what to do, the designed exit code, leave every file under
// the nginx config directory byte-identical, leave the target slot stopped,
// and leave traffic on the first slot without a failed request.

// fixWords are the verbs of a message that says what to do.
var fixWords = regexp.MustCompile(`\b(set|pass|install|create|fix|start|free|keep|remove|move|run|remount|check|add|use)\b`)

// runBad runs the binary with the edge's settings, some of them replaced
// (flag -> value; "" drops the flag) and extra environment (later entries
// win over the edge's).
func runBad(t *testing.T, e *testedge.Edge, override map[string]string, env []string, args ...string) result {
	t.Helper()
	return runWith(t, append(e.Env, env...), append(args, flagsWith(e, override)...)...)
}

// flagsWith is edgeFlags(e) with the values of the flags in override
// replaced; flags that edgeFlags does not set are added.
func flagsWith(e *testedge.Edge, override map[string]string) []string {
	in := edgeFlags(e)
	var out []string
	var added []string
	for name, v := range override {
		if v != "" && !slices.Contains(in, name) {
			added = append(added, name)
		}
	}
	slices.Sort(added)
	for _, name := range added {
		out = append(out, name, override[name])
	}
	for i := 0; i < len(in); i++ {
		name := in[i]
		hasValue := i+1 < len(in) && !strings.HasPrefix(in[i+1], "--")
		v, replaced := override[name]
		switch {
		case replaced && v == "":
		case replaced:
			out = append(out, name, v)
		case hasValue:
			out = append(out, name, in[i+1])
		default:
			out = append(out, name)
		}
		if hasValue {
			i++
		}
	}
	return out
}

// errorLine returns stderr's last line and checks that it is the only
// "edgeswitch: " line, so the error is one line.
func errorLine(t *testing.T, stderr string) string {
	t.Helper()
	lines := strings.Split(strings.TrimRight(stderr, "\n"), "\n")
	last := lines[len(lines)-1]
	if !strings.HasPrefix(last, "edgeswitch: ") {
		t.Errorf("stderr's last line does not start with \"edgeswitch: \" (a multi-line error, or none):\n%s", stderr)
		return last
	}
	for _, l := range lines[:len(lines)-1] {
		if strings.HasPrefix(l, "edgeswitch:") {
			t.Errorf("more than one error line:\n%s", stderr)
			break
		}
	}
	return last
}

// conf.d of the edge: where the upstream file is.
func confDir(e *testedge.Edge) string { return filepath.Dir(e.UpstreamFile) }

func editUpstreamFile(t *testing.T, e *testedge.Edge, edit func(string) string) {
	t.Helper()
	old, err := os.ReadFile(e.UpstreamFile)
	if err != nil {
		t.Fatal(err)
	}
	now := edit(string(old))
	if now == string(old) {
		t.Fatalf("the edit changed nothing in %s", e.UpstreamFile)
	}
	if err := os.WriteFile(e.UpstreamFile, []byte(now), 0o644); err != nil {
		t.Fatal(err)
	}
}

func serverLine(port int) string { return fmt.Sprintf("server 127.0.0.1:%d;", port) }

// mountOrSkip mounts as mount(2) does and unmounts at the end of the test,
// before the edge is closed and its directory removed.
func mountOrSkip(t *testing.T, source, target, fstype string, flags uintptr, data string) {
	t.Helper()
	if err := syscall.Mount(source, target, fstype, flags, data); err != nil {
		if errors.Is(err, syscall.EPERM) {
			t.Skipf("mount %s: %v (needs root)", target, err)
		}
		t.Fatalf("mount %s on %s: %v", source, target, err)
	}
	if flags&syscall.MS_REMOUNT != 0 {
		return
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(target, 0); err != nil {
			if err := syscall.Unmount(target, syscall.MNT_DETACH); err != nil {
				t.Errorf("unmount %s: %v", target, err)
			}
		}
	})
}

// readOnlyConfD bind-mounts conf.d read-only onto itself. As root, chmod
// would not stop a write; a read-only mount does.
func readOnlyConfD(t *testing.T, e *testedge.Edge) {
	t.Helper()
	d := confDir(e)
	mountOrSkip(t, d, d, "", syscall.MS_BIND, "")
	mountOrSkip(t, "", d, "", syscall.MS_REMOUNT|syscall.MS_BIND|syscall.MS_RDONLY, "")
	if err := os.WriteFile(filepath.Join(d, ".probe"), nil, 0o644); !errors.Is(err, syscall.EROFS) {
		t.Fatalf("conf.d is not read-only after the remount: %v", err)
	}
}

// fullConfD moves conf.d onto a 64 KiB tmpfs with copies of its files and
// fills it up. nginx itself runs in the user manager's mount namespace and
// keeps reading the original files, which are the same bytes.
func fullConfD(t *testing.T, e *testedge.Edge) {
	t.Helper()
	d := confDir(e)
	files := map[string][]byte{}
	ents, err := os.ReadDir(d)
	if err != nil {
		t.Fatal(err)
	}
	for _, ent := range ents {
		if data, err := os.ReadFile(filepath.Join(d, ent.Name())); err == nil {
			files[ent.Name()] = data
		}
	}
	mountOrSkip(t, "tmpfs", d, "tmpfs", 0, "size=64k,mode=0755")
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(d, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// The filler is not a .conf: nginx's include glob skips it.
	f, err := os.Create(filepath.Join(d, "filler"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := make([]byte, 4096)
	for {
		if _, err := f.Write(chunk); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("filling the tmpfs: %v", err)
			}
			break
		}
	}
	if err := f.Sync(); err != nil && !errors.Is(err, syscall.ENOSPC) {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(d, ".probe"), []byte("x"), 0o644); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("the tmpfs is not full: %v", err)
	}
	os.Remove(filepath.Join(d, ".probe"))
}

func TestBadInputEndToEnd(t *testing.T) {
	type edgeFunc func(e *testedge.Edge) string
	tests := []struct {
		name     string
		setup    func(t *testing.T, e *testedge.Edge) // before the files are hashed
		args     func(t *testing.T, e *testedge.Edge) []string
		override func(e *testedge.Edge) map[string]string
		env      func(t *testing.T, e *testedge.Edge) []string
		code     int
		names    []edgeFunc     // each must appear in the error line
		fix      *regexp.Regexp // says what to do; fixWords when nil
		notSays  string         // must not appear in stderr
	}{
		{
			name: "--to is out of range",
			args: func(*testing.T, *testedge.Edge) []string { return []string{"switch", "--to", "70000"} },
			code: 2,
			names: []edgeFunc{
				func(*testedge.Edge) string { return "--to 70000" },
				func(e *testedge.Edge) string { return fmt.Sprintf("pass --to %d or --to %d", e.Ports[0], e.Ports[1]) },
			},
		},
		{
			name: "--to is negative",
			args: func(*testing.T, *testedge.Edge) []string { return []string{"switch", "--to=-1"} },
			code: 2,
			names: []edgeFunc{
				func(*testedge.Edge) string { return "--to -1" },
				func(e *testedge.Edge) string { return fmt.Sprintf("pass --to %d or --to %d", e.Ports[0], e.Ports[1]) },
			},
		},
		{
			name: "--to is zero, which is no port",
			args: func(*testing.T, *testedge.Edge) []string { return []string{"switch", "--to", "0"} },
			code: 2,
			names: []edgeFunc{
				func(*testedge.Edge) string { return "--to" },
				func(e *testedge.Edge) string { return fmt.Sprintf("pass --to %d or --to %d", e.Ports[0], e.Ports[1]) },
			},
		},
		{
			name:  "--to is not a number",
			args:  func(*testing.T, *testedge.Edge) []string { return []string{"switch", "--to", "blue"} },
			code:  2,
			names: []edgeFunc{func(*testedge.Edge) string { return "--to" }, func(*testedge.Edge) string { return "blue" }},
		},
		{
			name: "--to is a port that is not a slot",
			args: func(*testing.T, *testedge.Edge) []string { return []string{"switch", "--to", "5000"} },
			code: 2,
			names: []edgeFunc{
				func(*testedge.Edge) string { return "--to 5000 is not a slot" },
				func(e *testedge.Edge) string { return fmt.Sprintf("pass --to %d or --to %d", e.Ports[0], e.Ports[1]) },
			},
		},
		{
			name: "both ports are equal",
			override: func(e *testedge.Edge) map[string]string {
				return map[string]string{"--ports": fmt.Sprintf("%d,%d", e.Ports[0], e.Ports[0])}
			},
			code: 2,
			names: []edgeFunc{
				func(e *testedge.Edge) string { return fmt.Sprintf("both slot ports are %d", e.Ports[0]) },
				func(*testedge.Edge) string { return "set ports" },
			},
		},
		{
			name: "the config file named by -c is missing",
			args: func(t *testing.T, e *testedge.Edge) []string {
				return []string{"-c", filepath.Join(e.Dir, "nope.toml"), "switch"}
			},
			code: 2,
			names: []edgeFunc{
				func(e *testedge.Edge) string { return filepath.Join(e.Dir, "nope.toml") },
				func(*testedge.Edge) string { return "no such file" },
			},
		},
		{
			name: "the config file named by EDGESWITCH_CONFIG is missing",
			env: func(t *testing.T, e *testedge.Edge) []string {
				return []string{"EDGESWITCH_CONFIG=" + filepath.Join(e.Dir, "nope.toml")}
			},
			code: 2,
			names: []edgeFunc{
				func(e *testedge.Edge) string { return filepath.Join(e.Dir, "nope.toml") },
				func(*testedge.Edge) string { return "no such file" },
			},
		},
		{
			name: "the config file is not valid TOML",
			args: func(t *testing.T, e *testedge.Edge) []string {
				p := filepath.Join(e.Dir, "bad.toml")
				writeFile(t, p, "upstream = \"app\"\nports = [4000,\n")
				return []string{"-c", p, "switch"}
			},
			code:  2,
			names: []edgeFunc{func(e *testedge.Edge) string { return filepath.Join(e.Dir, "bad.toml") + ":2:" }},
		},
		{
			name: "the config file has an unknown setting",
			args: func(t *testing.T, e *testedge.Edge) []string {
				p := filepath.Join(e.Dir, "typo.toml")
				writeFile(t, p, "helth-path = \"/health\"\n")
				return []string{"-c", p, "switch"}
			},
			code: 2,
			names: []edgeFunc{
				func(e *testedge.Edge) string { return filepath.Join(e.Dir, "typo.toml") },
				func(*testedge.Edge) string { return "unknown setting helth-path" },
				func(*testedge.Edge) string { return "health-path" },
			},
			// Listing the settings there are is the fix for a typo.
			fix: regexp.MustCompile(`the settings are: .*health-path`),
		},
		{
			name:     "the upstream is not found",
			override: func(*testedge.Edge) map[string]string { return map[string]string{"--upstream": "shop"} },
			code:     2,
			names: []edgeFunc{
				func(*testedge.Edge) string { return "no upstream shop" },
				func(*testedge.Edge) string { return "found: app" },
				func(*testedge.Edge) string { return "set upstream" },
			},
		},
		{
			name: "the upstream is defined twice",
			setup: func(t *testing.T, e *testedge.Edge) {
				writeConf(t, e, "zz-again.conf", fmt.Sprintf("upstream app {\n    %s\n}\n", serverLine(e.Ports[0])))
			},
			code: 2,
			names: []edgeFunc{
				func(*testedge.Edge) string { return "upstream app is defined at" },
				func(e *testedge.Edge) string { return e.UpstreamFile + ":1" },
				func(e *testedge.Edge) string { return filepath.Join(confDir(e), "zz-again.conf") + ":1" },
			},
		},
		{
			name: "the upstream lists a server that is not a slot",
			setup: func(t *testing.T, e *testedge.Edge) {
				editUpstreamFile(t, e, func(s string) string {
					return strings.Replace(s, serverLine(e.Ports[0]), "server 10.0.0.5:80;", 1)
				})
			},
			code: 2,
			names: []edgeFunc{
				func(e *testedge.Edge) string { return e.UpstreamFile + ":2" },
				func(*testedge.Edge) string { return "10.0.0.5:80" },
			},
		},
		{
			name: "the upstream lists a foreign server beside the slot",
			setup: func(t *testing.T, e *testedge.Edge) {
				editUpstreamFile(t, e, func(s string) string {
					return strings.Replace(s, serverLine(e.Ports[0]), serverLine(e.Ports[0])+"\n    server 10.0.0.5:80 backup;", 1)
				})
			},
			code: 2,
			names: []edgeFunc{
				func(e *testedge.Edge) string { return e.UpstreamFile + ":3" },
				func(*testedge.Edge) string { return "10.0.0.5:80" },
			},
		},
		{
			name: "nginx-conf does not exist",
			override: func(e *testedge.Edge) map[string]string {
				return map[string]string{"--nginx-conf": filepath.Join(e.Dir, "nginx", "nosuch.conf")}
			},
			code: 2,
			names: []edgeFunc{
				func(e *testedge.Edge) string { return filepath.Join(e.Dir, "nginx", "nosuch.conf") },
				func(*testedge.Edge) string { return "no such file" },
			},
		},
		{
			name: "nginx-conf is a directory",
			override: func(e *testedge.Edge) map[string]string {
				return map[string]string{"--nginx-conf": filepath.Dir(e.NginxConf)}
			},
			code: 2,
			names: []edgeFunc{
				func(e *testedge.Edge) string { return filepath.Dir(e.NginxConf) },
				func(*testedge.Edge) string { return "is a directory" },
			},
		},
		{
			name:  "the upstream file is on a read-only file system",
			setup: readOnlyConfD,
			code:  1,
			names: []edgeFunc{
				func(e *testedge.Edge) string { return e.UpstreamFile },
				func(*testedge.Edge) string { return "read-only file system" },
			},
			// Nothing was written, so there is nothing to restore.
			notSays: "restore",
		},
		{
			name:  "the upstream file is on a full file system",
			setup: fullConfD,
			code:  1,
			names: []edgeFunc{
				func(e *testedge.Edge) string { return e.UpstreamFile },
				func(*testedge.Edge) string { return "no space" },
				func(*testedge.Edge) string { return "free space" },
			},
			notSays: "restore",
		},
		{
			name:     "the template unit does not exist",
			override: func(*testedge.Edge) map[string]string { return map[string]string{"--unit": "nosuch@.service"} },
			code:     2,
			names: []edgeFunc{
				func(*testedge.Edge) string { return "nosuch@.service" },
				func(*testedge.Edge) string { return "install" },
				func(*testedge.Edge) string { return "daemon-reload" },
			},
		},
		{
			name: "D-Bus is not reachable",
			env: func(t *testing.T, e *testedge.Edge) []string {
				return []string{"DBUS_SESSION_BUS_ADDRESS=unix:path=/nonexistent", "XDG_RUNTIME_DIR=" + t.TempDir()}
			},
			code: 2,
			names: []edgeFunc{
				func(*testedge.Edge) string { return "D-Bus" },
				func(*testedge.Edge) string { return "user systemd manager" },
			},
		},
		{
			name:     "the nginx binary is missing",
			override: func(*testedge.Edge) map[string]string { return map[string]string{"--nginx-bin": "/nonexistent/nginx"} },
			code:     2,
			names: []edgeFunc{
				func(*testedge.Edge) string { return "/nonexistent/nginx" },
				func(*testedge.Edge) string { return "set nginx-bin" },
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := testedge.New(t, testedge.Options{})
			if tt.setup != nil {
				tt.setup(t, e)
			}
			args := []string{"switch"}
			if tt.args != nil {
				args = tt.args(t, e)
			}
			var override map[string]string
			if tt.override != nil {
				override = tt.override(e)
			}
			var env []string
			if tt.env != nil {
				env = tt.env(t, e)
			}
			before := hashTree(t, filepath.Dir(e.NginxConf))
			load := startLoad(t, e, 4, http.MethodGet, "/")

			r := runBad(t, e, override, env, args...)

			stats := load.Stop()
			if r.code != tt.code {
				t.Errorf("exit %d, want %d", r.code, tt.code)
			}
			line := errorLine(t, r.stderr)
			for _, name := range tt.names {
				if want := name(e); !strings.Contains(line, want) {
					t.Errorf("the error does not say %q", want)
				}
			}
			fix := tt.fix
			if fix == nil {
				fix = fixWords
			}
			if !fix.MatchString(line) {
				t.Errorf("the error does not say what to do (%s)", fix)
			}
			if tt.notSays != "" && strings.Contains(r.stderr, tt.notSays) {
				t.Errorf("stderr says %q", tt.notSays)
			}
			if t.Failed() {
				t.Logf("stderr:\n%s", r.stderr)
			} else {
				t.Logf("exit %d: %s", r.code, line)
			}
			assertUnchanged(t, e, before)
			if st := unitState(t, e, e.Ports[1]); st == "active" || st == "activating" {
				t.Errorf("the target slot %d was left %s", e.Ports[1], st)
			}
			if stats.Failed != 0 {
				t.Errorf("traffic was interrupted: %s", stats)
			}
			if got := slotOf(t, e); got != strconv.Itoa(e.Ports[0]) {
				t.Errorf("traffic moved to slot %s, want %d", got, e.Ports[0])
			}
		})
	}
}

// TestSwitchThroughASymlinkedUpstreamFile: an upstream file that is a
// symlink (sites-enabled -> sites-available) is valid input. The switch
// succeeds, the link stays a link, its target gets the new server line and
// keeps its mode, and no other byte of the tree changes.
func TestSwitchThroughASymlinkedUpstreamFile(t *testing.T) {
	e := testedge.New(t, testedge.Options{})
	avail := filepath.Join(filepath.Dir(e.NginxConf), "available")
	target := filepath.Join(avail, "app.conf")
	if err := os.MkdirAll(avail, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(e.UpstreamFile, target); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(target, 0o640); err != nil {
		t.Fatal(err)
	}
	const link = "../available/app.conf"
	if err := os.Symlink(link, e.UpstreamFile); err != nil {
		t.Fatal(err)
	}
	old, err := os.ReadFile(target)
	if err != nil {
		t.Fatal(err)
	}
	want := strings.Replace(string(old), serverLine(e.Ports[0]), serverLine(e.Ports[1]), 1)
	before := hashTree(t, filepath.Dir(e.NginxConf))
	switchUnderLoad(t, e)
	fi, err := os.Lstat(e.UpstreamFile)
	switch {
	case err != nil:
		t.Fatal(err)
	case fi.Mode()&os.ModeSymlink == 0:
		t.Errorf("%s is no longer a symlink: %s", e.UpstreamFile, fi.Mode())
	default:
		if got, err := os.Readlink(e.UpstreamFile); err != nil || got != link {
			t.Errorf("the symlink points to %q (%v), want %q", got, err, link)
		}
	}
	if got, err := os.ReadFile(target); err != nil || string(got) != want {
		t.Errorf("the link's target %s (%v) is\n%q\nwant\n%q", target, err, got, want)
	}
	if fi, err := os.Stat(target); err != nil || fi.Mode().Perm() != 0o640 {
		t.Errorf("the link's target lost its mode 0640: %v %v", fi.Mode(), err)
	}
	assertOnlyChanged(t, e, before, e.UpstreamFile, target)
}

// TestSwitchKeepsCRLFLineEndings: config files with CRLF line endings are
// valid input. The switch succeeds and changes only the server line; every
// CR stays.
func TestSwitchKeepsCRLFLineEndings(t *testing.T) {
	e := testedge.New(t, testedge.Options{})
	for _, p := range []string{e.NginxConf, e.UpstreamFile} {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		writeFile(t, p, strings.ReplaceAll(string(data), "\n", "\r\n"))
	}
	old, err := os.ReadFile(e.UpstreamFile)
	if err != nil {
		t.Fatal(err)
	}
	want := strings.Replace(string(old), serverLine(e.Ports[0]), serverLine(e.Ports[1]), 1)
	before := hashTree(t, filepath.Dir(e.NginxConf))
	switchUnderLoad(t, e)
	got, err := os.ReadFile(e.UpstreamFile)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != want {
		t.Errorf("%s is\n%q\nwant\n%q", e.UpstreamFile, got, want)
	}
	if n, crlf := strings.Count(string(got), "\n"), strings.Count(string(got), "\r\n"); n != crlf {
		t.Errorf("%s has %d line ends, only %d of them CRLF", e.UpstreamFile, n, crlf)
	}
	assertOnlyChanged(t, e, before, e.UpstreamFile)
}

// assertOnlyChanged checks that no file under the nginx config directory
// but changed appeared, vanished or changed.
func assertOnlyChanged(t *testing.T, e *testedge.Edge, before map[string]string, changed ...string) {
	t.Helper()
	after := hashTree(t, filepath.Dir(e.NginxConf))
	skip := map[string]bool{}
	for _, p := range changed {
		skip[p] = true
	}
	for p, h := range before {
		if !skip[p] && after[p] != h {
			t.Errorf("%s changed", p)
		}
	}
	for p := range after {
		if _, ok := before[p]; !ok {
			t.Errorf("%s appeared", p)
		}
	}
}

func writeFile(t *testing.T, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

// switchUnderLoad switches to the second slot under light load and checks
// that it succeeded without a failed request.
func switchUnderLoad(t *testing.T, e *testedge.Edge) {
	t.Helper()
	load := startLoad(t, e, 8, http.MethodGet, "/")
	r := edgeswitch(t, e, "switch")
	stats := load.Stop()
	if r.code != 0 {
		t.Fatalf("exit %d, want 0:\n%s", r.code, r.stderr)
	}
	if stats.Failed != 0 {
		t.Errorf("traffic was interrupted: %s", stats)
	}
	if got := slotOf(t, e); got != strconv.Itoa(e.Ports[1]) {
		t.Errorf("nginx answers from slot %s, want %d", got, e.Ports[1])
	}
}
