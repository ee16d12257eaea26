// Package swap moves live traffic from one app slot to the other on one
// nginx host, as a sequence of steps each with its way back:
//
//	lock      flock per upstream in the state dir; a second switch fails fast
//	read      find the upstream in the nginx config tree (package upstream)
//	decide    the target: --to, or the slot that is not live
//	preflight nginx's unit is active and nginx -t passes as things are
//	start     (re)start the target slot's unit over D-Bus
//	health    poll the target over HTTP until it answers as expected
//	rewrite   the byte-minimal edit of the upstream block, shown as a diff
//	validate  write the file atomically, then nginx -t; restore on failure
//	reload    ReloadUnit over D-Bus, never a restart
//	confirm   a new generation of workers under the same master
//	drain     wait until every pre-reload worker has exited
//	retire    stop the old slot's unit
//	record    append the attempt to the history
//
// The steps from rewrite to confirm are the Router's (route.Reload): swap
// decides which slot gets the traffic and when, the router tells nginx.
// Until the router's last step is done, any failure (Ctrl-C included) runs
// the undo of every step begun, the last first: the file is restored, the
// target stopped, and traffic stays where it was. From the reload on, the
// switch is finished rather than undone: a Ctrl-C there is ignored, and
// running the same switch again after a crash completes it.
package swap
