package route

import (
	"context"
	"time"

	"github.com/edgeswitch/edgeswitch/nginx"
)

// logWatch counts what nginx logs of one address from the moment it was
// made: the error log's failed requests to it, and its answers in every
// access log that records $upstream_addr and $upstream_status.
type logWatch struct {
	addr   string // as nginx's logs name it
	errlog nginx.ErrorLog
	mark   int64
	access []nginx.AccessLog
	marks  []int64
}

// watch starts a watch of addr. The access logs are looked for now, not at
// every reload: nginx -T reads the whole config, and only a bake watches.
func (n *Nginx) watch(ctx context.Context, addr string) *logWatch {
	w := &logWatch{addr: addr, errlog: n.errorLog(ctx)}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	w.access, _ = nginx.AccessLogs(ctx, n.Run, n.NginxBin, n.NginxConf) // none: no 5xx watch
	w.restart()
	return w
}

// restart counts from now on.
func (w *logWatch) restart() {
	w.mark, w.marks = w.errlog.Mark(), nil
	for _, l := range w.access {
		w.marks = append(w.marks, l.Mark())
	}
}

func (w *logWatch) Failures() (int, string) { return w.errlog.UpstreamFailures(w.mark, w.addr) }

func (w *logWatch) Answers() (total, fiveXX int) {
	for i, l := range w.access {
		t, f := l.Answers(w.marks[i], w.addr)
		total, fiveXX = total+t, fiveXX+f
	}
	return total, fiveXX
}
