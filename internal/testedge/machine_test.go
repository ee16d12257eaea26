package testedge

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestMachine boots one machine and checks, in order, what the end-to-end
// tests rely on: Debian's nginx.service serving on the machine's loopback,
// files going in, a reboot keeping the disk and losing the tmpfs, and
// Close leaving nothing behind.
func TestMachine(t *testing.T) {
	m := NewMachine(t, MachineOptions{Files: []MachineFile{
		{Path: "/etc/testedge/before-boot", Data: []byte("on the disk\n")},
	}})
	ctx := t.Context()
	t.Logf("boot: %v", m.BootTime())
	run := func(t *testing.T, argv ...string) string {
		t.Helper()
		out, _, err := m.Run(ctx, argv...)
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(out)
	}

	t.Run("debian nginx.service", func(t *testing.T) {
		if got := run(t, "systemctl", "is-system-running"); got != "running" {
			t.Errorf("is-system-running = %q", got)
		}
		if got := run(t, "systemctl", "is-active", "nginx.service", "dbus.socket"); got != "active\nactive" {
			t.Errorf("is-active nginx dbus.socket = %q", got)
		}
		// Debian's own unit, with nothing of ours in between.
		got := run(t, "systemctl", "show", "-p", "FragmentPath", "-p", "DropInPaths", "nginx.service")
		if want := "FragmentPath=/lib/systemd/system/nginx.service\nDropInPaths="; got != want {
			t.Errorf("nginx.service:\n%s\nwant\n%s", got, want)
		}
		if got := run(t, "systemd-detect-virt", "--container"); got != "container-other" {
			t.Errorf("systemd-detect-virt = %q", got)
		}
		if got := run(t, "readlink", "/proc/1/exe"); got != "/usr/lib/systemd/systemd" && got != "/lib/systemd/systemd" {
			t.Errorf("PID 1 is %q, not systemd", got)
		}
	})

	t.Run("dial", func(t *testing.T) {
		client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DialContext: m.Dial}}
		defer client.CloseIdleConnections()
		for range 20 {
			resp, err := client.Get("http://127.0.0.1/")
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || !strings.Contains(string(body), "Welcome to nginx") {
				t.Fatalf("GET / through Dial: %s\n%s", resp.Status, body)
			}
		}
		// The same address on the host is another network: the machine's
		// port 80 is not the host's.
		if _, err := m.Dial(ctx, "tcp", "127.0.0.1:1"); err == nil {
			t.Error("dialled port 1 in the machine")
		}
		assertDialsOnHost(t)
	})

	t.Run("load through dial", func(t *testing.T) {
		l := RunLoad(ctx, LoadOptions{URL: "http://127.0.0.1:80", Clients: 8, Dial: m.Dial})
		// Many requests, however slowly a busy machine serves them.
		WaitFor(t, "100 answers through the machine's nginx", func() bool { return l.Snapshot().Requests >= 100 })
		s := l.Stop()
		t.Log(s)
		if s.Failed != 0 {
			t.Errorf("load on the machine's nginx: %v", s)
		}
	})

	t.Run("install", func(t *testing.T) {
		if got := run(t, "cat", "/etc/testedge/before-boot"); got != "on the disk" {
			t.Errorf("file installed before boot: %q", got)
		}
		if err := m.Install("/usr/local/bin/testedge-hello", []byte("#!/bin/sh\necho hello from $(hostname) $container\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		if got := run(t, "testedge-hello"); !strings.HasPrefix(got, "hello from ") {
			t.Errorf("installed script says %q", got)
		}
		for _, p := range []string{"/etc/testedge", "/usr/local/bin/testedge-hello"} {
			if _, err := os.Stat(p); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("%s on the host: %v; the machine must not change the host", p, err)
			}
		}
		// The host's root beyond the overlays is read-only in there.
		if _, _, err := m.Run(ctx, "touch", "/testedge-probe"); err == nil {
			os.Remove("/testedge-probe")
			t.Error("the machine wrote to the host's /")
		}
	})

	t.Run("reboot", func(t *testing.T) {
		unit := "[Unit]\nDescription=testedge probe\n\n[Service]\nExecStart=/bin/sleep infinity\n\n[Install]\nWantedBy=multi-user.target\n"
		if err := m.Install("/etc/systemd/system/testedge-probe.service", []byte(unit), 0o644); err != nil {
			t.Fatal(err)
		}
		run(t, "systemctl", "daemon-reload")
		run(t, "systemctl", "enable", "--now", "testedge-probe.service")
		run(t, "sh", "-c", "echo gone >/tmp/testedge-tmp && mkdir -p /var/lib/testedge && echo kept >/var/lib/testedge/kept")
		pid := m.PID()
		start := time.Now()
		if err := m.Reboot(ctx); err != nil {
			t.Fatal(err)
		}
		t.Logf("reboot: %v (power off %v, boot %v)", time.Since(start), time.Since(start)-m.BootTime(), m.BootTime())
		if m.PID() == pid {
			t.Errorf("same PID 1 (%d) after the reboot", pid)
		}
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err == nil {
			t.Errorf("the old PID 1 (%d) still runs", pid)
		}
		if got := run(t, "systemctl", "is-active", "testedge-probe.service", "nginx.service"); got != "active\nactive" {
			t.Errorf("after reboot, is-active testedge-probe nginx = %q", got)
		}
		if got := run(t, "cat", "/var/lib/testedge/kept"); got != "kept" {
			t.Errorf("/var/lib/testedge/kept after reboot: %q", got)
		}
		if _, _, err := m.Run(ctx, "test", "-e", "/tmp/testedge-tmp"); err == nil {
			t.Error("/tmp/testedge-tmp survived the reboot")
		}
		if got := run(t, "sh", "-c", "journalctl --list-boots --no-pager | wc -l"); got != "2" {
			t.Errorf("journal lists %s boots, want 2", got)
		}
	})

	t.Run("power cut", func(t *testing.T) {
		run(t, "sh", "-c", "echo written >/var/lib/testedge/cut")
		if err := m.PowerCut(); err != nil {
			t.Fatal(err)
		}
		if m.PID() != 0 {
			t.Fatal("running after a power cut")
		}
		if err := m.Boot(ctx); err != nil {
			t.Fatal(err)
		}
		if got := run(t, "cat", "/var/lib/testedge/cut"); got != "written" {
			t.Errorf("after a power cut: %q", got)
		}
	})

	t.Run("binaries", func(t *testing.T) {
		if err := m.InstallBinaries(ctx); err != nil {
			t.Fatal(err)
		}
		run(t, "edgeswitch", "--version")
		if got := run(t, "sh", "-c", "command -v demoapp"); got != "/usr/local/bin/demoapp" {
			t.Errorf("demoapp is %q", got)
		}
	})

	t.Run("close", func(t *testing.T) {
		pid := m.PID()
		pidns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", pid))
		if err != nil {
			t.Fatal(err)
		}
		if err := m.Close(); err != nil {
			t.Fatal(err)
		}
		// No process of the machine's PID namespace is left.
		procs, _ := filepath.Glob("/proc/[0-9]*/ns/pid")
		for _, p := range procs {
			if ns, err := os.Readlink(p); err == nil && ns == pidns {
				t.Errorf("%s is still in the machine's PID namespace %s", filepath.Dir(filepath.Dir(p)), pidns)
			}
		}
		// No mount on the host refers to the machine's directory (its
		// overlays would name their upper dirs).
		mi, err := os.ReadFile("/proc/self/mountinfo")
		if err != nil {
			t.Fatal(err)
		}
		for line := range strings.Lines(string(mi)) {
			if strings.Contains(line, m.Dir) {
				t.Errorf("host mount left: %s", line)
			}
		}
		for _, h := range []string{"systemd", "unified"} {
			if _, err := os.Stat(filepath.Join("/sys/fs/cgroup", h, m.cgroup)); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("cgroup %s/%s left: %v", h, m.cgroup, err)
			}
		}
		if _, err := os.Stat(m.pidFile); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("PID file %s left: %v", m.pidFile, err)
		}
		if _, _, err := m.Run(ctx, "true"); err == nil {
			t.Error("Run works on a closed machine")
		}
	})
}

