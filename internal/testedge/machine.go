package testedge

// A Machine is the production path of design.md ("systemd as PID 1,
// Debian's nginx.service"): systemd 252 boots as PID 1 of fresh mount, PID,
// network, UTS, IPC and cgroup namespaces, on the host's own /etc, /usr and
// /var seen through overlays whose upper dirs are the machine's disk. It
// runs the system bus and Debian's unchanged nginx.service on its own
// loopback, and it can be powered off and booted again on the same disk: a
// reboot. machine_boot.sh sets the namespaces up (each mount is explained
// there); this file starts it, waits for the boot, runs commands inside and
// tears it all down.

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

//go:embed machine_boot.sh
var machineBootScript string

// machineMask are the units masked (for the boot only, in /run/systemd/system)
// because they make no sense in a container or would reach out of it. Found
// by booting with none masked: the boot then still says "running", but it
// runs modprobe against the host's kernel, mounts debugfs, tracefs and the
// like, starts a getty on /dev/console, and starts this host's own
// services (PostgreSQL: 3.6 s of a 5.6 s boot) and timers. Units that skip
// themselves in a container by their own conditions (udev, timesyncd,
// sysctl, binfmt) need no mask; logind works, and `systemctl poweroff`
// needs it.
var machineMask = []string{
	// no one logs in: /dev/console is the log
	"getty.target", "console-getty.service", "container-getty@.service", "getty@.service", "serial-getty@.service",
	// the host's kernel: modules, and its API file systems
	"modprobe@.service", "systemd-modules-load.service", "kmod-static-nodes.service",
	"dev-hugepages.mount", "dev-mqueue.mount", "sys-kernel-debug.mount", "sys-kernel-tracing.mount",
	"sys-kernel-config.mount", "sys-fs-fuse-connections.mount", "proc-sys-fs-binfmt_misc.automount",
	// the host's own services and periodic jobs
	"postgresql.service", "postgresql@.service", "e2scrub_reap.service",
	"apt-daily.timer", "apt-daily-upgrade.timer", "dpkg-db-backup.timer", "e2scrub_all.timer", "man-db.timer", "fstrim.timer",
}

// machineTarget is what the machine boots into: multi-user.target,
// dbus.socket and nginx.service (written by machine_boot.sh).
const machineTarget = "testedge-machine.target"

// machineTops are the host directories the machine sees through overlays:
// the only places Install can write before a boot, and what the disk holds.
var machineTops = []string{"etc", "usr", "var"}

// machineRunDir holds one PID file per running machine, so that a later
// BootMachine can find what a killed test process left behind.
const machineRunDir = "/run/edgeswitch-testedge/machines"

// sigPowerOff is SIGRTMIN+4, systemd's "start poweroff.target": 38, as
// SIGRTMIN is 34 in C (glibc keeps 32 and 33 for itself).
const sigPowerOff = syscall.Signal(38)

// machinePath is the PATH of everything run inside.
const machinePath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// MachineOptions configure BootMachine.
type MachineOptions struct {
	// Dir holds the disk (disk/{etc,usr,var}/{upper,work}), the boot script
	// and console.log (every boot's console); required. It must outlive
	// reboots, must not be under /etc, /usr or /var (overlay layers may not
	// overlap), and its path must not contain white space, ',' or ':'.
	Dir string
	// Name names the machine's cgroups, PID file and container=; default
	// "es" and random hex. Lower-case letters, digits and '-'.
	Name string
	// Files are installed onto the disk before the first boot, as Install
	// does; their paths must be under /etc, /usr or /var.
	Files []MachineFile
	// Mask are units masked in addition to the built-in list.
	Mask []string
	// BootTimeout bounds each boot, until running and nginx answers; default 60s.
	BootTimeout time.Duration
}

// MachineFile is a file to put into a machine.
type MachineFile struct {
	Path string // absolute, inside the machine
	Data []byte
	Mode fs.FileMode // permission bits; 0 means 0644
}

// Machine is a sandbox host: systemd as PID 1 with Debian's nginx.service.
// Its methods are safe for concurrent use.
type Machine struct {
	Name string
	Dir  string

	cgroup      string // relative to /sys/fs/cgroup/{systemd,unified}
	pidFile     string
	bootTimeout time.Duration
	mask        []string

	mu       sync.Mutex
	pid      int           // PID 1 of the running boot, as the host sees it; 0 when off
	done     chan struct{} // closed when that PID 1 has exited
	exit     error         // how it exited
	bootTime time.Duration // of the last boot
	closed   bool
}

