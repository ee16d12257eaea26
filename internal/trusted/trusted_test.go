package trusted

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCheck(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: the paths must be root's")
	}
	tests := []struct {
		name  string
		setup func(t *testing.T, dir string) string // returns the path to check
		says  string                                // "" when it must pass
	}{
		{"a root file in root directories", func(t *testing.T, dir string) string {
			return file(t, filepath.Join(dir, "edgeswitch.toml"), 0o644)
		}, ""},
		{"a file writable by others", func(t *testing.T, dir string) string {
			return file(t, filepath.Join(dir, "edgeswitch.toml"), 0o666)
		}, "is writable by group or others (-rw-rw-rw-): chmod go-w "},
		{"a file of another user", func(t *testing.T, dir string) string {
			p := file(t, filepath.Join(dir, "edgeswitch.toml"), 0o644)
			chown(t, p, 65534)
			return p
		}, "is owned by uid 65534, not root: chown root:root "},
		{"a directory above writable by group", func(t *testing.T, dir string) string {
			sub := filepath.Join(dir, "etc")
			mkdir(t, sub, 0o775)
			return file(t, filepath.Join(sub, "edgeswitch.toml"), 0o644)
		}, "/etc (it holds "},
		{"a root sticky directory writable by all, as /tmp", func(t *testing.T, dir string) string {
			sub := filepath.Join(dir, "tmp")
			mkdir(t, sub, os.ModeSticky|0o777)
			return file(t, filepath.Join(sub, "edgeswitch.toml"), 0o644)
		}, ""},
		{"a sticky directory of another user", func(t *testing.T, dir string) string {
			sub := filepath.Join(dir, "tmp")
			mkdir(t, sub, os.ModeSticky|0o777)
			chown(t, sub, 65534)
			return file(t, filepath.Join(sub, "edgeswitch.toml"), 0o644)
		}, "is owned by uid 65534"},
		{"a root file through a link in a directory others may write: they could re-point it", func(t *testing.T, dir string) string {
			target := file(t, filepath.Join(dir, "real.toml"), 0o644)
			open := filepath.Join(dir, "open")
			mkdir(t, open, 0o777)
			link := filepath.Join(open, "edgeswitch.toml")
			if err := os.Symlink(target, link); err != nil {
				t.Fatal(err)
			}
			return link
		}, "/open (it holds "},
		{"a symlink to a file writable by others: the target counts", func(t *testing.T, dir string) string {
			target := file(t, filepath.Join(dir, "real.toml"), 0o666)
			link := filepath.Join(dir, "edgeswitch.toml")
			if err := os.Symlink(target, link); err != nil {
				t.Fatal(err)
			}
			return link
		}, "real.toml (it holds "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir() // /tmp/...: root's, 0755, under the sticky /tmp
			err := Check(tt.setup(t, dir))
			switch {
			case tt.says == "" && err != nil:
				t.Errorf("Check = %v, want it to pass", err)
			case tt.says != "" && (!errors.Is(err, ErrUntrusted) || !strings.Contains(err.Error(), tt.says)):
				t.Errorf("Check = %v, want ErrUntrusted saying %q", err, tt.says)
			}
		})
	}
}

func TestCheckOfAMissingPath(t *testing.T) {
	if err := Check(filepath.Join(t.TempDir(), "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Check = %v, want ErrNotExist", err)
	}
}

func file(t *testing.T, p string, mode os.FileMode) string {
	t.Helper()
	if err := os.WriteFile(p, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
	return p
}

func mkdir(t *testing.T, p string, mode os.FileMode) {
	t.Helper()
	if err := os.Mkdir(p, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
}

func chown(t *testing.T, p string, uid int) {
	t.Helper()
	if err := os.Chown(p, uid, uid); err != nil {
		t.Fatal(err)
	}
}
