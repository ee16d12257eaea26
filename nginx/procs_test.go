package nginx

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/edgeswitch/edgeswitch/internal/fakeproc"
)

// proc is one process of a fake /proc tree.
type proc struct {
	pid, ppid int
	comm      string
	state     byte
}

// master and its workers are the processes most tests start from. The
// names hold the ')' and spaces that trip a parser splitting at the first
// ')' or on spaces.
var (
	master  = proc{pid: 800, ppid: 1, comm: "nginx: master process /usr/sbin/nginx", state: 'S'}
	worker1 = proc{pid: 801, ppid: 800, comm: "nginx: worker) process", state: 'S'}
	worker2 = proc{pid: 1002, ppid: 800, comm: "a) Z 1 (b", state: 'R'}
	fresh   = proc{pid: 900, ppid: 800, comm: "nginx: worker process", state: 'S'}
	other   = proc{pid: 700, ppid: 1, comm: "sleep", state: 'S'}
)

// fakeProc returns a fake /proc tree holding procs, plus the entries a real
// one has that are not processes.
func fakeProc(t *testing.T, procs ...proc) string {
	t.Helper()
	root := t.TempDir()
	for _, dir := range []string{"self", "sys"} {
		if err := os.Mkdir(filepath.Join(root, dir), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(root, "meminfo"), []byte("MemTotal: 1 kB\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, p := range procs {
		writeProc(t, root, p)
	}
	return root
}

// writeProc adds p to the fake /proc tree at root.
func writeProc(t *testing.T, root string, p proc) {
	t.Helper()
	dir := filepath.Join(root, strconv.Itoa(p.pid))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	stat := fmt.Sprintf("%d (%s) %c %d %d %d 0 -1 4194624 105 0 0 0 1 2 0 0 20 0 1 0 3064 11235328 412 18446744073709551615\n",
		p.pid, p.comm, p.state, p.ppid, p.pid, p.pid)
	if err := os.WriteFile(filepath.Join(dir, "stat"), []byte(stat), 0o644); err != nil {
		t.Fatal(err)
	}
}

// later runs change in the background once a few polls have seen the tree
// as it was. change must be atomic (a rename): the tree is being read.
func later(t *testing.T, change func() error) {
	t.Helper()
	done := make(chan struct{})
	t.Cleanup(func() { <-done })
	go func() {
		defer close(done)
		time.Sleep(10 * time.Millisecond)
		if err := change(); err != nil {
			t.Error(err)
		}
	}()
}

func zombie(p proc) proc {
	p.state = 'Z'
	return p
}

func TestChildren(t *testing.T) {
	tests := []struct {
		name    string
		procs   []proc
		pid     int
		want    []int
		wantErr bool
	}{
		{
			name:  "the master's workers are its children, sorted by number",
			procs: []proc{master, worker2, worker1, other},
			pid:   800,
			want:  []int{801, 1002},
		},
		{
			name:  "a process without children has none",
			procs: []proc{master, worker1, other},
			pid:   700,
		},
		{
			name:  "an exited child not yet reaped is not counted",
			procs: []proc{master, worker1, zombie(worker2)},
			pid:   800,
			want:  []int{801},
		},
		{
			name:    "a stat file that cannot be parsed is an error",
			procs:   []proc{master, {pid: 801, ppid: 800, comm: "x", state: ' '}},
			pid:     800,
			wantErr: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Procs{Root: fakeProc(t, tt.procs...)}.Children(tt.pid)
			if (err != nil) != tt.wantErr {
				t.Fatalf("got error %v, want error: %t", err, tt.wantErr)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("children (-want +got):\n%s", diff)
			}
		})
	}
}

func TestAlive(t *testing.T) {
	p := Procs{Root: fakeProc(t, master, worker1, zombie(worker2))}
	tests := []struct {
		name string
		pid  int
		want bool
	}{
		{name: "a running process is alive", pid: 801, want: true},
		{name: "a zombie is not", pid: 1002},
		{name: "a process that does not exist is not", pid: 4242},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := p.Alive(tt.pid); got != tt.want {
				t.Errorf("Alive(%d) = %t, want %t", tt.pid, got, tt.want)
			}
		})
	}
}

