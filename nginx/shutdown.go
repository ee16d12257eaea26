package nginx

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// WorkerShutdownTimeout returns nginx's worker_shutdown_timeout, from the
// whole config as `bin -T -q -c conf` prints it. After a reload, an old
// worker closes the connections it still has (a WebSocket, a stream, a
// long request) once this long has passed, and exits; without it, it keeps
// them until they end. set is false when the config does not set it, or
// sets it to 0, which nginx takes as unset. The error is for an nginx that
// could not print its config, or a value that does not read as nginx's
// time.
func WorkerShutdownTimeout(ctx context.Context, run Runner, bin, conf string) (d time.Duration, set bool, err error) {
	dump, err := dumpConfig(ctx, run, bin, conf)
	if err != nil {
		return 0, false, err
	}
	for _, dir := range dump {
		// A main-context directive, which nginx takes once: where the dump
		// has it does not matter.
		if dir[0] != "worker_shutdown_timeout" || len(dir) != 2 {
			continue
		}
		d, err := ParseTime(dir[1])
		if err != nil {
			return 0, false, fmt.Errorf("worker_shutdown_timeout %q: %w", dir[1], err)
		}
		return d, d > 0, nil
	}
	return 0, false, nil
}

// ParseTime reads a time as nginx does for a millisecond setting: numbers
// with units w, d, h, m, s or ms in that order ("1m30s", "1h 30m"), a
// number without a unit being seconds.
func ParseTime(s string) (time.Duration, error) {
	const day = 24 * time.Hour
	units := []struct {
		name string
		d    time.Duration
	}{{"ms", time.Millisecond}, {"w", 7 * day}, {"d", day}, {"h", time.Hour}, {"m", time.Minute}, {"s", time.Second}}
	rest := strings.TrimSpace(s)
	if rest == "" {
		return 0, fmt.Errorf("empty time")
	}
	var total time.Duration
	for rest != "" {
		i := 0
		for i < len(rest) && '0' <= rest[i] && rest[i] <= '9' {
			i++
		}
		if i == 0 {
			return 0, fmt.Errorf("%q is not a time", s)
		}
		v, err := strconv.ParseInt(rest[:i], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%q is not a time", s)
		}
		rest = rest[i:]
		unit := time.Second // a bare number
		for _, u := range units {
			if strings.HasPrefix(rest, u.name) {
				unit, rest = u.d, rest[len(u.name):]
				break
			}
		}
		if rest != "" && rest[0] != ' ' && (rest[0] < '0' || rest[0] > '9') {
			return 0, fmt.Errorf("%q is not a time", s)
		}
		if v > int64(1<<63-1)/int64(unit) || total+time.Duration(v)*unit < total {
			return 0, fmt.Errorf("%q is too long", s)
		}
		total += time.Duration(v) * unit
		rest = strings.TrimLeft(rest, " ")
	}
	return total, nil
}
