package nginx

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Procs reads process facts from a /proc-like tree. Root is "/proc" in
// production; tests point it at a directory of fake <pid>/stat files.
type Procs struct{ Root string }

// Generation is the set of worker PIDs of one nginx master at one moment.
// A reload that nginx accepts starts a new generation; the old one finishes
// its in-flight requests and exits.
type Generation struct {
	Master  int
	Workers []int
}

// Children returns the PIDs of the live processes whose parent is pid,
// sorted ascending. For an nginx master these are its workers (and cache
// manager/loader), including old workers still draining after a reload.
func (p Procs) Children(pid int) ([]int, error) {
	entries, err := os.ReadDir(p.Root)
	if err != nil {
		return nil, fmt.Errorf("list processes: %w", err)
	}
	var children []int
	for _, e := range entries {
		child, err := strconv.Atoi(e.Name())
		if err != nil {
			continue // not a process: "self", "meminfo", ...
		}
		state, ppid, err := p.stat(child)
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ESRCH) {
			continue // exited since ReadDir
		}
		if err != nil {
			return nil, err
		}
		if ppid == pid && running(state) {
			children = append(children, child)
		}
	}
	slices.Sort(children)
	return children, nil
}

// Alive reports whether pid exists and has not exited: a zombie (exited,
// not yet reaped by its parent) counts as gone, since it serves nothing.
func (p Procs) Alive(pid int) bool {
	state, _, err := p.stat(pid)
	return err == nil && running(state)
}

// running reports whether a process in state (the third field of stat) has
// not exited: Z is a zombie, X dead.
func running(state byte) bool {
	return state != 'Z' && state != 'X'
}

// Snapshot returns the current children of master.
func (p Procs) Snapshot(master int) (Generation, error) {
	workers, err := p.Children(master)
	if err != nil {
		return Generation{}, err
	}
	return Generation{Master: master, Workers: workers}, nil
}

// WaitNewGeneration polls every interval until old.Master has a child that is
// not in old.Workers, and returns the new children seen at that moment. A
// master that keeps only its old workers for timeout has rejected the
// config: the error wraps ErrRejected. So does a refusal that refused
// reports at a poll (nginx's own word, which comes long before the
// timeout); it may be nil. A master that exits wraps ErrNotActive.
func (p Procs) WaitNewGeneration(ctx context.Context, old Generation, timeout, interval time.Duration, refused func() string) (Generation, error) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		if !p.Alive(old.Master) {
			return Generation{}, fmt.Errorf("nginx master %d exited during the reload: %w", old.Master, ErrNotActive)
		}
		now, err := p.Snapshot(old.Master)
		if err != nil {
			return Generation{}, err
		}
		var fresh []int
		for _, pid := range now.Workers {
			if !slices.Contains(old.Workers, pid) {
				fresh = append(fresh, pid)
			}
		}
		if len(fresh) > 0 {
			return Generation{Master: old.Master, Workers: fresh}, nil
		}
		if refused != nil {
			if why := refused(); why != "" {
				return Generation{}, fmt.Errorf("%w: %s", ErrRejected, why)
			}
		}
		select {
		case <-ctx.Done():
			return Generation{}, fmt.Errorf("wait for new nginx workers: %w", ctx.Err())
		case <-deadline.C:
			return Generation{}, fmt.Errorf("%w: no new workers under master %d after %s", ErrRejected, old.Master, timeout)
		case <-tick.C:
		}
	}
}

// WaitGone polls every interval until none of pids is alive, or timeout or
// ctx ends, and returns those still alive then (nil when all are gone). A
// timeout is not an error: old workers that outlive it are only slow to
// drain, and the caller decides how loudly to warn.
func (p Procs) WaitGone(ctx context.Context, pids []int, timeout, interval time.Duration) []int {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		var alive []int
		for _, pid := range pids {
			if p.Alive(pid) {
				alive = append(alive, pid)
			}
		}
		if len(alive) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return alive
		case <-deadline.C:
			return alive
		case <-tick.C:
		}
		pids = alive
	}
}

