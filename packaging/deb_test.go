// Package packaging holds what `make deb` needs beyond the binary; its test
// builds the .deb and checks it with dpkg-deb and lintian.
package packaging

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestDeb builds the .deb with `make deb` into a temporary directory and
// checks its files, its control fields, that lintian reports no error, and
// that the unpacked binary runs. It needs the Go toolchain (and the module
// proxy the first time, for nfpm), dpkg-deb and lintian, and root (lintian
// and the file owners), so it runs only without -short and as root.
func TestDeb(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the .deb and runs lintian: not under -short")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	for _, tool := range []string{"make", "dpkg-deb"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not found: %v", tool, err)
		}
	}
	if _, err := exec.LookPath("lintian"); err != nil {
		t.Fatal("lintian is not installed: apt-get install lintian")
	}

	dist := t.TempDir()
	build := exec.Command("make", "-C", "..", "deb")
	build.Env = append(os.Environ(), "DIST="+dist)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("make deb: %v\n%s", err, out)
	}
	debs, _ := filepath.Glob(filepath.Join(dist, "*.deb"))
	if len(debs) != 1 {
		t.Fatalf("make deb wrote %v to %s, want one .deb", debs, dist)
	}
	deb := debs[0]

	goarch := strings.TrimSpace(run(t, "go", "env", "GOARCH"))
	field := func(name string) string {
		return strings.TrimSpace(run(t, "dpkg-deb", "--field", deb, name))
	}
	version := field("Version")
	if !regexp.MustCompile(`^[0-9][A-Za-z0-9.+~]*-[A-Za-z0-9.+~]+$`).MatchString(version) {
		t.Errorf("Version %q is not <upstream>-<revision>", version)
	}
	if want := "edgeswitch_" + version + "_" + goarch + ".deb"; filepath.Base(deb) != want {
		t.Errorf("file is %s, want %s", filepath.Base(deb), want)
	}
	for name, want := range map[string]string{
		"Package":      "edgeswitch",
		"Architecture": goarch,
		"Section":      "admin",
		"Priority":     "optional",
		"Depends":      "systemd, default-dbus-system-bus | dbus-system-bus",
		"Recommends":   "nginx",
	} {
		if got := field(name); got != want {
			t.Errorf("%s: %q, want %q", name, got, want)
		}
	}
	if m := field("Maintainer"); !regexp.MustCompile(`^[^<>]+ <[^<>@]+@[^<>@]+>$`).MatchString(m) {
		t.Errorf("Maintainer %q is not Name <address>", m)
	}
	if d := strings.Split(field("Description"), "\n"); len(d) < 2 || d[0] == "" {
		t.Errorf("Description needs a short line and a long text, got %q", d)
	}
	// No maintainer script: the package enables no unit and starts nothing.
	if info := run(t, "dpkg-deb", "--info", deb); regexp.MustCompile(`\b(pre|post)(inst|rm)\b`).MatchString(info) {
		t.Errorf("the package has maintainer scripts:\n%s", info)
	}

	// dpkg-deb -c: "drwxr-xr-x root/root 0 2026-11-25 01:37 ./var/lib/edgeswitch/"
	entries := map[string]string{} // path -> mode and owner
	for _, line := range strings.Split(strings.TrimSpace(run(t, "dpkg-deb", "--contents", deb)), "\n") {
		f := strings.Fields(line)
		if len(f) < 6 {
			t.Fatalf("dpkg-deb --contents line %q", line)
		}
		p := strings.TrimSuffix(strings.TrimPrefix(f[len(f)-1], "."), "/")
		entries[p] = f[0] + " " + f[1]
	}
	for p, want := range map[string]string{
		"/usr/bin/edgeswitch":                                  "-rwxr-xr-x root/root",
		"/usr/share/man/man1/edgeswitch.1.gz":                  "-rw-r--r-- root/root",
		"/usr/share/bash-completion/completions/edgeswitch":    "-rw-r--r-- root/root",
		"/usr/share/zsh/vendor-completions/_edgeswitch":        "-rw-r--r-- root/root",
		"/usr/share/fish/vendor_completions.d/edgeswitch.fish": "-rw-r--r-- root/root",
		"/usr/share/doc/edgeswitch/examples/edgeswitch.toml":   "-rw-r--r-- root/root",
		"/usr/share/doc/edgeswitch/examples/app@.service":      "-rw-r--r-- root/root",
		"/usr/share/doc/edgeswitch/examples/app.conf":          "-rw-r--r-- root/root",
		"/usr/share/doc/edgeswitch/copyright":                  "-rw-r--r-- root/root",
		"/usr/share/doc/edgeswitch/changelog.Debian.gz":        "-rw-r--r-- root/root",
		"/usr/share/lintian/overrides/edgeswitch":              "-rw-r--r-- root/root",
		"/var/lib/edgeswitch":                                  "drwxr-xr-x root/root",
	} {
		if got, ok := entries[p]; !ok {
			t.Errorf("%s missing from the package", p)
		} else if got != want {
			t.Errorf("%s is %s, want %s", p, got, want)
		}
	}
	for p := range entries {
		if strings.Contains(p, "/systemd/") || strings.HasPrefix(p, "/etc/") {
			t.Errorf("%s: the package installs no unit and no config", p)
		}
	}

	// lintian exits non-zero on an error; the E: lines say which.
	lint := exec.Command("lintian", "--tag-display-limit", "0", deb)
	out, err := lint.CombinedOutput()
	t.Logf("lintian %s:\n%s", deb, out)
	for _, line := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(line, "E: ") {
			t.Errorf("lintian error: %s", line)
		}
	}
	if err != nil && !bytes.Contains(out, []byte("E: ")) {
		t.Errorf("lintian: %v", err)
	}

	// The unpacked binary runs and knows the package's version.
	root := t.TempDir()
	run(t, "dpkg-deb", "--extract", deb, root)
	if got := strings.TrimSpace(run(t, filepath.Join(root, "usr/bin/edgeswitch"), "--version")); got != version {
		t.Errorf("edgeswitch --version: %q, want %q", got, version)
	}
	if man := run(t, "gzip", "-dc", filepath.Join(root, "usr/share/man/man1/edgeswitch.1.gz")); !strings.Contains(man, ".TH EDGESWITCH 1") {
		t.Errorf("the man page has no .TH EDGESWITCH 1 line")
	}
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, stderr.String())
	}
	return string(out)
}
