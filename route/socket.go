package route

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/edgeswitch/edgeswitch/internal/atomicfile"
	"github.com/edgeswitch/edgeswitch/internal/trusted"
	"github.com/edgeswitch/edgeswitch/nginx"
	"github.com/edgeswitch/edgeswitch/upstream"
)

// Socket moves traffic without reloading nginx. The upstream block lists
// one server, `server unix:LINK;`, and LINK is a symlink to the live slot's
// socket. nginx resolves that path on every new connection to the
// upstream, so a new link renamed over the old one sends new requests to
// the new slot with no new workers and no client connection closed; the old
// slot serves what it holds and is stopped once nginx holds no connection
// to it. An upstream that still lists the slots' ports is converted by the
// first switch: the link is made, the block rewritten to list it, and nginx
// reloaded once.
type Socket struct {
	*Nginx
	Link     string       // the path the upstream lists
	Slots    []SocketSlot // the slots, in the order of their ports
	upstream string
	conv     *Reload // reads the block, and converts it from the ports to the link

	from       string    // the socket the link pointed at when Read found it; "" for none
	to         string    // the socket the planned change points it at
	converting bool      // the block lists ports (or did, for a resumed switch): the change makes it list the link
	byPort     []Addr    // before the conversion, the sockets of the slots the block lists by port
	linked     bool      // the link step ran: Revert points the link back
	moved      time.Time // when the link moved, for the drain's line
	watching   *logWatch // the new slot's watch, if any
}

// SocketSlot is one slot of socket mode: the socket it listens on, and
// the port it listened on before the block was converted.
type SocketSlot struct {
	Port   Addr   // host:port, as the block listed it before the conversion
	Socket string // the socket's path: /run/app/4000.sock
}

// NewSocket returns the socket router of upstream, whose block lists
// "server unix:LINK;" (or, before the conversion, the slots' ports).
func NewSocket(n *Nginx, upstream, link string, slots []SocketSlot) *Socket {
	var listable []Addr
	for _, sl := range slots {
		listable = append(listable, sl.Port)
	}
	listable = append(listable, Unix(link))
	return &Socket{Nginx: n, Link: link, Slots: slots, upstream: upstream, conv: &Reload{Nginx: n, Upstream: upstream, Slots: listable}}
}

// sockets are the slots' sockets.
func (s *Socket) sockets() []Addr {
	var out []Addr
	for _, sl := range s.Slots {
		out = append(out, Unix(sl.Socket))
	}
	return out
}

// socketNames lists the slots' sockets for people.
func (s *Socket) socketNames() string { return strings.Join(nginxAddrs(s.sockets()), " or ") }

// Read finds the upstream block and says which slot gets traffic: the one
// whose socket the link points at, or, before the conversion, the ones
// whose ports the block lists.
func (s *Socket) Read() (Listing, error) {
	l, err := s.conv.Read()
	if err != nil {
		return Listing{}, err
	}
	if s.from, err = s.readLink(); err != nil {
		return Listing{}, err
	}
	s.to = s.from
	link := Unix(s.Link)
	switch {
	case slices.Equal(l.Addrs, []Addr{link}):
		l.Addrs = nil
		if s.from != "" {
			l.Addrs = []Addr{Unix(s.from)}
		}
	case slices.Contains(l.Addrs, link):
		return Listing{}, fmt.Errorf("%s:%d: upstream %s lists %s beside the slots' ports; in socket mode it lists only \"server %s;\": remove the other server lines",
			l.File, l.Line, s.upstream, link, link)
	default:
		s.converting = true
		for i, a := range l.Addrs {
			l.Addrs[i] = Unix(s.Slots[slices.IndexFunc(s.Slots, func(sl SocketSlot) bool { return sl.Port == a })].Socket)
		}
		s.byPort = slices.Clone(l.Addrs)
	}
	return l, nil
}

// readLink returns the socket the link points at ("" when there is no
// link yet), refusing anything at Link but a symlink to a slot's socket.
func (s *Socket) readLink() (string, error) {
	fi, err := os.Lstat(s.Link)
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("socket-link: %w", err)
	}
	if fi.Mode()&fs.ModeSymlink == 0 {
		return "", fmt.Errorf("socket-link %s is a %s, not a symlink; edgeswitch only replaces a link: move it away or set socket-link to another path", s.Link, fileKind(fi.Mode()))
	}
	target, err := os.Readlink(s.Link)
	if err != nil {
		return "", fmt.Errorf("socket-link: %w", err)
	}
	if !filepath.IsAbs(target) {
		target = filepath.Join(filepath.Dir(s.Link), target)
	}
	target = filepath.Clean(target)
	if !slices.Contains(s.sockets(), Unix(target)) {
		return "", fmt.Errorf("socket-link %s points at %s, which is not a slot's socket (%s); point it at the live slot's (ln -sfn SOCKET %s) or fix the socket setting",
			s.Link, target, s.socketNames(), s.Link)
	}
	return target, nil
}

