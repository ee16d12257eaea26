package testedge

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
)

// built are the binaries this process built, by command, shared by its
// edges and machines: one `go build` per process instead of one link each.
var built struct {
	sync.Mutex
	paths map[string]string
}

// BuildDemoapp builds cmd/demoapp once per process (see build) and returns
// its path, which any user may run: tests run it outside an edge too, as
// a squatter of another user.
func BuildDemoapp(ctx context.Context) (string, error) { return build(ctx, "demoapp") }

// build builds ./cmd/<name> once per process into a per-user path under
// the temp dir named by the binary's hash, and returns that path. Test
// processes of one source share the file (replaced atomically with the
// same bytes, so they neither clash nor pile up copies); those of another
// (a checkout at another commit, run at the same time) get their own: with
// one fixed path, whichever built last served all of them, and a flag one
// source added was unknown to the edges of the other.
func build(ctx context.Context, name string) (string, error) {
	built.Lock()
	defer built.Unlock()
	if p := built.paths[name]; p != "" {
		return p, nil
	}
	root, err := moduleRoot(ctx)
	if err != nil {
		return "", err
	}
	dir := filepath.Join(os.TempDir(), fmt.Sprintf("edgeswitch-testedge-%d", os.Getuid()))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	tmp := filepath.Join(dir, fmt.Sprintf("%s.%d.tmp", name, os.Getpid()))
	cmd := exec.CommandContext(ctx, "go", "build", "-o", tmp, "./cmd/"+name)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("go build ./cmd/%s in %s: %w: %s", name, root, err, strings.TrimSpace(string(out)))
	}
	sum, err := fileHash(tmp)
	if err != nil {
		os.Remove(tmp)
		return "", err
	}
	path := filepath.Join(dir, name+"-"+sum[:16])
	if err := os.Rename(tmp, path); err != nil {
		return "", err
	}
	if built.paths == nil {
		built.paths = map[string]string{}
	}
	built.paths[name] = path
	return path, nil
}

// fileHash is the SHA-256 of the file at path, in hex.
func fileHash(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// moduleRoot finds the edgeswitch module: from this source file when the
// build kept its path (not -trimpath), else from `go env GOMOD`.
func moduleRoot(ctx context.Context) (string, error) {
	if _, file, _, ok := runtime.Caller(0); ok && filepath.IsAbs(file) {
		root := filepath.Join(filepath.Dir(file), "..", "..")
		if _, err := os.Stat(filepath.Join(root, "cmd", "demoapp")); err == nil {
			return root, nil
		}
	}
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	gomod := strings.TrimSpace(string(out))
	if err != nil || gomod == "" || gomod == os.DevNull {
		return "", fmt.Errorf("cannot find the edgeswitch module to build cmd/demoapp (go env GOMOD: %q, %v); run from inside it", gomod, err)
	}
	return filepath.Dir(gomod), nil
}

// copyFile copies src to dst with mode perm, replacing dst.
func copyFile(src, dst string, perm os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, perm)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
