package main

import (
	"context"
	"errors"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/edgeswitch/edgeswitch/internal/testedge"
)

// The squatter tests (issue 20, finding 1): a local user who listens on
// the idle slot's port and answers 200 must never be given the traffic,
// whether it binds before the switch or while the slot starts. The
// squatter is the edges' demoapp, run as nobody: its answers look like
// the slot's in every way but who gives them.

// squat runs demoapp as user nobody on addr of network ("tcp", or "unix"
// for a socket path), and returns its PID once it answers /health. A
// squatter that cannot listen there fails the test.
func squat(t *testing.T, network, addr string) int {
	t.Helper()
	if testing.Short() || os.Geteuid() != 0 {
		t.Skip("end-to-end, as root (the squatter runs as nobody); -short skips it")
	}
	bin, err := testedge.BuildDemoapp(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	listen := []string{"-addr", addr}
	if network == "unix" {
		listen = []string{"-socket", addr, "-port", "1"}
	}
	cmd := exec.Command("setpriv", append([]string{"--reuid=nobody", "--regid=nogroup", "--clear-groups", bin}, listen...)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
	})
	client := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		},
	}}
	defer client.CloseIdleConnections()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		select {
		case err := <-exited:
			exited <- err // for the cleanup
			t.Fatalf("the squatter on %s exited: %v: %s", addr, err, stderr.String())
		default:
		}
		if resp, err := client.Get("http://squatter/health"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return cmd.Process.Pid
			}
		}
	}
	t.Fatalf("the squatter on %s does not answer", addr)
	return 0
}

// slotAddr is where slot port listens.
func slotAddr(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }

// assertNames fails unless the switch's error names the squatter: its PID
// and program (the test's demoapp binary, named demoapp-<hash of its build>).
func assertNames(t *testing.T, stderr string, pid int) {
	t.Helper()
	if want := "PID " + strconv.Itoa(pid) + " (demoapp"; !strings.Contains(stderr, want) {
		t.Errorf("the error does not name the squatter %q:\n%s", want, stderr)
	}
}

func TestSquatterOnTheIdlePortIsRefused(t *testing.T) {
	// The squatter takes a free port first, which the edge then makes its
	// idle slot: no other edge on this machine can take it in between.
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	idle := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	pid := squat(t, "tcp", slotAddr(idle))
	e := testedge.New(t, testedge.Options{Ports: [2]int{0, idle}})
	before := snapshot(t, e)
	r := edgeswitch(t, e, "switch")
	if r.code != 2 || !strings.Contains(r.stderr, "is taken before it starts") || !strings.Contains(r.stderr, "stop that process") {
		t.Errorf("switch: exit %d, want 2, refused before anything starts:\n%s", r.code, r.stderr)
	}
	assertNames(t, r.stderr, pid)
	before.assertSame(t, e)
	if _, err := e.LastBoot(e.Ports[1]); err == nil {
		t.Errorf("slot %d was started", e.Ports[1])
	}
}

// TestSquatterOnTheIdleSocketIsRefused: in socket mode, where the
// sockets' directory lets others create files, a squatter on the idle
// slot's socket path is refused as on a port.
func TestSquatterOnTheIdleSocketIsRefused(t *testing.T) {
	e := testedge.New(t, testedge.Options{Socket: true})
	run := filepath.Dir(e.SocketPattern)
	for dir, mode := range map[string]os.FileMode{filepath.Dir(e.Dir): 0o755, e.Dir: 0o755, run: 0o1777} {
		if err := os.Chmod(dir, mode); err != nil {
			t.Fatal(err)
		}
	}
	pid := squat(t, "unix", strings.ReplaceAll(e.SocketPattern, "{port}", strconv.Itoa(e.Ports[1])))
	before := snapshot(t, e)
	r := edgeswitch(t, e, "switch")
	if r.code != 2 || !strings.Contains(r.stderr, "is taken before it starts") {
		t.Errorf("switch: exit %d, want 2, refused before anything starts:\n%s", r.code, r.stderr)
	}
	assertNames(t, r.stderr, pid)
	before.assertSame(t, e)
}

func TestSquatterThatBindsWhileTheSlotStartsIsCaught(t *testing.T) {
	// The slot sleeps before it listens: the squatter binds in between.
	e := testedge.New(t, testedge.Options{AppArgs: []string{"-boot-delay=3s"}})
	before := snapshot(t, e)
	sw := startSwitch(t, e)
	sw.waitStep(t, "start")
	pid := squat(t, "tcp", slotAddr(e.Ports[1]))
	err := sw.wait(t)
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 || !strings.Contains(sw.stderr(), "a process outside the slot's unit listens on") {
		t.Errorf("switch: %v, want exit 1 with the squatter's answer not taken:\n%s", err, sw.stderr())
	}
	assertNames(t, sw.stderr(), pid)
	assertUnchanged(t, e, before.files)
	if got := slotOf(t, e); got != before.slot {
		t.Errorf("traffic moved from slot %s to %s", before.slot, got)
	}
	if st := unitState(t, e, e.Ports[1]); st == "active" || st == "activating" {
		t.Errorf("the target slot was left %s", st)
	}
}

// TestMachineRefusesASquatter: on the production path (systemd as PID 1,
// hybrid cgroups in the machine's own namespace), a process of nobody
// that listens on the idle slot's port is refused before anything
// starts, named by its PID in the machine and its program.
func TestMachineRefusesASquatter(t *testing.T) {
	m := readyMachine(t)
	live := machineLive(t, m)
	idle := otherSlot(live)
	ctx, cancel := machineCtx()
	defer cancel()
	cmd, err := m.Command(ctx, "sh", "-c", "echo $$ > /run/squat.pid && exec setpriv --reuid=nobody --regid=nogroup --clear-groups /usr/local/bin/demoapp -addr 127.0.0.1:"+idle)
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		mustIn(t, m, "sh", "-c", "kill $(cat /run/squat.pid) && rm /run/squat.pid")
		cmd.Wait()
	}()
	waitListening(t, m, "127.0.0.1:"+idle)
	pid := strings.TrimSpace(mustIn(t, m, "cat", "/run/squat.pid"))
	files, units := machineFiles(t, m), machineUnits(t, m)

	r := inMachine(t, m, "edgeswitch", "switch")
	if want := "PID " + pid + " (demoapp)"; r.code != 2 || !strings.Contains(r.stderr, "is taken before it starts") || !strings.Contains(r.stderr, want) {
		t.Errorf("switch: exit %d, want 2 naming %q:\n%s", r.code, want, r.stderr)
	}
	assertSameFiles(t, files, machineFiles(t, m))
	if got := machineUnits(t, m); !maps.Equal(got, units) {
		t.Errorf("units %v, were %v", got, units)
	}
	if got := machineLive(t, m); got != live {
		t.Errorf("traffic moved from slot %s to %s", live, got)
	}
}