// stat reads the state and parent PID from <Root>/<pid>/stat. The second
// field, the command name in parentheses, may itself hold spaces and ')',
// so the fields are taken from after the last ')'.
func (p Procs) stat(pid int) (state byte, ppid int, err error) {
	path := filepath.Join(p.Root, strconv.Itoa(pid), "stat")
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, 0, err
	}
	s := string(b)
	var fields []string
	if i := strings.LastIndexByte(s, ')'); i >= 0 {
		fields = strings.Fields(s[i+1:])
	}
	if len(fields) < 2 || len(fields[0]) != 1 {
		return 0, 0, fmt.Errorf("parse %s: unexpected format %q", path, s)
	}
	ppid, err = strconv.Atoi(fields[1])
	if err != nil {
		return 0, 0, fmt.Errorf("parse %s: parent pid: %w", path, err)
	}
	return fields[0][0], ppid, nil
}

// ShuttingDown returns those of pids that nginx has told to finish and exit
// after a reload: their title (/proc/<pid>/cmdline, set by nginx) says
// "is shutting down". They still serve in-flight requests.
func (p Procs) ShuttingDown(pids []int) []int {
	var out []int
	for _, pid := range pids {
		b, err := os.ReadFile(filepath.Join(p.Root, strconv.Itoa(pid), "cmdline"))
		if err == nil && strings.Contains(string(b), "is shutting down") {
			out = append(out, pid)
		}
	}
	return out
}

// Holders returns, for each socket inode of ls that some process holds,
// the PIDs holding a descriptor of it, read from <Root>/PID/fd links
// ("socket:[INODE]"). Denied reports that some process's descriptors
// could not be read: a caller who is not root cannot read other users'.
// A process that exits during the walk is skipped.
func (p Procs) Holders(ls []Listener) (holders map[uint64][]int, denied bool, err error) {
	want := map[string]uint64{}
	for _, l := range ls {
		want["socket:["+strconv.FormatUint(l.Inode, 10)+"]"] = l.Inode
	}
	entries, err := os.ReadDir(p.Root)
	if err != nil {
		return nil, false, fmt.Errorf("list processes: %w", err)
	}
	holders = map[uint64][]int{}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		dir := filepath.Join(p.Root, e.Name(), "fd")
		fds, err := os.ReadDir(dir)
		if errors.Is(err, fs.ErrPermission) {
			denied = true
			continue
		}
		for _, fd := range fds {
			link, err := os.Readlink(filepath.Join(dir, fd.Name()))
			denied = denied || errors.Is(err, fs.ErrPermission)
			if inode, ok := want[link]; ok && !slices.Contains(holders[inode], pid) {
				holders[inode] = append(holders[inode], pid)
			}
		}
	}
	return holders, denied, nil
}

// Cgroup returns pid's cgroup in systemd's hierarchy, as a unit's
// ControlGroup property names it: the path of the "0::" line of
// <Root>/PID/cgroup (cgroup v2), or of the "name=systemd" line where there
// is one (v1 and hybrid, where systemd's own hierarchy is that one).
func (p Procs) Cgroup(pid int) (string, error) {
	path := filepath.Join(p.Root, strconv.Itoa(pid), "cgroup")
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	cg := ""
	for line := range strings.Lines(string(b)) {
		_, rest, _ := strings.Cut(strings.TrimSuffix(line, "\n"), ":")
		controllers, dir, ok := strings.Cut(rest, ":")
		switch {
		case ok && controllers == "name=systemd":
			return dir, nil
		case ok && controllers == "" && strings.HasPrefix(line, "0:"):
			cg = dir
		}
	}
	if cg == "" {
		return "", fmt.Errorf("%s: no systemd or cgroup v2 line", path)
	}
	return cg, nil
}

// Comm returns pid's program name (<Root>/PID/comm), or "?" when it cannot
// be read.
func (p Procs) Comm(pid int) string {
	b, err := os.ReadFile(filepath.Join(p.Root, strconv.Itoa(pid), "comm"))
	if err != nil {
		return "?"
	}
	return strings.TrimSpace(string(b))
}
