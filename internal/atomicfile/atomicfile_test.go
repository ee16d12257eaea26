package atomicfile

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const (
	original = "upstream app {\n    server 127.0.0.1:4000;\n}\n"
	switched = "upstream app {\n    server 127.0.0.1:4001;\n}\n"
)

func TestWrite(t *testing.T) {
	tests := []struct {
		name string
		// setup makes the file in dir and returns the path to write to.
		setup func(t *testing.T, dir string) string
		// check looks at what else should hold after the write.
		check func(t *testing.T, dir string)
		// entries is what dir holds after the write, no temp file.
		entries []string
	}{
		{
			name: "the file's mode is kept",
			setup: func(t *testing.T, dir string) string {
				return writeFile(t, filepath.Join(dir, "app.conf"), original, 0o640)
			},
			check: func(t *testing.T, dir string) {
				fi, err := os.Stat(filepath.Join(dir, "app.conf"))
				if err != nil {
					t.Fatal(err)
				}
				if got := fi.Mode(); got != 0o640 {
					t.Errorf("mode %v, want %v", got, fs.FileMode(0o640))
				}
			},
		},
		{
			name:  "a new file gets the mode asked for",
			setup: func(t *testing.T, dir string) string { return filepath.Join(dir, "app.conf") },
			check: func(t *testing.T, dir string) {
				fi, err := os.Stat(filepath.Join(dir, "app.conf"))
				if err != nil {
					t.Fatal(err)
				}
				if got := fi.Mode(); got != 0o600 {
					t.Errorf("mode %v, want %v", got, fs.FileMode(0o600))
				}
			},
		},
		{
			name: "the file's owner is kept",
			setup: func(t *testing.T, dir string) string {
				if os.Geteuid() != 0 {
					t.Skip("only root can give a file to another owner")
				}
				path := writeFile(t, filepath.Join(dir, "app.conf"), original, 0o644)
				if err := os.Chown(path, 65534, 65534); err != nil {
					t.Fatal(err)
				}
				return path
			},
			check: func(t *testing.T, dir string) {
				fi, err := os.Stat(filepath.Join(dir, "app.conf"))
				if err != nil {
					t.Fatal(err)
				}
				st := fi.Sys().(*syscall.Stat_t)
				if st.Uid != 65534 || st.Gid != 65534 {
					t.Errorf("owner %d:%d, want 65534:65534", st.Uid, st.Gid)
				}
			},
		},
		{
			name: "a symlink stays a link and its target gets the new contents",
			setup: func(t *testing.T, dir string) string {
				if err := os.Mkdir(filepath.Join(dir, "available"), 0o755); err != nil {
					t.Fatal(err)
				}
				writeFile(t, filepath.Join(dir, "available", "app.conf"), original, 0o644)
				link := filepath.Join(dir, "app.conf")
				if err := os.Symlink("available/app.conf", link); err != nil {
					t.Fatal(err)
				}
				return link
			},
			check: func(t *testing.T, dir string) {
				target, err := os.Readlink(filepath.Join(dir, "app.conf"))
				if err != nil {
					t.Fatalf("app.conf is no longer a symlink: %v", err)
				}
				if target != "available/app.conf" {
					t.Errorf("link points to %q, want available/app.conf", target)
				}
				checkDir(t, filepath.Join(dir, "available"), "app.conf")
			},
			entries: []string{"app.conf", "available"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path := tt.setup(t, dir)
			if err := Write(path, []byte(switched), 0o600); err != nil {
				t.Fatal(err)
			}
			got, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(switched, string(got)); diff != "" {
				t.Errorf("contents (-want +got):\n%s", diff)
			}
			if tt.entries == nil {
				tt.entries = []string{"app.conf"}
			}
			checkDir(t, dir, tt.entries...)
			if tt.check != nil {
				tt.check(t, dir)
			}
		})
	}
}

func TestWriteFailure(t *testing.T) {
	tests := []struct {
		name string
		// dir returns a directory where writing will fail.
		dir       func(t *testing.T) string
		data      []byte
		wantIs    []error
		wantParts []string
	}{
		{
			name:      "a read-only directory leaves the original",
			dir:       readOnlyDir,
			data:      []byte(switched),
			wantIs:    []error{syscall.EROFS, fs.ErrPermission},
			wantParts: []string{"write ", "app.conf"},
		},
		{
			name: "a full file system leaves the original and no partial temp file",
			dir: func(t *testing.T) string {
				return mountTmpfs(t, "size=8k")
			},
			data:      bytes.Repeat([]byte("# padding\n"), 10_000),
			wantIs:    []error{syscall.ENOSPC},
			wantParts: []string{"app.conf", "(free space on "},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := tt.dir(t)
			path := filepath.Join(dir, "app.conf")
			err := Write(path, tt.data, 0o600)
			if err == nil {
				t.Fatal("got no error")
			}
			if !slices.ContainsFunc(tt.wantIs, func(target error) bool { return errors.Is(err, target) }) {
				t.Errorf("error %q wraps none of %q", err, tt.wantIs)
			}
			for _, part := range tt.wantParts {
				if !strings.Contains(err.Error(), part) {
					t.Errorf("error %q does not contain %q", err, part)
				}
			}
			checkDir(t, dir, "app.conf")
			got, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(original, string(got)); diff != "" {
				t.Errorf("original changed (-want +got):\n%s", diff)
			}
		})
	}
}