// BootMachine prepares a machine in o.Dir, removes what earlier runs left
// behind, and boots it: it returns once `systemctl is-system-running` says
// running and nginx answers on the machine's 127.0.0.1:80. On error nothing
// of the machine is left running.
func BootMachine(ctx context.Context, o MachineOptions) (*Machine, error) {
	m, err := newMachine(o)
	if err != nil {
		return nil, err
	}
	for _, f := range o.Files {
		if err := m.Install(f.Path, f.Data, f.Mode); err != nil {
			return nil, err
		}
	}
	if err := m.Boot(ctx); err != nil {
		return nil, errors.Join(err, m.Close())
	}
	return m, nil
}

var machineNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,39}$`)

func newMachine(o MachineOptions) (*Machine, error) {
	if err := machinePrerequisites(); err != nil {
		return nil, err
	}
	if o.Dir == "" {
		return nil, errors.New("testedge: MachineOptions.Dir is required")
	}
	dir, err := filepath.Abs(o.Dir)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	if dir, err = filepath.EvalSymlinks(dir); err != nil {
		return nil, err
	}
	if strings.ContainsAny(dir, " \t\n,:\\") {
		return nil, fmt.Errorf("testedge: MachineOptions.Dir %q: white space, ',' ':' and '\\' break overlay mount options; choose a plain path", dir)
	}
	for _, top := range machineTops {
		if dir == "/"+top || strings.HasPrefix(dir, "/"+top+"/") {
			return nil, fmt.Errorf("testedge: MachineOptions.Dir %q is under /%s, which the machine overlays; use e.g. a dir under /tmp", dir, top)
		}
	}
	name := o.Name
	if name == "" {
		b := make([]byte, 3)
		rand.Read(b)
		name = "es" + hex.EncodeToString(b)
	}
	if !machineNameRE.MatchString(name) {
		return nil, fmt.Errorf("testedge: machine name %q: use lower-case letters, digits and '-'", name)
	}
	for _, top := range machineTops {
		for _, d := range []string{"upper", "work"} {
			if err := os.MkdirAll(filepath.Join(dir, "disk", top, d), 0o755); err != nil {
				return nil, err
			}
		}
	}
	return &Machine{
		Name:        name,
		Dir:         dir,
		cgroup:      "edgeswitch-testedge-" + name,
		pidFile:     filepath.Join(machineRunDir, name+".pid"),
		bootTimeout: cmp.Or(o.BootTimeout, 60*time.Second),
		mask:        slices.Concat(machineMask, o.Mask),
	}, nil
}

// machinePrerequisites says what this host lacks for a machine.
func machinePrerequisites() error {
	if os.Geteuid() != 0 {
		return errors.New("testedge: a machine needs root (namespaces, mounts, cgroups)")
	}
	for _, p := range []string{"/lib/systemd/systemd", NginxBin, "/lib/systemd/system/nginx.service", "/lib/systemd/system/dbus.socket"} {
		if _, err := os.Stat(p); err != nil {
			return fmt.Errorf("testedge: a machine needs %s: %w (install systemd, dbus and nginx-light)", p, err)
		}
	}
	for _, p := range []string{"nsenter", "unshare", "mount", "mknod", "ip"} {
		if _, err := exec.LookPath(p); err != nil {
			return fmt.Errorf("testedge: a machine needs %s: %w", p, err)
		}
	}
	for _, h := range []string{"systemd", "unified"} {
		if _, err := os.Stat(filepath.Join("/sys/fs/cgroup", h, "cgroup.procs")); err != nil {
			return fmt.Errorf("testedge: a machine needs the hybrid cgroup layout (/sys/fs/cgroup/%s): %w", h, err)
		}
	}
	return nil
}

// PID is the host's PID of the machine's PID 1, or 0 when it is off.
func (m *Machine) PID() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.pid
}

// BootTime is how long the last boot took, from starting the boot script
// until running and nginx answering.
func (m *Machine) BootTime() time.Duration {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.bootTime
}

// Boot boots the machine on its disk and waits as BootMachine does. The
// machine must be off.
func (m *Machine) Boot(ctx context.Context) error {
	m.mu.Lock()
	switch {
	case m.closed:
		m.mu.Unlock()
		return errors.New("testedge: machine " + m.Name + " is closed")
	case m.pid != 0:
		m.mu.Unlock()
		return errors.New("testedge: machine " + m.Name + " is already running")
	}
	m.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, m.bootTimeout)
	defer cancel()
	if err := cleanMachineLeftovers(m.Name); err != nil {
		return err
	}
	start := time.Now()
	if err := m.start(); err != nil {
		return err
	}
	if err := m.waitRunning(ctx); err != nil {
		diag := m.diagnose()
		return fmt.Errorf("testedge: machine %s did not boot: %w%s", m.Name, errors.Join(err, m.kill()), diag)
	}
	m.mu.Lock()
	m.bootTime = time.Since(start)
	m.mu.Unlock()
	return nil
}

// start runs machine_boot.sh as PID 1 of new namespaces, in the machine's
// own cgroups, and records its PID.
func (m *Machine) start() error {
	script := filepath.Join(m.Dir, "boot.sh")
	if err := os.WriteFile(script, []byte(machineBootScript), 0o644); err != nil {
		return err
	}
	if err := removeMachineCgroups(m.cgroup); err != nil { // a fresh tree for each boot
		return err
	}
	for _, h := range []string{"systemd", "unified"} {
		if err := os.Mkdir(filepath.Join("/sys/fs/cgroup", h, m.cgroup), 0o755); err != nil {
			return fmt.Errorf("testedge: cgroup for machine %s: %w", m.Name, err)
		}
	}
	console, pts, err := machineConsole(filepath.Join(m.Dir, "console.log"), m.Name)
	if err != nil {
		return err
	}
	cmd := exec.Command("/bin/sh", script)
	cmd.Dir = "/"
	cmd.Env = []string{
		"PATH=" + machinePath,
		"MACHINE_NAME=" + m.Name,
		"MACHINE_CGROUP=" + m.cgroup,
		"MACHINE_DISK=" + filepath.Join(m.Dir, "disk"),
		"MACHINE_CONSOLE=" + pts,
		"MACHINE_MASK=" + strings.Join(m.mask, " "),
		"MACHINE_TARGET=" + machineTarget,
	}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = console, console, console
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags: syscall.CLONE_NEWNS | syscall.CLONE_NEWPID | syscall.CLONE_NEWNET | syscall.CLONE_NEWUTS | syscall.CLONE_NEWIPC,
		Setsid:     true,
		// If this test process dies (panic, timeout, kill -9), so does
		// the machine: SIGKILL to a PID namespace's init ends all of it.
		Pdeathsig: syscall.SIGKILL,
	}
	// The parent-death signal fires when the thread that forked the child
	// ends, not the process; Go ends threads (a locked goroutine that
	// returns, as in Dial), so the fork happens on a thread locked until
	// the machine has exited.
	started := make(chan error, 1)
	done := make(chan struct{})
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := cmd.Start(); err != nil {
			console.Close()
			started <- err
			return
		}
		m.mu.Lock()
		m.pid, m.done, m.exit = cmd.Process.Pid, done, nil
		m.mu.Unlock()
		started <- nil
		err := cmd.Wait()
		// Held until now: systemd opens and closes /dev/console for each
		// message, and a pty whose terminal end no one holds ends its
		// other end's reads.
		console.Close()
		m.mu.Lock()
		m.exit = err
		m.pid = 0
		m.mu.Unlock()
		close(done)
	}()
	if err := <-started; err != nil {
		return fmt.Errorf("testedge: starting machine %s: %w", m.Name, err)
	}
	if err := writeMachinePIDFile(m.pidFile, cmd.Process.Pid, m); err != nil {
		return errors.Join(err, m.kill())
	}
	return nil
}

// waitRunning waits until systemd's boot is done and running (not
// degraded), and nginx answers on the machine's 127.0.0.1:80.
func (m *Machine) waitRunning(ctx context.Context) error {
	m.mu.Lock()
	pid, done := m.pid, m.done
	m.mu.Unlock()
	// systemctl needs systemd's private socket; until it exists there is
	// nothing to ask.
	private := fmt.Sprintf("/proc/%d/root/run/systemd/private", pid)
	for {
		if _, err := os.Stat(private); err == nil {
			break
		}
		select {
		case <-done:
			return m.exitError()
		case <-ctx.Done():
			return fmt.Errorf("no systemd socket yet: %w", ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
	state, _, err := m.Run(ctx, "systemctl", "is-system-running", "--wait")
	state = strings.TrimSpace(state)
	if state != "running" {
		select {
		case <-done:
			return m.exitError()
		default:
		}
		if state == "" {
			return err
		}
		failed, _, _ := m.Run(ctx, "systemctl", "--failed", "--plain", "--no-legend", "--no-pager")
		return fmt.Errorf("the boot ended %q, not \"running\"; failed units (MachineOptions.Mask masks those that make no sense here):\n%s", state, failed)
	}
	client := &http.Client{
		Timeout:   2 * time.Second,
		Transport: &http.Transport{DialContext: m.Dial, DisableKeepAlives: true},
	}
	last := "no answer yet"
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://127.0.0.1:80/", nil)
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = resp.Status
		} else {
			last = err.Error()
		}
		select {
		case <-done:
			return m.exitError()
		case <-ctx.Done():
			return fmt.Errorf("nginx does not answer on the machine's 127.0.0.1:80: %s: %w", last, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (m *Machine) exitError() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return fmt.Errorf("its PID 1 exited: %v", m.exit)
}

// diagnose gathers what explains a failed boot: while the machine still
// runs, the status of its failed units; and the console (the boot script's
// errors, systemd's messages).
func (m *Machine) diagnose() string {
	var b strings.Builder
	if m.PID() != 0 {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if out, _, _ := m.Run(ctx, "systemctl", "status", "--failed", "--no-pager", "--full", "--lines=10"); out != "" {
			fmt.Fprintf(&b, "\n%s", out)
		}
	}
	fmt.Fprintf(&b, "\n%s:\n%s", filepath.Join(m.Dir, "console.log"), tail(filepath.Join(m.Dir, "console.log"), 30))
	return b.String()
}

// Command returns a command that runs argv inside the running machine, as
// root, in all its namespaces, with a fixed environment (PATH, LANG=C.UTF-8,
// HOME=/root) and / as working directory. The caller may set its Stdin,
// Stdout, Stderr and more Env before starting it.
func (m *Machine) Command(ctx context.Context, argv ...string) (*exec.Cmd, error) {
	pid := m.PID()
	if pid == 0 {
		return nil, fmt.Errorf("testedge: machine %s is not running", m.Name)
	}
	if len(argv) == 0 {
		return nil, errors.New("testedge: Machine.Command: no command")
	}
	args := append([]string{"-t", strconv.Itoa(pid), "-a", "--wd=/", "--", "env", "-i",
		"PATH=" + machinePath, "LANG=C.UTF-8", "HOME=/root"}, argv...)
	cmd := exec.CommandContext(ctx, "nsenter", args...)
	cmd.Dir = "/"
	cmd.Env = []string{"PATH=" + machinePath}
	cmd.WaitDelay = 5 * time.Second
	return cmd, nil
}

// Run runs argv inside the machine (see Command) and returns its output.
// A non-zero exit is an error that carries the command and its stderr.
func (m *Machine) Run(ctx context.Context, argv ...string) (stdout, stderr string, err error) {
	cmd, err := m.Command(ctx, argv...)
	if err != nil {
		return "", "", err
	}
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	if err := cmd.Run(); err != nil {
		return o.String(), e.String(), fmt.Errorf("in machine %s: %s: %w: %s", m.Name, strings.Join(argv, " "), err, strings.TrimSpace(e.String()))
	}
	return o.String(), e.String(), nil
}

// Install writes a file into the machine's file system, replacing it
// atomically (a running program never sees half of it), with parent
// directories as needed. While the machine runs it writes through its
// root (/proc/PID/root), anywhere but the read-only parts of the host's
// root; while it is off, onto its disk, so only under /etc, /usr and /var.
// mode 0 means 0644.
func (m *Machine) Install(path string, data []byte, mode fs.FileMode) error {
	if !filepath.IsAbs(path) || filepath.Clean(path) != path || path == "/" {
		return fmt.Errorf("testedge: Machine.Install: %q is not a clean absolute path", path)
	}
	mode = cmp.Or(mode.Perm(), 0o644)
	m.mu.Lock()
	defer m.mu.Unlock() // a boot or power off waits for the write
	if m.closed {
		return errors.New("testedge: machine " + m.Name + " is closed")
	}
	if m.pid != 0 {
		root := fmt.Sprintf("/proc/%d/root", m.pid)
		if err := os.MkdirAll(filepath.Join(root, filepath.Dir(path)), 0o755); err != nil {
			return fmt.Errorf("testedge: Machine.Install %s: %w", path, err)
		}
		return writeFileAtomic(filepath.Join(root, path), data, mode)
	}
	top, rest, _ := strings.Cut(path[1:], "/")
	if !slices.Contains(machineTops, top) || rest == "" {
		return fmt.Errorf("testedge: Machine.Install %s while the machine is off: only files under /etc, /usr or /var are on its disk", path)
	}
	upper := filepath.Join(m.Dir, "disk", top, "upper")
	// Directories the upper layer lacks get the host's mode and owner, so
	// the merged view is the one a package would have made.
	rel := ""
	for _, c := range strings.Split(filepath.Dir(rest), "/") {
		if c == "." {
			break
		}
		rel = filepath.Join(rel, c)
		dst := filepath.Join(upper, rel)
		if _, err := os.Lstat(dst); err == nil {
			continue
		}
		perm, uid, gid := fs.FileMode(0o755), 0, 0
		if fi, err := os.Stat(filepath.Join("/", top, rel)); err == nil && fi.IsDir() {
			st := fi.Sys().(*syscall.Stat_t)
			perm, uid, gid = fi.Mode().Perm(), int(st.Uid), int(st.Gid)
		}
		if err := os.Mkdir(dst, perm); err != nil {
			return fmt.Errorf("testedge: Machine.Install %s: %w", path, err)
		}
		if err := errors.Join(os.Chmod(dst, perm), os.Lchown(dst, uid, gid)); err != nil {
			return err
		}
	}
	return writeFileAtomic(filepath.Join(upper, rest), data, mode)
}

// machineConsole returns the terminal end of a new pty and its path, to be
// the boot script's stdio and the machine's /dev/console, and appends what comes
// out of it to path (without the terminal's carriage returns) until no one
// holds that end any more: the caller closes it once the machine has
// exited.
func machineConsole(path, name string) (*os.File, string, error) {
	log, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, "", err
	}
	fmt.Fprintf(log, "--- boot of %s at %s\n", name, time.Now().Format(time.RFC3339Nano))
	ptmx, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		log.Close()
		return nil, "", fmt.Errorf("testedge: a console for machine %s: %w", name, err)
	}
	fd := ptmx.Fd()
	var tty *os.File
	var n uint32
	err = unix.IoctlSetPointerInt(int(fd), unix.TIOCSPTLCK, 0) // unlock the other end
	if err == nil {
		n, err = unix.IoctlGetUint32(int(fd), unix.TIOCGPTN)
	}
	if err == nil {
		r, _, errno := unix.Syscall(unix.SYS_IOCTL, fd, unix.TIOCGPTPEER, unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC)
		if errno != 0 {
			err = errno
		} else {
			tty = os.NewFile(r, "/dev/console")
		}
	}
	if err != nil {
		ptmx.Close()
		log.Close()
		return nil, "", fmt.Errorf("testedge: a console for machine %s: %w", name, err)
	}
	go func() {
		defer log.Close()
		defer ptmx.Close()
		buf := make([]byte, 32*1024)
		for {
			n, err := ptmx.Read(buf)
			log.Write(bytes.ReplaceAll(buf[:n], []byte("\r"), nil))
			if err != nil { // EIO once no one holds the terminal
				return
			}
		}
	}()
	return tty, fmt.Sprintf("/dev/pts/%d", n), nil
}

// writeFileAtomic writes data to a temp file next to path and renames it
// over path.
func writeFileAtomic(path string, data []byte, mode fs.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".testedge-*")
	if err != nil {
		return fmt.Errorf("testedge: Machine.Install: %w", err)
	}
	_, err = f.Write(data)
	err = errors.Join(err, f.Chmod(mode), f.Close())
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("testedge: Machine.Install: %w", err)
	}
	return nil
}

// Dial connects to addr from inside the machine's network namespace, so
// that a test on the host reaches nginx on the machine's own 127.0.0.1:80
// (e.g. as LoadOptions.Dial). The socket is made on a thread that enters
// the namespace and is then thrown away (its goroutine ends locked), so no
// other goroutine ever runs in the machine's namespace; a socket keeps the
// namespace it was made in.
func (m *Machine) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	pid := m.PID()
	if pid == 0 {
		return nil, fmt.Errorf("testedge: machine %s is not running", m.Name)
	}
	ns, err := os.Open(fmt.Sprintf("/proc/%d/ns/net", pid))
	if err != nil {
		return nil, fmt.Errorf("testedge: machine %s: %w", m.Name, err)
	}
	defer ns.Close()
	type result struct {
		c   net.Conn
		err error
	}
	ch := make(chan result, 1)
	var dial func()
	dial = func() {
		runtime.LockOSThread() // never unlocked: the thread ends with this goroutine
		if unix.Gettid() == os.Getpid() {
			// The runtime never ends the main thread: it would park it for
			// good, in the machine's network. Dial from another thread.
			go dial()
			runtime.UnlockOSThread()
			return
		}
		if err := unix.Setns(int(ns.Fd()), unix.CLONE_NEWNET); err != nil {
			ch <- result{nil, fmt.Errorf("testedge: entering machine %s's network: %w", m.Name, err)}
			return
		}
		c, err := (&net.Dialer{Timeout: 5 * time.Second}).DialContext(ctx, network, addr)
		ch <- result{c, err}
	}
	go dial()
	r := <-ch
	return r.c, r.err
}

// Reboot powers the machine off and boots it again on the same disk.
func (m *Machine) Reboot(ctx context.Context) error {
	if err := m.PowerOff(ctx); err != nil {
		return err
	}
	return m.Boot(ctx)
}

// PowerOff shuts the machine down cleanly (SIGRTMIN+4 to its PID 1, as
// `systemctl poweroff` does: units are stopped in order) and waits for its
// PID 1 to exit. A machine that is not off within 30 s (or ctx) is killed,
// and that is an error.
func (m *Machine) PowerOff(ctx context.Context) error {
	m.mu.Lock()
	pid, done := m.pid, m.done
	if pid == 0 {
		m.mu.Unlock()
		return nil
	}
	m.mu.Unlock()
	if err := syscall.Kill(pid, sigPowerOff); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("testedge: power off machine %s: %w", m.Name, err)
	}
	t := time.NewTimer(30 * time.Second)
	defer t.Stop()
	select {
	case <-done:
		return m.afterExit()
	case <-ctx.Done():
	case <-t.C:
	}
	return errors.Join(fmt.Errorf("testedge: machine %s did not power off; killed it", m.Name), m.kill())
}

// PowerCut kills the machine at once (SIGKILL to its PID 1): no unit is
// stopped. What was written is on the disk all the same (the host's page
// cache outlives the machine), so this is a crash of every process rather
// than a lost disk cache.
func (m *Machine) PowerCut() error { return m.kill() }

// kill SIGKILLs the machine's PID 1 (and with it the whole PID namespace;
// its mount namespace, with all its mounts, goes with its last process)
// and waits for it.
func (m *Machine) kill() error {
	m.mu.Lock()
	pid, done := m.pid, m.done
	m.mu.Unlock()
	if pid == 0 {
		return nil
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("testedge: kill machine %s: %w", m.Name, err)
	}
	<-done // the kernel reaps the namespace first: this returns once all of it is gone
	return m.afterExit()
}

// afterExit removes what a boot left on the host: the cgroups, mounts
// below Dir (none, unless a mount escaped the private namespace) and the
// PID file.
func (m *Machine) afterExit() error {
	return errors.Join(
		removeMachineCgroups(m.cgroup),
		unmountUnder(m.Dir),
		ignoreNotExist(os.Remove(m.pidFile)),
	)
}

// Close kills the machine if it runs and removes its cgroups and PID file.
// Dir (the disk and logs) stays. Close is idempotent.
func (m *Machine) Close() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.mu.Unlock()
	err := errors.Join(m.kill(), m.afterExit()) // afterExit again: a failed start leaves no PID 1 to kill
	m.mu.Lock()
	m.closed = true
	m.mu.Unlock()
	return err
}

// The PID file: "machinePID machineStart ownerPID ownerStart dir", where
// the start times (field 22 of /proc/PID/stat) tell a live process from a
// later one that reuses its PID.
func writeMachinePIDFile(path string, pid int, m *Machine) error {
	mstart, err := procStart(pid)
	if err != nil {
		return err
	}
	ostart, err := procStart(os.Getpid())
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	line := fmt.Sprintf("%d %s %d %s %s\n", pid, mstart, os.Getpid(), ostart, m.Dir)
	return writeFileAtomic(path, []byte(line), 0o644)
}

// procStart is a process's start time in clock ticks after boot.
func procStart(pid int) (string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return "", err
	}
	// comm (field 2) may hold spaces and parentheses: count after the last ')'.
	i := bytes.LastIndexByte(b, ')')
	f := strings.Fields(string(b[i+1:]))
	if i < 0 || len(f) < 20 {
		return "", fmt.Errorf("cannot parse /proc/%d/stat", pid)
	}
	return f[19], nil
}

// alive reports whether pid is still the process that started at start.
func alive(pid int, start string) bool {
	s, err := procStart(pid)
	return err == nil && s == start
}

// cleanMachineLeftovers removes what machines of dead test processes left:
// it kills their PID 1 if it still runs (a parent-death signal can be
// missed, e.g. when the owner was itself in a dying namespace), removes
// their cgroups, mounts and PID file. A machine whose owner is alive is
// someone else's and left alone, unless it has our name: then it is an
// error.
func cleanMachineLeftovers(name string) error {
	entries, err := os.ReadDir(machineRunDir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	} else if err != nil {
		return err
	}
	var errs []error
	for _, e := range entries {
		n, ok := strings.CutSuffix(e.Name(), ".pid")
		if !ok {
			continue
		}
		path := filepath.Join(machineRunDir, e.Name())
		b, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		var mpid, opid int
		var mstart, ostart, dir string
		if _, err := fmt.Sscan(string(b), &mpid, &mstart, &opid, &ostart, &dir); err != nil {
			errs = append(errs, fmt.Errorf("testedge: %s: %w; remove it", path, err))
			continue
		}
		if alive(opid, ostart) { // this process's or another's: not a leftover
			if n == name {
				errs = append(errs, fmt.Errorf("testedge: a machine named %s already runs, booted by process %d", name, opid))
			}
			continue
		}
		if alive(mpid, mstart) {
			syscall.Kill(mpid, syscall.SIGKILL)
			for deadline := time.Now().Add(10 * time.Second); alive(mpid, mstart) && time.Now().Before(deadline); {
				time.Sleep(10 * time.Millisecond)
			}
			if alive(mpid, mstart) {
				errs = append(errs, fmt.Errorf("testedge: leftover machine %s (PID %d) does not die", n, mpid))
				continue
			}
		}
		errs = append(errs, removeMachineCgroups("edgeswitch-testedge-"+n), unmountUnder(dir), ignoreNotExist(os.Remove(path)))
	}
	return errors.Join(errs...)
}

// removeMachineCgroups removes a machine's cgroup trees, deepest first
// (cgroupfs directories go with rmdir only). The kernel may take a moment
// to release a cgroup whose last process has just exited.
func removeMachineCgroups(cgroup string) error {
	var errs []error
	for _, h := range []string{"systemd", "unified"} {
		errs = append(errs, removeCgroupTree(filepath.Join("/sys/fs/cgroup", h, cgroup)))
	}
	return errors.Join(errs...)
}

func removeCgroupTree(dir string) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	} else if err != nil {
		return err
	}
	for _, e := range entries {
		if e.IsDir() {
			if err := removeCgroupTree(filepath.Join(dir, e.Name())); err != nil {
				return err
			}
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := syscall.Rmdir(dir)
		if err == nil || errors.Is(err, syscall.ENOENT) {
			return nil
		}
		if !errors.Is(err, syscall.EBUSY) || time.Now().After(deadline) {
			return fmt.Errorf("testedge: rmdir %s: %w", dir, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// unmountUnder detaches every mount of this (the host's) namespace at or
// below dir, deepest first.
func unmountUnder(dir string) error {
	if dir == "" || dir == "/" {
		return nil
	}
	points, err := mountPoints()
	if err != nil {
		return err
	}
	var under []string
	for _, p := range points {
		if p == dir || strings.HasPrefix(p, dir+"/") {
			under = append(under, p)
		}
	}
	slices.SortFunc(under, func(a, b string) int { return cmp.Compare(len(b), len(a)) })
	var errs []error
	for _, p := range under {
		if err := syscall.Unmount(p, syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) {
			errs = append(errs, fmt.Errorf("testedge: umount %s: %w", p, err))
		}
	}
	return errors.Join(errs...)
}

// mountPoints lists the mount points of this process's mount namespace.
func mountPoints() ([]string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var points []string
	s := bufio.NewScanner(f)
	s.Buffer(make([]byte, 64*1024), 1024*1024)
	for s.Scan() {
		// Octal escapes (\040) are left as they are: Dir has no white space.
		if f := strings.Fields(s.Text()); len(f) > 4 {
			points = append(points, f[4])
		}
	}
	return points, s.Err()
}

func ignoreNotExist(err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}

// InstallBinaries builds cmd/edgeswitch and cmd/demoapp (once per test
// process) and installs them as /usr/local/bin/edgeswitch and
// /usr/local/bin/demoapp, the machine on or off.
func (m *Machine) InstallBinaries(ctx context.Context) error {
	demo, err := BuildDemoapp(ctx)
	if err != nil {
		return err
	}
	es, err := build(ctx, "edgeswitch")
	if err != nil {
		return err
	}
	for dst, src := range map[string]string{"/usr/local/bin/edgeswitch": es, "/usr/local/bin/demoapp": demo} {
		b, err := os.ReadFile(src)
		if err != nil {
			return err
		}
		if err := m.Install(dst, b, 0o755); err != nil {
			return err
		}
	}
	return nil
}

// NewMachine boots a machine for one test, in t.TempDir() unless o.Dir is
// set, and closes it when the test ends.
//
// With -short it skips the test. Otherwise a machine that cannot boot
// (not root, no systemd or nginx, no hybrid cgroups, a failed boot) fails
// the test: a missing prerequisite must not look like a pass.
func NewMachine(t testing.TB, o MachineOptions) *Machine {
	t.Helper()
	if testing.Short() {
		t.Skip("testedge: end-to-end test on a machine (systemd as PID 1, Debian's nginx.service); -short skips it")
	}
	if o.Dir == "" {
		o.Dir = t.TempDir()
	}
	m, err := BootMachine(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := m.Close(); err != nil {
			t.Errorf("testedge: %v", err)
		}
	})
	t.Logf("testedge: machine %s (PID %d) booted in %v", m.Name, m.PID(), m.BootTime().Round(time.Millisecond))
	return m
}

// shared is the one machine a test package's tests share (SharedMachine).
var shared struct {
	sync.Mutex
	main bool // MachineMain runs the tests
	once sync.Once
	m    *Machine
	dir  string
	err  error
}

// MachineMain runs a test package's tests and then closes the machine
// SharedMachine booted, if any, and removes its directory. A package that
// calls SharedMachine calls it from TestMain:
//
//	func TestMain(m *testing.M) { os.Exit(testedge.MachineMain(m)) }
//
// Should the test process die first (a panic, -timeout), the machine dies
// with it (a parent-death signal) and the next boot of any machine removes
// its cgroups and PID file.
func MachineMain(m *testing.M) int {
	shared.Lock()
	shared.main = true
	shared.Unlock()
	code := m.Run()
	shared.Lock()
	defer shared.Unlock()
	if shared.m != nil {
		if err := shared.m.Close(); err != nil {
			fmt.Fprintln(os.Stderr, "testedge: closing the shared machine:", err)
			code = cmp.Or(code, 1)
		}
	}
	if shared.dir != "" {
		os.RemoveAll(shared.dir)
	}
	return code
}

// SharedMachine returns the test package's one machine, booting it (in a
// new temporary directory) for the first test that asks. Tests that share
// it share its state: each leaves nginx's config and the units as it found
// them, or uses NewMachine. Skips under -short, and fails when the machine
// cannot boot, as NewMachine; fails unless TestMain runs MachineMain.
func SharedMachine(t testing.TB) *Machine {
	t.Helper()
	if testing.Short() {
		t.Skip("testedge: end-to-end test on a machine (systemd as PID 1, Debian's nginx.service); -short skips it")
	}
	shared.Lock()
	defer shared.Unlock()
	if !shared.main {
		t.Fatal("testedge: SharedMachine needs TestMain to run the tests through testedge.MachineMain, which closes the machine")
	}
	shared.once.Do(func() {
		if shared.dir, shared.err = os.MkdirTemp("", "testedge-machine-"); shared.err != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		shared.m, shared.err = BootMachine(ctx, MachineOptions{Dir: shared.dir})
		if shared.err == nil {
			t.Logf("testedge: shared machine %s (PID %d) booted in %v", shared.m.Name, shared.m.PID(), shared.m.BootTime().Round(time.Millisecond))
		}
	})
	if shared.err != nil {
		t.Fatal(shared.err)
	}
	return shared.m
}
