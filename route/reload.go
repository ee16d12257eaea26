package route

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/edgeswitch/edgeswitch/internal/atomicfile"
	"github.com/edgeswitch/edgeswitch/nginx"
	"github.com/edgeswitch/edgeswitch/upstream"
)

// pollInterval is how often nginx's workers are looked at while waiting for
// a reload or a drain: /proc reads are cheap and the drain often ends in
// about 0.1 s.
const pollInterval = 20 * time.Millisecond

// Systemd is the part of *dbus.Conn the reload router uses, with
// go-systemd's own signatures.
type Systemd interface {
	nginx.Systemd
	GetUnitPropertiesContext(ctx context.Context, unit string) (map[string]interface{}, error)
}

// Reload moves traffic by rewriting the slot server lines of one upstream
// block and reloading nginx. A value serves one switch: it keeps what it
// read, wrote and reloaded, so that Revert can undo exactly that.
type Reload struct {
	*Nginx
	Upstream string // name of the upstream block
	Slots    []Addr // the addresses the block may list

	orig     *upstream.Block  // as Read found it: what Revert puts back
	base     *upstream.Block  // what the next Plan starts from: orig, then each plan's result
	written  []*upstream.Edit // the edits written to the file, in order
	reloaded bool             // a reload was asked for: nginx may run the new config
	old      nginx.Generation
	took     bool             // a reload of this switch took: nginx runs a config of ours
	mark     int64            // the error log's size at the latest reload
	shutdown *shutdownTimeout // nginx's worker_shutdown_timeout, once a drain is slow
}

// Read finds the upstream block in the config tree.
func (r *Reload) Read() (Listing, error) {
	b, err := upstream.Find(r.NginxConf, r.Upstream, r.listable())
	if err != nil {
		return Listing{}, err
	}
	r.orig, r.base = b, b
	return Listing{File: b.File, Line: b.Line, Addrs: parseAddrs(b.Listed())}, nil
}

// listable are the addresses the block may list, as nginx writes them.
func (r *Reload) listable() upstream.Slots { return nginxAddrs(r.Slots) }

// directive returns the first directive called name in the block as Read
// found it, with the block's file.
func (r *Reload) directive(name string) (string, upstream.Directive, bool) {
	if r.orig == nil {
		return "", upstream.Directive{}, false
	}
	d, ok := r.orig.Directive(name)
	return r.orig.File, d, ok
}

// Checks reports whether nginx's config passes nginx -t as it is and its
// unit is active. It never starts or restarts nginx.
func (r *Reload) Checks(ctx context.Context) []Check {
	return []Check{r.testCheck(ctx), r.activeCheck(ctx)}
}

// Plan computes the byte-minimal edit that lists the backends (one, or
// several with their weights: a canary), and the steps that write it, test
// it and reload nginx. It needs Read first. Plans chain: each starts from
// the file as the one before leaves it, so a canary's weights and then the
// new slot alone are two plans of one switch. A plan always reloads
// nginx, also when the file already lists the backends (an earlier switch
// wrote it and stopped before the reload took), so resume changes nothing.
func (r *Reload) Plan(to []Backend, resume string) (*Change, error) {
	c := &change{r: r, block: r.base, to: to}
	e, err := c.edit(r.base)
	if err != nil {
		return nil, err
	}
	c.e = e
	if r.base, err = upstream.Parse(e.File, e.New, r.Upstream, r.listable()); err != nil {
		return nil, fmt.Errorf("upstream: own edit of %s does not read back: %w", e.File, err)
	}
	return &Change{File: e.File, Diff: e.Diff(), Changed: e.Changed(), Steps: []Step{
		{Name: "validate", Do: c.validate},
		{Name: "reload", Do: r.reload, Whole: true},
		{Name: "confirm", Do: r.confirm, Whole: true},
	}}, nil
}

// change is one planned edit of the upstream block.
type change struct {
	r     *Reload
	to    []Backend
	block *upstream.Block // the block the edit starts from
	e     *upstream.Edit
}

// edit computes the change's edit of block b.
func (c *change) edit(b *upstream.Block) (*upstream.Edit, error) {
	switch len(c.to) {
	case 0:
		return nil, fmt.Errorf("upstream %s: a plan lists at least one slot", c.r.Upstream)
	case 1:
		if bytes.Equal(b.Body(), c.r.orig.Body()) {
			return b.To(c.to[0].Addr.String(), c.r.listable())
		}
		// After a canary: the block as a plain switch from the one Read
		// found would leave it.
		plain, err := c.r.orig.To(c.to[0].Addr.String(), c.r.listable())
		if err != nil {
			return nil, err
		}
		end, err := upstream.Parse(plain.File, plain.New, c.r.Upstream, c.r.listable())
		if err != nil {
			return nil, err
		}
		return b.Rebody(end.Body()), nil
	}
	weights := map[string]int{}
	for _, be := range c.to {
		weights[be.Addr.String()] = be.Weight
	}
	return b.Weigh(weights, c.r.listable())
}

