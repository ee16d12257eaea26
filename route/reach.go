package route

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
)

// creds are who a process runs as, for the file system: its effective
// user and its groups.
type creds struct {
	uid  int
	gids []int
}

func (c creds) String() string {
	if c.uid == 0 {
		return "root"
	}
	return "uid " + strconv.Itoa(c.uid)
}

// readCreds reads a process's effective uid and gid and its supplementary
// groups from its status file under procRoot.
func readCreds(procRoot string, pid int) (creds, error) {
	b, err := os.ReadFile(filepath.Join(procRoot, strconv.Itoa(pid), "status"))
	if err != nil {
		return creds{}, fmt.Errorf("who nginx's workers run as: %w", err)
	}
	var c creds
	found := 0
	for line := range strings.SplitSeq(string(b), "\n") {
		key, val, _ := strings.Cut(line, ":")
		f := strings.Fields(val)
		switch {
		case key == "Uid" && len(f) >= 2:
			c.uid, err = strconv.Atoi(f[1])
			found++
		case key == "Gid" && len(f) >= 2:
			var g int
			g, err = strconv.Atoi(f[1])
			c.gids = append(c.gids, g)
			found++
		case key == "Groups":
			for _, w := range f {
				if g, gerr := strconv.Atoi(w); gerr == nil && !slices.Contains(c.gids, g) {
					c.gids = append(c.gids, g)
				}
			}
		}
		if err != nil {
			return creds{}, fmt.Errorf("who nginx's workers run as: %s: %w", line, err)
		}
	}
	if found != 2 {
		return creds{}, fmt.Errorf("who nginx's workers run as: no Uid and Gid in /proc/%d/status", pid)
	}
	return c, nil
}

// reach checks that c can search every directory on the way to path and,
// when connect is set, write to path (what connecting to a unix socket
// takes); else path is a directory c must be able to search.
func (c creds) reach(path string, connect bool) error {
	if c.uid == 0 {
		return nil
	}
	clean := filepath.Clean(path)
	for dir := clean; ; dir = filepath.Dir(dir) {
		last := dir == clean
		need, what := uint32(1), "search" // x
		if last && connect {
			need, what = 2, "connect to" // w
		}
		fi, err := os.Stat(dir)
		if err != nil {
			return fmt.Errorf("nginx's workers cannot reach %s: %w", path, err)
		}
		if !c.may(fi, need) {
			return fmt.Errorf("nginx's workers (%s) cannot %s %s (mode %v, owner uid %d): %s",
				c, what, dir, fi.Mode(), fi.Sys().(*syscall.Stat_t).Uid, fixHint(dir, last && connect))
		}
		if dir == "/" {
			return nil
		}
	}
}

// may reports whether c has the permission bits need (1 x, 2 w) on fi,
// as the kernel picks them: owner's, else group's, else other's.
func (c creds) may(fi fs.FileInfo, need uint32) bool {
	st := fi.Sys().(*syscall.Stat_t)
	perm := uint32(fi.Mode().Perm())
	switch {
	case int(st.Uid) == c.uid:
		perm >>= 6
	case slices.Contains(c.gids, int(st.Gid)):
		perm >>= 3
	}
	return perm&need == need
}

// fixHint says how to let nginx's workers through.
func fixHint(path string, socket bool) string {
	if socket {
		return "make the app create its socket writable for them (mode 0666, or its group theirs)"
	}
	return "chmod o+x " + path + " (or give it their group)"
}
