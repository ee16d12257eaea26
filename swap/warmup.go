package swap

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"
)

// maxWarmup bounds warmup-requests: a caller through sudo may set it, and
// the switch waits for them all.
const maxWarmup = 10000

// warmupConns is how many warm-up requests are in flight at once: enough
// to warm a JVM's threads and caches, few enough not to take the CPU the
// live slot needs.
const warmupConns = 4

// warmup sends the new slot its warm-up requests (warmup-requests in all,
// one per path when 0, the paths in turn) over warmupConns connections at
// once, after its health and before traffic moves. An answer outside
// health-status fails the step like a failed health check; each request
// may take up to health-timeout, a cold start's first answer being slow.
func (s *switcher) warmup(ctx context.Context) (string, error) {
	o := s.o
	n := o.WarmupRequests
	if n == 0 {
		n = len(o.Warmup)
	}
	h := newHealthCheck(o, s.res.To, s.env.HTTP)
	jobs := make(chan string)
	var (
		mu      sync.Mutex
		slowest time.Duration
		failed  error
		wg      sync.WaitGroup
	)
	start := time.Now()
	for range min(warmupConns, n) {
		wg.Go(func() {
			for path := range jobs {
				check := h.at(path, o.HealthTimeout)
				t0 := time.Now()
				ok, answer := check.probe(ctx)
				took := time.Since(t0)
				mu.Lock()
				slowest = max(slowest, took)
				if !ok && failed == nil {
					failed = fmt.Errorf("warm-up request to %s answered %s, not %s; the new slot is not ready for traffic: fix the app or the warmup paths", check.url, answer, o.HealthStatus)
				}
				mu.Unlock()
			}
		})
	}
	for i := range n {
		mu.Lock()
		stop := failed != nil
		mu.Unlock()
		if stop || ctx.Err() != nil {
			break
		}
		jobs <- o.Warmup[i%len(o.Warmup)]
	}
	close(jobs)
	wg.Wait()
	if failed != nil {
		return "", failed
	}
	if err := context.Cause(ctx); err != nil {
		return "", fmt.Errorf("warm-up cut short: %w", err)
	}
	return fmt.Sprintf("%d requests to %s in %s, slowest %s", n, strings.Join(o.Warmup, " "),
		time.Since(start).Round(time.Millisecond), slowest.Round(time.Millisecond)), nil
}