// validate writes the new bytes atomically and runs nginx -t on them.
func (c *change) validate(ctx context.Context) (string, error) {
	r := c.r
	if !c.e.Changed() {
		return "unchanged", nil
	}
	// Someone may have edited the file since it was read (another app's
	// switch, whose upstream is in the same file): never write over their
	// change.
	now, err := os.ReadFile(c.e.File)
	if err != nil {
		return "", fmt.Errorf("%s changed while the new slot started (%w); run the switch again", c.e.File, err)
	}
	if !bytes.Equal(now, c.e.Old) {
		if err := c.replan(now); err != nil {
			return "", err
		}
	}
	// Set before the write: an error after the rename (fsync of the
	// directory) still leaves the new bytes in place, and restoring the
	// original twice is harmless.
	r.written = append(r.written, c.e)
	if err := atomicfile.Write(c.e.File, c.e.New, 0o644); err != nil {
		return "", err
	}
	if err := nginx.Test(ctx, r.Run, r.NginxBin, r.NginxConf); err != nil {
		return "", err
	}
	return "nginx -t ok", nil
}

// replan makes the edit again on the file as it is now, when the upstream
// block itself is still as the plan found it: then the change someone made
// elsewhere in the file is kept as it is.
func (c *change) replan(now []byte) error {
	b, err := upstream.Parse(c.e.File, now, c.r.Upstream, c.r.listable())
	if err != nil || !bytes.Equal(b.Body(), c.block.Body()) {
		return fmt.Errorf("%s changed while the new slot started, upstream %s with it; run the switch again", c.e.File, c.r.Upstream)
	}
	e, err := c.edit(b)
	if err != nil {
		return err
	}
	c.block, c.e = b, e
	return nil
}

// reload notes nginx's workers and asks systemd to reload the unit.
func (r *Reload) reload(ctx context.Context) (string, error) {
	master, err := nginx.MainPID(ctx, r.Systemd, r.NginxUnit)
	if err != nil {
		return "", err
	}
	if r.old, err = r.Procs.Snapshot(master); err != nil {
		return "", err
	}
	if len(r.old.Workers) == 0 {
		return "", fmt.Errorf("%w: nginx master %d shows no workers in /proc (mounted with hidepid?), so a reload could not be confirmed; run edgeswitch as root", nginx.ErrNotActive, master)
	}
	r.mark = r.errorLog(ctx).Mark() // a refusal of this reload comes after it
	ctx, cancel := context.WithTimeout(ctx, r.ReloadTimeout)
	defer cancel()
	r.reloaded = true
	return fmt.Sprintf("%s (master %d, %d workers)", r.NginxUnit, master, len(r.old.Workers)), nginx.Reload(ctx, r.Systemd, r.NginxUnit)
}

// confirm waits for the new generation of workers that shows nginx took
// the config; a master that keeps its old workers rejected it, and its
// error log says why.
func (r *Reload) confirm(ctx context.Context) (string, error) {
	errlog := r.errorLog(ctx)
	refused := func() string { return errlog.Refusal(r.mark) }
	gen, err := r.Procs.WaitNewGeneration(ctx, r.old, r.ReloadTimeout, pollInterval, refused)
	if errors.Is(err, nginx.ErrRejected) {
		if line := errlog.LastEmerg(r.mark); line != "" && !strings.Contains(err.Error(), line) {
			err = fmt.Errorf("%w: %s", err, line)
		}
		return "", fmt.Errorf("%w (see %s)", err, errlog.Path)
	}
	r.took = r.took || err == nil
	return fmt.Sprintf("%d new workers", len(gen.Workers)), err
}

// Watch counts from now what nginx logs of addr.
func (r *Reload) Watch(ctx context.Context, addr Addr) Watch { return r.watch(ctx, addr.String()) }

// Drain waits until every worker from before the reload has exited: until
// then they may still proxy requests to the slot that lost the traffic.
// When the wait times out, Left counts the connections still open to that
// slot (what stopping it would cut), or the old workers when they cannot
// be counted.
func (r *Reload) Drain(ctx context.Context) Drained {
	return r.drain(ctx, r.old.Workers, lostSlots(r.orig, r.base))
}

