#!/bin/bash
# handswitch.sh: the switches that edgeswitch is benchmarked against
# (bench_e2e_test.go), written the way an operator would write them by hand.
#
#   handswitch.sh careful      start the new slot, poll its health with curl,
#                              sed the upstream, nginx -t, reload, wait for
#                              the old workers to exit, stop the old slot
#   handswitch.sh naive        the same without the wait: stop the old slot
#                              right after the reload
#   handswitch.sh kill         for an upstream that lists both ports: start
#                              the new slot, poll its health, SIGKILL the old
#   handswitch.sh reload       a bare reload and the wait for the old
#                              workers; no switch
#
# Settings come from the environment: FROM and TO (ports), APP_UNIT
# (template, e.g. app@.service), NGINX_UNIT, NGINX_BIN, NGINX_CONF,
# NGINX_PID (nginx's pid file), UPSTREAM_FILE, HEALTH_PATH, INTERVAL
# (seconds between health polls) and POLL (seconds between checks for the
# old workers), the same pacing edgeswitch uses.
set -euo pipefail

systemctl() { command systemctl --user "$@"; }
slot() { echo "${APP_UNIT/@/@$1}"; }

start_new() {
	systemctl start "$(slot "$TO")"
	until curl -fso /dev/null "http://127.0.0.1:$TO$HEALTH_PATH"; do sleep "$INTERVAL"; done
}

point_nginx() {
	sed -i "s/127\.0\.0\.1:$FROM;/127.0.0.1:$TO;/" "$UPSTREAM_FILE"
	"$NGINX_BIN" -t -q -c "$NGINX_CONF"
}

reload_and_wait() {
	local old p
	old=$(pgrep -P "$(cat "$NGINX_PID")")
	systemctl reload "$NGINX_UNIT"
	for p in $old; do
		while kill -0 "$p" 2>/dev/null; do sleep "$POLL"; done
	done
}

case ${1-} in
careful)
	start_new
	point_nginx
	reload_and_wait
	systemctl stop "$(slot "$FROM")"
	;;
naive)
	start_new
	point_nginx
	systemctl reload "$NGINX_UNIT"
	systemctl stop "$(slot "$FROM")"
	;;
kill)
	start_new
	systemctl kill --signal=SIGKILL "$(slot "$FROM")"
	;;
reload)
	reload_and_wait
	;;
*)
	echo "usage: handswitch.sh careful|naive|kill|reload (settings in the environment)" >&2
	exit 2
	;;
esac
