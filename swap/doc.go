// Package swap moves live traffic from one app slot to the other on one
// nginx host, as a sequence of steps each with its way back:
//
//	lock      flock per app in the state dir's locks/, root's alone; a
//	          second switch fails fast
//	read      the slots the router lists now (package route)
//	decide    the target: --to, or the slot that is not live
//	preflight the router's checks (nginx active, nginx -t), the slot's unit,
//	          its address not taken by another process
//	pre-start the hook that installs the build, if any (each hook runs as
//	          the caller, in a scope of its own, within hook-timeout)
//	start     (re)start the target slot's unit over D-Bus
//	health    poll the target over HTTP until it answers as expected,
//	          from a socket only its unit's processes listen on
//	warmup    with warmup paths: requests to the target before traffic moves
//	rewrite   show the router's planned change, as a diff
//	listener  prove that again, just before traffic moves
//	validate  the router's steps: write the file atomically and nginx -t,
//	reload    ReloadUnit over D-Bus (never a restart),
//	confirm   a new generation of nginx's workers
//	drain     wait until nothing the proxy runs serves the old slot
//	bake      with a bake: watch the new slot, the old one kept running
//	          (with a canary, both listed with weights, then the new alone)
//	persist   enable the live slot's unit, disable the other's
//	retire    stop the old slot's unit
//	record    append the attempt to the history; post-switch or on-failure
//
// swap decides which slot gets the traffic and when; the Router tells
// nginx. Until the point of no return, any failure (Ctrl-C included) runs
// the undo of every step begun, the last first: the router's change is
// reverted (reloading nginx back if it had taken it), the target stopped,
// and traffic is on the old slot. The point of no return is the router's
// last step, or with a bake the end of the bake; Ctrl-C cannot cut the
// router's reload and confirm in two. A switch that crashed half-way is
// completed by the next run, from the pending record in the state dir.
package swap