// fileKind names a file's type for messages.
func fileKind(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "directory"
	case m&fs.ModeSocket != 0:
		return "socket"
	case m.IsRegular():
		return "regular file"
	}
	return "special file"
}

// Checks are that nginx runs, and what socket mode needs: no upstream
// keepalive, and directories nginx's workers can reach the link and the
// sockets through. nginx -t passes too before a conversion, which writes
// nginx's config and reloads it; after it, a switch touches no nginx file
// and reloads nothing, so what nginx -t would say of the files is not its
// business (and not worth its time).
func (s *Socket) Checks(ctx context.Context) []Check {
	checks := []Check{s.activeCheck(ctx)}
	if s.converting {
		checks = s.conv.Checks(ctx)
	}
	keep := Check{Name: "upstream keepalive bounded"}
	keep.OK, keep.Err = s.keepalive()
	reach := Check{Name: "nginx can reach the sockets"}
	reach.OK, reach.Err = s.reachable(ctx, "")
	return append(checks, keep, reach, s.linkDirCheck())
}

// keepalive checks that nginx lets go of its cached connections to the
// old slot soon after the link moves. nginx reuses a cached connection
// before it opens a new one, so the old slot serves them until nginx
// closes them: after a response once keepalive_time has passed, or once
// idle for keepalive_timeout, both of the upstream block (nginx 1.19.10
// and later). A connection nginx closes is clean; one the app closes under
// nginx loses the request on it, so the drain waits, bounded by
// drain-timeout, for nginx to close them all: the longer bound must leave
// it half of that.
func (s *Socket) keepalive() (string, error) {
	file, keep, ok := s.conv.directive("keepalive")
	if !ok {
		return "no keepalive: a connection per request", nil
	}
	longest := time.Duration(0)
	for _, name := range []string{"keepalive_time", "keepalive_timeout"} {
		_, d, ok := s.conv.directive(name)
		if !ok {
			return "", fmt.Errorf("%s:%d: upstream %s has keepalive but no %s: nginx would go on reusing its cached connections to the old slot after the link moves (up to 1h); add \"keepalive_time 10s;\" and \"keepalive_timeout 10s;\" to the block (nginx 1.19.10 or later), each at most half of drain-timeout %s, or remove the keepalive line",
				file, keep.Line, s.upstream, name, shortDur(s.DrainTimeout))
		}
		t, err := nginxTime(d)
		if err != nil {
			return "", fmt.Errorf("%s:%d: %s: %w", file, d.Line, name, err)
		}
		if t > s.DrainTimeout/2 {
			return "", fmt.Errorf("%s:%d: %s %s is longer than half of drain-timeout %s: the drain could give up on nginx's cached connections to the old slot and stop it under them; set %s to at most %s, or raise drain-timeout",
				file, d.Line, name, shortDur(t), shortDur(s.DrainTimeout), name, shortDur(s.DrainTimeout/2))
		}
		longest = max(longest, t)
	}
	return fmt.Sprintf("keepalive %s, cached connections closed within %s", strings.Join(keep.Args, " "), shortDur(longest)), nil
}

// nginxTime reads the one time a directive sets.
func nginxTime(d upstream.Directive) (time.Duration, error) {
	if len(d.Args) != 1 {
		return 0, fmt.Errorf("want one time, e.g. 10s, not %q", strings.Join(d.Args, " "))
	}
	return nginx.ParseTime(d.Args[0])
}

// linkDirCheck refuses a link in a directory someone other than root may
// write: whoever can re-point the link sends the site's traffic where they
// like. As for the state dir, it matters when edgeswitch runs as root.
func (s *Socket) linkDirCheck() Check {
	dir := filepath.Dir(s.Link)
	c := Check{Name: "socket-link's directory root's", OK: dir}
	if os.Geteuid() == 0 {
		if err := trusted.Check(dir); err != nil {
			c.Err = fmt.Errorf("socket-link %s: %w", s.Link, err)
		}
	}
	return c
}