// assertDialsOnHost fails if a connection made after Machine.Dial lands in
// the machine's network: the threads Dial puts there must die with their
// goroutine, never to run another one. A listener only the host has
// answers every one of many concurrent dials.
func assertDialsOnHost(t *testing.T) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	errs := make(chan error, 200)
	for range cap(errs) {
		go func() {
			c, err := net.Dial("tcp", ln.Addr().String())
			if err == nil {
				c.Close()
			}
			errs <- err
		}()
	}
	for range cap(errs) {
		if err := <-errs; err != nil {
			t.Errorf("a host dial after Machine.Dial: %v", err)
		}
	}
}

// TestMachineDegraded boots a machine with a unit that fails: BootMachine
// must say so, name the unit, and leave nothing running.
func TestMachineDegraded(t *testing.T) {
	if testing.Short() {
		t.Skip("testedge: end-to-end test on a machine; -short skips it")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	m, err := BootMachine(ctx, MachineOptions{Dir: t.TempDir(), Files: []MachineFile{
		{Path: "/etc/systemd/system/testedge-fail.service", Data: []byte("[Service]\nType=oneshot\nExecStart=/bin/false\n")},
		{Path: "/etc/systemd/system/nginx.service.d/testedge-fail.conf", Data: []byte("[Unit]\nWants=testedge-fail.service\n")},
	}})
	if err == nil {
		m.Close()
		t.Fatal("a machine with a failing unit booted without an error")
	}
	t.Log(err)
	for _, want := range []string{`"degraded"`, "testedge-fail.service"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the error does not say %s", want)
		}
	}
	names, _ := filepath.Glob(filepath.Join(machineRunDir, "*.pid"))
	for _, n := range names {
		if b, err := os.ReadFile(n); err == nil && strings.Contains(string(b), " "+strconv.Itoa(os.Getpid())+" ") {
			t.Errorf("PID file %s left: %s", n, b)
		}
	}
}