// drainQuick is how long a drain takes when no long-lived connection (a
// WebSocket, a stream, a long download) holds an old worker: past it,
// worker_shutdown_timeout is read to say how long one may hold it.
const drainQuick = time.Second

// shutdownTimeout is nginx's worker_shutdown_timeout, as read once.
type shutdownTimeout struct {
	d   time.Duration
	set bool
	err error
}

// lostSlots returns the slots that from lists and to does not: those whose
// connections a drain from the one to the other waits for.
func lostSlots(from, to *upstream.Block) []string {
	if from == nil || to == nil {
		return nil
	}
	var lost []string
	for _, a := range from.Listed() {
		if !slices.Contains(to.Listed(), a) {
			lost = append(lost, a)
		}
	}
	return lost
}

// drain waits, bounded by DrainTimeout, until none of workers is alive, and
// says how it ended. lost are the slots the workers may still proxy to.
func (r *Reload) drain(ctx context.Context, workers []int, lost []string) Drained {
	start := time.Now()
	left := r.Procs.WaitGone(ctx, workers, min(drainQuick, r.DrainTimeout), pollInterval)
	var st *shutdownTimeout                                      // read only for a slow drain: nginx -T takes time
	if len(left) > 0 && ctx.Err() == nil && r.DrainTimeout > 0 { // 0: the old slot is to stop at once
		st = r.shutdownTimeout(ctx)
		left = r.Procs.WaitGone(ctx, left, r.DrainTimeout-time.Since(start), pollInterval)
	}
	took := time.Since(start)
	if len(left) == 0 {
		d := Drained{Detail: fmt.Sprintf("%s gone after %s", plural(len(workers), "old worker"), elapsed(took))}
		if st != nil && st.set && took >= st.d {
			d.Detail += fmt.Sprintf(", at worker_shutdown_timeout %s", shortDur(st.d))
		}
		return d
	}

	when := "after drain-timeout " + shortDur(r.DrainTimeout)
	if ctx.Err() != nil {
		when = "when the wait was cut short after " + elapsed(took)
	}
	d := Drained{Detail: fmt.Sprintf("%d of %d old workers still running %s", len(left), len(workers), when)}
	if len(workers) == 1 {
		d.Detail = "1 old worker still running " + when
	}
	if len(lost) == 0 { // the file lists the same slots as before (a rerun): the slot to retire is not known here
		d.Left = len(left)
		d.Warn = fmt.Sprintf("%s may still proxy to the slot that lost the traffic; stopping it now may cut a request", plural(len(left), "old nginx worker"))
		return d
	}
	n, open, err := openConns(r.Procs.Root, lost)
	switch {
	case err != nil:
		d.Left = len(left)
		d.Warn = fmt.Sprintf("%s may still proxy to %s (the connections could not be counted: %v); stopping the slot now may cut a request",
			plural(len(left), "old nginx worker"), strings.Join(lost, " and "), err)
	case n == 0:
		d.Detail += ", no connection open to " + strings.Join(lost, " or ")
		return d
	default:
		d.Left = n
		held, it := "a stream or long request held by an old nginx worker", "it"
		if n > 1 {
			held, it = "streams or long requests held by old nginx workers", "them"
		}
		d.Warn = fmt.Sprintf("%s still open to %s (%s); stopping the slot now cuts %s", plural(n, "connection"), strings.Join(open, " and "), held, it)
	}
	switch {
	case st == nil || st.err != nil:
	case !st.set:
		d.Warn += "; without worker_shutdown_timeout, old nginx workers keep streams open until they end (setting it bounds that)"
	case st.d < r.DrainTimeout:
		d.Warn += fmt.Sprintf("; the old workers outlived worker_shutdown_timeout %s", shortDur(st.d))
	default:
		d.Warn += fmt.Sprintf("; worker_shutdown_timeout %s is longer than drain-timeout %s", shortDur(st.d), shortDur(r.DrainTimeout))
	}
	return d
}

// shutdownTimeout reads nginx's worker_shutdown_timeout the first time it
// is asked, within at most 5 s; a read that ctx cut short is not kept.
func (r *Reload) shutdownTimeout(ctx context.Context) *shutdownTimeout {
	if r.shutdown != nil {
		return r.shutdown
	}
	read, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var st shutdownTimeout
	st.d, st.set, st.err = nginx.WorkerShutdownTimeout(read, r.Run, r.NginxBin, r.NginxConf)
	if st.err == nil || ctx.Err() == nil {
		r.shutdown = &st
	}
	return &st
}