// reachable checks that nginx's workers can search every directory on the
// way to the link and to the sockets' directory, and, when socket is not
// "", connect to that socket. A sockets' directory that does not exist yet
// passes when the nearest one above it does: the slot's unit makes it
// (RuntimeDirectory=).
func (s *Socket) reachable(ctx context.Context, socket string) (string, error) {
	who, err := s.workerCreds(ctx)
	if err != nil {
		return "", err
	}
	paths := []string{filepath.Dir(s.Link)}
	if socket != "" {
		paths = append(paths, socket)
	} else {
		dir := filepath.Dir(s.Slots[0].Socket)
		for ; ; dir = filepath.Dir(dir) {
			if _, err := os.Stat(dir); err == nil || dir == "/" {
				break
			}
		}
		paths = append(paths, dir)
	}
	for _, p := range paths {
		if err := who.reach(p, socket == p); err != nil {
			return "", err
		}
	}
	return fmt.Sprintf("workers run as %s", who), nil
}

// Plan computes the change that points the link at the one backend's
// socket (after converting the block, the first time). Socket mode has one
// link and no weights. resume names the file an earlier switch was
// changing when it stopped: when that was nginx's config (a conversion),
// nginx may still run the config from before it, sending traffic to the
// old slot's port, so the reload is done again and the drain waits for the
// workers from before.
func (s *Socket) Plan(to []Backend, resume string) (*Change, error) {
	if resume != "" && resume != s.Link {
		s.converting = true
	}
	if len(to) != 1 || to[0].Weight != 0 {
		return nil, errors.New("socket mode has one link and no weights: a canary needs mode = \"reload\"")
	}
	target, _ := to[0].Addr.Socket()
	if !slices.Contains(s.sockets(), to[0].Addr) {
		return nil, fmt.Errorf("%s is not a slot's socket (%s)", to[0].Addr, s.socketNames())
	}
	if slices.Contains(s.byPort, to[0].Addr) {
		return nil, fmt.Errorf("upstream %s lists that slot by its port, and it was started to listen there, not on %s; switch to the other slot first: it starts on its socket, and the switch turns the upstream to the link",
			s.upstream, target)
	}
	c := &Change{
		File:    s.Link,
		Diff:    linkDiff(s.Link, s.to, target),
		Changed: s.to != target,
		Steps:   []Step{{Name: "link", Do: s.link, Whole: true}},
	}
	s.to = target
	if !s.converting {
		return c, nil
	}
	conv, err := s.conv.Plan([]Backend{{Addr: Unix(s.Link)}}, resume)
	if err != nil {
		return nil, err
	}
	c.File, c.Diff, c.Changed = conv.File, conv.Diff+c.Diff, true
	c.Steps = append(c.Steps, conv.Steps...)
	return c, nil
}

// linkDiff shows a change of the link's target as a unified diff of the
// link, its target the one line; "" when the target stays.
func linkDiff(link, from, to string) string {
	if from == to {
		return ""
	}
	d := fmt.Sprintf("--- %s\n+++ %s\n", link, link)
	if from == "" {
		return d + fmt.Sprintf("@@ -0,0 +1 @@\n+%s\n", to)
	}
	return d + fmt.Sprintf("@@ -1 +1 @@\n-%s\n+%s\n", from, to)
}

// link checks that nginx's workers can connect to the new slot's socket,
// then points the link at it.
func (s *Socket) link(ctx context.Context) (string, error) {
	if s.from == s.to && !s.converting {
		s.moved = time.Now()
		return s.Link + " already points at " + s.to, nil
	}
	if _, err := s.reachable(ctx, s.to); err != nil {
		return "", err
	}
	s.linked = true // before: an error after the rename leaves the new link
	if err := atomicfile.Link(s.Link, s.to); err != nil {
		return "", err
	}
	s.moved = time.Now()
	return fmt.Sprintf("%s -> %s", s.Link, s.to), nil
}

// Drain waits until nginx holds no connection to the other slot's socket,
// counted from the kernel's socket table (the other slot, not the link's
// old target: a switch resumed after a crash finds the link moved already);
// after a conversion, until the workers from before the reload are gone
// (they proxied to the old slot's port).
func (s *Socket) Drain(ctx context.Context) Drained {
	if s.converting {
		return s.conv.Drain(ctx)
	}
	old := s.Slots[0].Socket
	if old == s.to {
		old = s.Slots[1].Socket
	}
	left, err := s.waitClosed(ctx, old)
	if s.watching != nil {
		// Until now the old slot answered too, on nginx's cached
		// connections, under the link's name: the new slot's watch
		// starts once it has all the traffic.
		s.watching.restart()
	}
	return s.drained(ctx, old, left, err)
}