func TestWaitNewGeneration(t *testing.T) {
	old := Generation{Master: 800, Workers: []int{801, 1002}}
	tests := []struct {
		name   string
		procs  []proc
		starts proc // a process that starts after a few polls, if any
		cancel bool
		want   Generation
		wantIs error
	}{
		{
			name:  "a worker beside the old ones is the new generation",
			procs: []proc{master, worker1, worker2, fresh},
			want:  Generation{Master: 800, Workers: []int{900}},
		},
		{
			name:   "a worker that starts during the wait is found",
			procs:  []proc{master, worker1, worker2},
			starts: fresh,
			want:   Generation{Master: 800, Workers: []int{900}},
		},
		{
			name:   "only the old workers until the timeout means nginx rejected the config",
			procs:  []proc{master, worker1, worker2, other},
			wantIs: ErrRejected,
		},
		{
			name:   "old workers gone and none new is a rejection too",
			procs:  []proc{master},
			wantIs: ErrRejected,
		},
		{
			name:   "a master that exited is not running, not a rejection",
			procs:  []proc{worker1, worker2},
			wantIs: ErrNotActive,
		},
		{
			name:   "a zombie master is not running",
			procs:  []proc{zombie(master), worker1},
			wantIs: ErrNotActive,
		},
		{
			name:   "the wait ends with the context",
			procs:  []proc{master, worker1, worker2},
			cancel: true,
			wantIs: context.Canceled,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := fakeProc(t, tt.procs...)
			timeout := 30 * time.Millisecond
			if tt.starts.pid != 0 {
				stage := t.TempDir()
				writeProc(t, stage, tt.starts)
				name := strconv.Itoa(tt.starts.pid)
				later(t, func() error { return os.Rename(filepath.Join(stage, name), filepath.Join(root, name)) })
				timeout = 10 * time.Second
			}
			ctx, cancel := context.WithCancel(t.Context())
			t.Cleanup(cancel)
			if tt.cancel {
				cancel()
			}
			got, err := Procs{Root: root}.WaitNewGeneration(ctx, old, timeout, time.Millisecond, nil)
			if !errors.Is(err, tt.wantIs) {
				t.Fatalf("got error %v, want %v", err, tt.wantIs)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("generation (-want +got):\n%s", diff)
			}
		})
	}
}

func TestWaitGone(t *testing.T) {
	tests := []struct {
		name    string
		procs   []proc
		pids    []int
		exiting int // a PID whose process exits after a few polls
		want    []int
	}{
		{
			name:  "workers that exited are gone",
			procs: []proc{master, fresh},
			pids:  []int{801, 1002},
		},
		{
			name:  "exited workers not yet reaped are gone",
			procs: []proc{master, zombie(worker1), zombie(worker2)},
			pids:  []int{801, 1002},
		},
		{
			name:    "a worker that exits during the wait is gone",
			procs:   []proc{master, worker1},
			pids:    []int{801, 1002},
			exiting: 801,
		},
		{
			name:  "workers still running at the timeout are returned",
			procs: []proc{master, worker1, worker2},
			pids:  []int{801, 1002, 1003},
			want:  []int{801, 1002},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := fakeProc(t, tt.procs...)
			timeout := 30 * time.Millisecond
			if tt.exiting != 0 {
				dir := filepath.Join(root, strconv.Itoa(tt.exiting))
				later(t, func() error { return os.Rename(dir, dir+".gone") })
				timeout = 10 * time.Second
			}
			got := Procs{Root: root}.WaitGone(t.Context(), tt.pids, timeout, time.Millisecond)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("still alive (-want +got):\n%s", diff)
			}
		})
	}
}