// TestMachineOwnerDies kills a test process that has booted a machine, as
// a panic or -timeout would: the machine must die with it, and the next
// boot must clean up its cgroups and PID file.
func TestMachineOwnerDies(t *testing.T) {
	if testing.Short() {
		t.Skip("testedge: end-to-end test on a machine; -short skips it")
	}
	if dir := os.Getenv("TESTEDGE_MACHINE_OWNER"); dir != "" {
		machineOwner(dir)
		return
	}
	if err := machinePrerequisites(); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestMachineOwnerDies$", "-test.v")
	cmd.Env = append(os.Environ(), "TESTEDGE_MACHINE_OWNER="+dir)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var name string
	var pid int
	s := bufio.NewScanner(out)
	for s.Scan() {
		if _, err := fmt.Sscanf(s.Text(), "machine %s %d", &name, &pid); err == nil {
			break
		}
		t.Log("owner:", s.Text())
	}
	if pid == 0 {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatal("the owner process booted no machine")
	}
	cmd.Process.Kill()
	cmd.Wait()
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := os.Stat(fmt.Sprintf("/proc/%d", pid))
		if errors.Is(err, fs.ErrNotExist) {
			break
		}
		if time.Now().After(deadline) {
			if p, err := os.FindProcess(pid); err == nil {
				p.Kill()
			}
			t.Fatalf("machine %s (PID %d) outlived its test process", name, pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Its PID file and cgroups stay until a boot cleans them up (the next
	// BootMachine of any test process: maybe one running now).
	pidFile := filepath.Join(machineRunDir, name+".pid")
	if _, err := os.Stat(pidFile); err != nil {
		t.Logf("the dead owner's PID file: %v", err)
	}
	if err := cleanMachineLeftovers("another"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(pidFile); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("PID file %s left: %v", pidFile, err)
	}
	for _, h := range []string{"systemd", "unified"} {
		if _, err := os.Stat(filepath.Join("/sys/fs/cgroup", h, "edgeswitch-testedge-"+name)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("cgroup %s left: %v", h, err)
		}
	}
}

// machineOwner is the child of TestMachineOwnerDies: it boots a machine,
// says so, and waits to be killed.
func machineOwner(dir string) {
	m, err := BootMachine(context.Background(), MachineOptions{Dir: dir})
	if err != nil {
		fmt.Println("owner:", err)
		os.Exit(1)
	}
	fmt.Println("machine", m.Name, strconv.Itoa(m.PID()))
	time.Sleep(time.Minute)
	m.Close()
	os.Exit(1)
}

func TestMain(m *testing.M) { os.Exit(MachineMain(m)) }

// TestMachineShared is run by TestMachineSharedCloses in a test process of
// its own: two tests get one machine, and MachineMain closes it.
func TestMachineShared(t *testing.T) {
	if os.Getenv("TESTEDGE_MACHINE_SHARED") == "" {
		t.Skip("run by TestMachineSharedCloses")
	}
	var first *Machine
	t.Run("first", func(t *testing.T) {
		first = SharedMachine(t)
		if err := first.Install("/var/lib/testedge/shared", []byte("x"), 0); err != nil {
			t.Fatal(err)
		}
		fmt.Printf("shared machine %s %d %s\n", first.Name, first.PID(), first.Dir)
	})
	t.Run("second", func(t *testing.T) {
		m := SharedMachine(t)
		if m != first {
			t.Fatal("a second machine")
		}
		if _, _, err := m.Run(t.Context(), "test", "-f", "/var/lib/testedge/shared"); err != nil {
			t.Fatal(err)
		}
	})
}

// TestMachineSharedCloses checks that MachineMain closes the shared machine
// when the tests are done: no process, cgroup, PID file or directory left.
func TestMachineSharedCloses(t *testing.T) {
	if testing.Short() {
		t.Skip("testedge: end-to-end test on a machine; -short skips it")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestMachineShared$", "-test.v")
	cmd.Env = append(os.Environ(), "TESTEDGE_MACHINE_SHARED=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	var name, dir string
	var pid int
	for line := range strings.Lines(string(out)) {
		if _, err := fmt.Sscanf(line, "shared machine %s %d %s", &name, &pid, &dir); err == nil {
			break
		}
	}
	if pid == 0 {
		t.Fatalf("no shared machine booted:\n%s", out)
	}
	if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err == nil {
		t.Errorf("the shared machine's PID 1 (%d) still runs", pid)
	}
	for _, p := range []string{
		filepath.Join(machineRunDir, name+".pid"),
		filepath.Join("/sys/fs/cgroup/systemd/edgeswitch-testedge-" + name),
		filepath.Join("/sys/fs/cgroup/unified/edgeswitch-testedge-" + name),
		dir,
	} {
		if _, err := os.Stat(p); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s left: %v", p, err)
		}
	}
}