// drained says how a wait for the connections to socket ended.
func (s *Socket) drained(ctx context.Context, socket string, left int, err error) Drained {
	when := "after drain-timeout " + shortDur(s.DrainTimeout)
	if ctx.Err() != nil {
		when = "when the wait was cut short"
	}
	switch {
	case err != nil:
		// Stopping the slot may cut what could not be counted: say so.
		return Drained{Detail: "connections to " + socket + " unknown", Left: 1,
			Warn: fmt.Sprintf("connections to %s could not be counted (%v); stopping the slot cuts any still open", socket, err)}
	case left > 0:
		them := "them"
		if left == 1 {
			them = "it"
		}
		return Drained{
			Detail: fmt.Sprintf("%s still open to %s %s", plural(left, "connection"), socket, when),
			Left:   left,
			Warn:   fmt.Sprintf("%s still open to %s (a stream or long request); stopping the slot now cuts %s", plural(left, "connection"), socket, them),
		}
	}
	return Drained{Detail: fmt.Sprintf("no connection open to %s, %s after the link moved", socket, elapsed(time.Since(s.moved)))}
}

// connPoll is how often the kernel's socket table is read while a drain
// waits: a read costs well under a millisecond, and most drains end at
// the first looks.
const connPoll = 5 * time.Millisecond

// waitClosed polls the kernel's socket table until no connection is open
// to socket, or drain-timeout passes, and returns how many are left. The
// first look comes one poll after the move, so that a connect nginx began
// just before it is seen (a connect takes microseconds), and it takes two
// looks in a row that see none (a table read while sockets come and go
// can miss one).
func (s *Socket) waitClosed(ctx context.Context, socket string) (int, error) {
	deadline := time.NewTimer(s.DrainTimeout)
	defer deadline.Stop()
	tick := time.NewTicker(connPoll)
	defer tick.Stop()
	for zeros := 0; ; {
		select {
		case <-ctx.Done():
		case <-deadline.C:
		case <-tick.C:
			n, err := nginx.Conns(s.Procs.Root, Unix(socket).String())
			if err != nil {
				return 0, err
			}
			if n > 0 {
				zeros = 0
			} else if zeros++; zeros == 2 {
				return 0, nil
			}
			continue
		}
		return nginx.Conns(s.Procs.Root, Unix(socket).String())
	}
}

// Revert points the link back (or removes the one this switch made) and
// undoes a conversion, then waits until nginx holds no connection to the
// new slot, so that the caller may stop it; the Drained it returns says
// how that wait ended, as Drain does for the old slot.
func (s *Socket) Revert(ctx context.Context) (Drained, error) {
	reverted, err := s.conv.Revert(ctx)
	if err != nil || !s.linked {
		return reverted, err
	}
	if cur, err := s.readLink(); err == nil && cur == s.from { // the link step failed before its rename
		s.linked = false
		return reverted, nil
	}
	if s.from == "" {
		err = os.Remove(s.Link)
	} else {
		err = atomicfile.Link(s.Link, s.from)
	}
	if err != nil {
		return reverted, fmt.Errorf("%s still points at %s: %w", s.Link, s.to, err)
	}
	s.linked, s.moved = false, time.Now()
	if s.converting { // the conversion's revert waited for the workers
		return reverted, nil
	}
	left, err := s.waitClosed(ctx, s.to)
	return s.drained(ctx, s.to, left, err), nil
}

// Watch counts what nginx logs of the link, as addr's: nginx names the
// link in its logs, not the socket. Until the drain ends, the old slot
// still answers on nginx's cached connections (upstream keepalive), so the
// count starts again then, once addr has all the traffic.
func (s *Socket) Watch(ctx context.Context, addr Addr) Watch {
	if addr != Unix(s.to) {
		return quiet{}
	}
	s.watching = s.watch(ctx, Unix(s.Link).String())
	return s.watching
}

// quiet is the watch of a slot the link does not point at: nginx logs
// nothing of it.
type quiet struct{}

func (quiet) Failures() (int, string) { return 0, "" }
func (quiet) Answers() (int, int)     { return 0, 0 }