// TestProcsOnOS runs the same code against the real /proc, with a child of
// the test process standing in for an nginx worker.
func TestProcsOnOS(t *testing.T) {
	p := Procs{Root: "/proc"}
	old, err := p.Snapshot(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}

	cmd := exec.Command("sleep", "5")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	pid := cmd.Process.Pid

	children, err := p.Children(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(children, pid) {
		t.Errorf("children %v of the test process do not hold sleep's PID %d", children, pid)
	}
	gen, err := p.WaitNewGeneration(t.Context(), old, 5*time.Second, 5*time.Millisecond, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(gen.Workers, pid) {
		t.Errorf("new generation %v does not hold sleep's PID %d", gen.Workers, pid)
	}
	if !p.Alive(pid) {
		t.Errorf("sleep (PID %d) is not alive", pid)
	}

	// Killed but not reaped: a zombie, which must count as gone.
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	if left := p.WaitGone(t.Context(), []int{pid}, 5*time.Second, 5*time.Millisecond); len(left) != 0 {
		t.Errorf("WaitGone left %v, want none", left)
	}
}

func TestShuttingDownReadsNginxsProcessTitle(t *testing.T) {
	root := t.TempDir()
	for pid, title := range map[int]string{
		11: "nginx: worker process",
		12: "nginx: worker process is shutting down",
		13: "nginx: cache manager process",
	} {
		dir := filepath.Join(root, strconv.Itoa(pid))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "cmdline"), []byte(title+"\x00"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got := Procs{Root: root}.ShuttingDown([]int{11, 12, 13, 14})
	if len(got) != 1 || got[0] != 12 {
		t.Errorf("ShuttingDown = %v, want [12]", got)
	}
}

func TestHolders(t *testing.T) {
	root := fakeProc(t)
	fakeproc.Process(t, root, 300, "app", "0::/app.slice/app@4001.service\n", 11, 12)
	fakeproc.Process(t, root, 301, "app", "0::/app.slice/app@4001.service\n", 11) // a forked worker shares it
	fakeproc.Process(t, root, 666, "nc", "0::/user.slice\n", 13)
	fakeproc.Process(t, root, 700, "sleep", "0::/\n")
	ls := []Listener{{Inode: 11}, {Inode: 13}, {Inode: 14}}

	holders, denied, err := Procs{root}.Holders(ls)
	want := map[uint64][]int{11: {300, 301}, 13: {666}}
	if err != nil || denied || !cmp.Equal(holders, want) {
		t.Errorf("Holders = %v, denied %v, %v; want %v", holders, denied, err, want)
	}

	t.Run("another user's descriptors are denied, not missing", func(t *testing.T) {
		fakeproc.Deny(t, root, 666)
		fakeproc.AsOtherUser(t, func() {
			holders, denied, err = Procs{root}.Holders(ls)
		})
		want := map[uint64][]int{11: {300, 301}}
		if err != nil || !denied || !cmp.Equal(holders, want) {
			t.Errorf("Holders = %v, denied %v, %v; want %v, denied", holders, denied, err, want)
		}
	})
}

func TestCgroup(t *testing.T) {
	root := fakeProc(t)
	const unit = "/system.slice/app@4001.service"
	for pid, file := range map[int]string{
		300: "0::" + unit + "\n",                                                           // cgroup v2
		301: "12:pids:/system.slice/app@4001.service\n1:name=systemd:" + unit + "\n0::/\n", // hybrid: systemd's hierarchy is name=systemd
		302: "2:cpu,cpuacct:/\n1:name=systemd:" + unit + "\n",                              // v1
		303: "0::" + unit + "/worker\n",                                                    // a cgroup below the unit's
	} {
		fakeproc.Process(t, root, pid, "app", file)
	}
	fakeproc.Process(t, root, 304, "app", "4:memory:/x\n")
	for pid, want := range map[int]string{300: unit, 301: unit, 302: unit, 303: unit + "/worker"} {
		if got, err := (Procs{root}).Cgroup(pid); err != nil || got != want {
			t.Errorf("Cgroup(%d) = %q, %v; want %q", pid, got, err, want)
		}
	}
	if got, err := (Procs{root}).Cgroup(304); err == nil {
		t.Errorf("Cgroup without systemd's line = %q; want an error", got)
	}
	if got := (Procs{root}).Comm(300); got != "app" {
		t.Errorf("Comm = %q, want app", got)
	}
	if got := (Procs{root}).Comm(999); got != "?" {
		t.Errorf("Comm of a process that is gone = %q, want ?", got)
	}
	if got, err := (Procs{root}).Cgroup(999); err == nil {
		t.Errorf("Cgroup of a process that is gone = %q; want an error", got)
	}
	if gen, err := (Procs{root}).Snapshot(300); err != nil || gen.Master != 300 || len(gen.Workers) != 0 {
		t.Errorf("Snapshot of a process without children = %+v, %v", gen, err)
	}
	if _, err := (Procs{filepath.Join(root, "missing")}).Snapshot(300); err == nil {
		t.Error("Snapshot of a /proc that cannot be listed: no error")
	}
}

// TestHoldersOnTheKernel: this process's own listener is found in the
// kernel's tables, held by this process, in the cgroup /proc/self says.
func TestHoldersOnTheKernel(t *testing.T) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ls, err := Listeners("/proc", ln.Addr().String())
	if err != nil || len(ls) != 1 {
		t.Fatalf("Listeners(%s) = %v, %v; want this test's", ln.Addr(), ls, err)
	}
	p := Procs{"/proc"}
	holders, _, err := p.Holders(ls)
	if err != nil || !slices.Equal(holders[ls[0].Inode], []int{os.Getpid()}) {
		t.Errorf("Holders = %v, %v; want this process, %d", holders, err, os.Getpid())
	}
	if _, err := p.Cgroup(os.Getpid()); err != nil {
		t.Error(err)
	}
}