// readOnlyDir returns a directory holding app.conf with the original
// contents, where no file can be created. Root writes through permission
// bits, so as root it is a tmpfs mounted read-only.
func readOnlyDir(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		dir := t.TempDir()
		writeFile(t, filepath.Join(dir, "app.conf"), original, 0o644)
		if err := os.Chmod(dir, 0o555); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.Chmod(dir, 0o755) })
		return dir
	}
	dir := mountTmpfs(t, "size=64k")
	if err := syscall.Mount("tmpfs", dir, "tmpfs", syscall.MS_REMOUNT|syscall.MS_RDONLY, ""); err != nil {
		t.Fatalf("remount %s read-only: %v", dir, err)
	}
	return dir
}

// mountTmpfs mounts a tmpfs with opts on a temp dir, writes app.conf with
// the original contents there and unmounts it at cleanup. It needs root.
func mountTmpfs(t *testing.T, opts string) string {
	t.Helper()
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, opts); err != nil {
		t.Skipf("cannot mount a tmpfs: %v", err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, 0); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	writeFile(t, filepath.Join(dir, "app.conf"), original, 0o644)
	return dir
}

func writeFile(t *testing.T, path, data string, mode fs.FileMode) string {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil { // past the umask
		t.Fatal(err)
	}
	return path
}

// checkDir fails unless dir holds exactly the entries want, which catches a
// temp file left behind.
func checkDir(t *testing.T, dir string, want ...string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range entries {
		got = append(got, e.Name())
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("entries of %s (-want +got):\n%s", dir, diff)
	}
}

// TestWriteOwnRefusesASymlink: a link planted where edgeswitch keeps its
// state must not make root write to what it points at.
func TestWriteOwnRefusesASymlink(t *testing.T) {
	dir := t.TempDir()
	victim := writeFile(t, filepath.Join(dir, "victim"), original, 0o644)
	link := filepath.Join(dir, "app.pending")
	if err := os.Symlink(victim, link); err != nil {
		t.Fatal(err)
	}
	err := WriteOwn(link, []byte(switched), 0o644)
	if !errors.Is(err, ErrSymlink) || !strings.Contains(err.Error(), link) {
		t.Errorf("WriteOwn through a planted link = %v, want ErrSymlink naming %s", err, link)
	}
	if got, _ := os.ReadFile(victim); string(got) != original {
		t.Errorf("the victim changed: %q", got)
	}
	checkDir(t, dir, "app.pending", "victim")
	if err := WriteOwn(filepath.Join(dir, "own"), []byte(switched), 0o600); err != nil {
		t.Errorf("WriteOwn of a new file: %v", err)
	}
}

func TestLink(t *testing.T) {
	dir := t.TempDir()
	link := filepath.Join(dir, "app.sock")
	for _, target := range []string{"/run/app/4000.sock", "/run/app/4001.sock"} {
		if err := Link(link, target); err != nil {
			t.Fatal(err)
		}
		if got, err := os.Readlink(link); err != nil || got != target {
			t.Errorf("Readlink = %q, %v; want %q", got, err, target)
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil || len(entries) != 1 {
		t.Errorf("dir holds %v (%v); want the link alone, no temp link left", entries, err)
	}
}

func TestLinkReplacesAFileWithoutWritingIt(t *testing.T) {
	dir := t.TempDir()
	victim := filepath.Join(dir, "victim")
	if err := os.WriteFile(victim, []byte("keep"), 0o644); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "app.sock")
	if err := os.Symlink(victim, link); err != nil {
		t.Fatal(err)
	}
	if err := Link(link, "/run/app/4001.sock"); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(victim); string(b) != "keep" {
		t.Errorf("the old link's target became %q; a link is replaced, never followed", b)
	}
}

func TestLinkFailure(t *testing.T) {
	err := Link(filepath.Join(t.TempDir(), "missing", "app.sock"), "/run/app/4001.sock")
	if err == nil || !strings.Contains(err.Error(), "app.sock") {
		t.Errorf("Link into a missing dir: %v; want an error naming the link", err)
	}
}
