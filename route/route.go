// Package route moves an upstream's traffic from one app slot to another.
// Its routers are what package swap drives through its Router interface:
// swap owns the slots (units, health, locks, history), a router owns how
// nginx is told where the traffic goes. Reload is the classic way: rewrite
// the upstream block, nginx -t, reload nginx over systemd, confirm the new
// generation of workers and wait for the old one to drain.
package route

import "context"

// Backend is one address that is to get traffic, with its share.
type Backend struct {
	Addr   Addr
	Weight int // relative share when several are listed; 0 when it takes all
}

// Listing is who gets traffic now, as the router's config says.
type Listing struct {
	File  string // the file that says it, for people
	Line  int    // the line it starts on
	Addrs []Addr // the slot addresses listed, in order, without repeats
}

// Check is one thing a router verifies before it acts.
type Check struct {
	Name string
	OK   string // what was found, when it passed
	Err  error  // what is wrong and what to do, when it did not
}

// Change is a planned change of who gets traffic: what it will do, for
// people, and the steps that carry it out. Nothing is touched until the
// steps run.
type Change struct {
	File    string // where the change is made
	Diff    string // unified diff of File; "" when the file stays as it is
	Steps   []Step // in order; Revert undoes whatever part of them ran
	Changed bool   // false when File already says what the change would
}

// Step is one step of carrying out a Change.
type Step struct {
	Name string
	// Whole marks a step that Ctrl-C must not cut short: once it starts,
	// the proxy may already act on the change, so it runs to its end (each
	// such step is bounded by its own timeout).
	Whole bool
	Do    func(ctx context.Context) (detail string, err error)
}

// Watch counts what nginx logged of one backend since the watch began: a
// bake watches the new slot through it.
type Watch interface {
	// Failures counts the requests to the backend that nginx logged as
	// failed, with the last such line.
	Failures() (n int, last string)
	// Answers counts the backend's answers, and those that were 5xx, where
	// an access log records them (else 0, 0).
	Answers() (total, fiveXX int)
}

// Drained is how the wait for old connections to the previous slot ended.
type Drained struct {
	Detail string // for the progress line
	// Left is what stopping the previous slot would cut when the wait
	// timed out: the connections still open to it, or, when they cannot be
	// counted, the old workers still running. 0 when nothing is left.
	Left int
	Warn string // what Left means, a sentence of its own, when Left is not 0
}