// openConns counts the connections open to addrs, and returns those of
// addrs that have some.
func openConns(procRoot string, addrs []string) (n int, open []string, err error) {
	for _, a := range addrs {
		c, err := nginx.Conns(procRoot, a)
		if err != nil {
			return 0, nil, err
		}
		if c > 0 {
			n += c
			open = append(open, a)
		}
	}
	return n, open, nil
}

// plural returns "1 thing" or "n things".
func plural(n int, thing string) string {
	if n == 1 {
		return "1 " + thing
	}
	return fmt.Sprintf("%d %ss", n, thing)
}

// elapsed says how long something took: "30ms", "2.5s".
func elapsed(d time.Duration) string {
	if d < time.Second {
		return d.Round(time.Millisecond).String()
	}
	return fmt.Sprintf("%.1fs", d.Seconds())
}

// shortDur writes a setting's duration without trailing zero units: "1m",
// not "1m0s".
func shortDur(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// Revert puts the original bytes back. If nginx may have taken the new
// config (a reload was asked for and a new generation appeared, or nginx
// could not be looked at), it is reloaded again on the restored file, so
// that it never keeps pointing at a slot that is about to stop, and Revert
// waits, like Drain, for the workers that proxied to the new slot: when
// the Drained it returns has Left, stopping that slot cuts what is still
// open to it. The errors say what state nginx and the file are in.
func (r *Reload) Revert(ctx context.Context) (Drained, error) {
	if len(r.written) == 0 {
		return Drained{}, nil
	}
	file := r.orig.File
	// After a reload that took (a canary's, before its promotion failed),
	// or one that may have, nginx must be reloaded back.
	if r.took || r.reloaded && r.old.Master != 0 && r.tookNew() {
		if err := r.restore(); err != nil {
			return Drained{}, fmt.Errorf("nginx may be running the new config and %s could not be restored: %w", file, err)
		}
		r.written = nil
		// The workers running now proxy to the new slot: once nginx runs
		// the restored config, they must be gone before the caller stops
		// that slot, or their requests in flight are cut.
		serving, err := r.Procs.Snapshot(r.old.Master)
		watch := err == nil && r.Procs.Alive(r.old.Master) // else there is no generation to watch
		if err := nginx.Reload(ctx, r.Systemd, r.NginxUnit); err != nil {
			return Drained{}, fmt.Errorf("nginx may be running the new config and reloading it back failed: %w", err)
		}
		if !watch {
			return Drained{}, nil
		}
		if _, err := r.Procs.WaitNewGeneration(ctx, serving, r.ReloadTimeout, pollInterval, nil); err != nil {
			return Drained{}, fmt.Errorf("nginx may be running the new config: reloading it back did not take: %w", err)
		}
		return r.drain(ctx, serving.Workers, lostSlots(r.base, r.orig)), nil
	}
	if err := r.restore(); err != nil {
		return Drained{}, fmt.Errorf("restore %s: %w; nginx still runs the old config, but the file lists the new slot", file, err)
	}
	r.written = nil
	return Drained{}, nil
}

// restore undoes this switch's own edits on the file as it is now: the
// block's body goes back to what Read found, and a change someone made
// elsewhere in the file since (another app's switch) stays. A body still
// as Read found it (a write that failed before its rename) needs nothing.
func (r *Reload) restore() error {
	file := r.orig.File
	now, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	cur, err := upstream.Parse(file, now, r.Upstream, r.listable())
	if err != nil {
		return err
	}
	if bytes.Equal(cur.Body(), r.orig.Body()) {
		return nil
	}
	ours := false
	for _, e := range r.written {
		if mine, err := upstream.Parse(file, e.New, r.Upstream, r.listable()); err == nil && bytes.Equal(cur.Body(), mine.Body()) {
			ours = true
		}
	}
	if !ours {
		return fmt.Errorf("upstream %s was changed by someone else since this switch wrote it; put back its servers by hand", r.Upstream)
	}
	return atomicfile.Write(file, cur.WithBody(r.orig.Body()), 0o644)
}

// tookNew reports whether nginx's master has a worker that was not there
// before the reload, or cannot be looked at or is gone (then a new master
// may run the new config).
func (r *Reload) tookNew() bool {
	now, err := r.Procs.Snapshot(r.old.Master)
	return err != nil || !r.Procs.Alive(r.old.Master) ||
		slices.ContainsFunc(now.Workers, func(w int) bool { return !slices.Contains(r.old.Workers, w) })
}
