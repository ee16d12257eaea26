// Command demo runs edgeswitch's main job on a self-contained sandbox edge:
// it brings up a systemd user manager, nginx and two app slots, drives load
// through nginx, switches a few times with the edgeswitch binary, prints the
// step lines and the failed-request count, and tears everything down.
// With -mode socket the slots listen on unix sockets and each switch moves
// a link, with no nginx reload, under POSTs.
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"time"

	"github.com/edgeswitch/edgeswitch/internal/testedge"
)

func main() {
	bin := flag.String("bin", "bin/edgeswitch", "edgeswitch binary to run")
	switches := flag.Int("switches", 4, "how many switches to make")
	clients := flag.Int("clients", 32, "concurrent keep-alive clients")
	mode := flag.String("mode", "socket", "how traffic moves: socket (move a link, no reload) or reload (rewrite the upstream, reload nginx)")
	flag.Parse()
	if *mode != "reload" && *mode != "socket" {
		fmt.Fprintf(os.Stderr, "demo: -mode %q: want reload or socket\n", *mode)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := demo(ctx, *bin, *mode, *switches, *clients); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func demo(ctx context.Context, bin, mode string, switches, clients int) error {
	dir, err := os.MkdirTemp("", "edgeswitch-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	fmt.Printf("== bringing up the sandbox edge in %s (systemd user manager, nginx, app slots)\n", dir)
	ports := [2]int{4000, 4001}
	if taken := takenPorts(ports); len(taken) > 0 {
		// A proxy box often runs an app there already: that is no reason to fail.
		fmt.Printf("   %v in use on 127.0.0.1 (another app runs there); the sandbox's slots take free ports instead\n", taken)
		ports = [2]int{} // testedge picks free ones
	}
	e, err := testedge.Start(ctx, testedge.Options{Dir: dir, Ports: ports, Socket: mode == "socket"})
	if err != nil {
		return err
	}
	defer e.Close()
	fmt.Printf("   nginx on %s proxies upstream app to slot %d; units %s and %s\n", e.ListenAddr, e.Ports[0], e.NginxUnit, e.AppUnit)
	method := http.MethodGet
	if mode == "socket" {
		// POSTs on keep-alive connections are what a reload can lose.
		method = http.MethodPost
		fmt.Printf("   socket mode: the upstream lists %s, a link to the live slot's socket (%s)\n", e.SocketLink, e.SocketPattern)
	}
	fmt.Println()

	run := func(args ...string) error {
		args = append(args, "--user", "--nginx-conf", e.NginxConf, "--nginx-bin", testedge.NginxBin,
			"--nginx-unit", e.NginxUnit, "--unit", e.AppUnit, "--health-path", "/health",
			"--ports", fmt.Sprintf("%d,%d", e.Ports[0], e.Ports[1]), "--state-dir", e.StateDir, "--mode", mode)
		if mode == "socket" {
			args = append(args, "--socket", e.SocketPattern, "--socket-link", e.SocketLink)
		}
		cmd := exec.CommandContext(ctx, bin, args...)
		cmd.Env = append(os.Environ(), e.Env...)
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stdout
		return cmd.Run()
	}
	fmt.Println("== edgeswitch switch --dry-run (shows the diff, changes nothing)")
	if err := run("switch", "--dry-run"); err != nil {
		return err
	}
	// Socket mode loses nothing even for clients that never resend; a
	// reload closes idle keep-alive connections, so there the clients are
	// ones that resend a GET on a new connection, as browsers do.
	resend := "that never resend a request"
	if mode == "reload" {
		resend = "that resend a GET whose connection a reload closed, as browsers do (clients that never resend lose about what bare reloads lose; see README)"
	}
	fmt.Printf("\n== %d clients with keep-alive send %ss through nginx, %s; switching %d times\n", clients, method, resend, switches)
	var body []byte
	if method == http.MethodPost {
		body = []byte(`{"order": 42}`)
	}
	load := testedge.RunLoad(ctx, testedge.LoadOptions{URL: e.URL(""), Clients: clients, Method: method, Body: body, NoResend: mode == "socket"})
	time.Sleep(300 * time.Millisecond)
	for i := range switches {
		fmt.Printf("\n-- switch %d: edgeswitch switch\n", i+1)
		if err := run("switch"); err != nil {
			load.Stop()
			return fmt.Errorf("switch %d: %w", i+1, err)
		}
		time.Sleep(300 * time.Millisecond)
	}
	stats := load.Stop()
	fmt.Printf("\n== %d requests, %d failed (%s)\n", stats.Requests, stats.Failed, stats)
	if stats.Failed > 0 {
		return fmt.Errorf("%d requests failed", stats.Failed)
	}
	return nil
}

// takenPorts returns those of ports that something on this host already
// listens on.
func takenPorts(ports [2]int) []int {
	var taken []int
	for _, p := range ports {
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			taken = append(taken, p)
			continue
		}
		l.Close()
	}
	return taken
}
