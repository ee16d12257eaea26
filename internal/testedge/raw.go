package testedge

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"time"
)

// rawClient sends requests over one HTTP/1.1 keep-alive connection of its
// own, opened when there is none, and never sends a request twice: when
// the server closes the connection under a request, the request fails.
type rawClient struct {
	dial func(ctx context.Context, network, addr string) (net.Conn, error)
	conn net.Conn
	br   *bufio.Reader
}

// do sends req, reads the whole answer and returns it, its body read.
func (c *rawClient) do(req *http.Request) (*http.Response, error) {
	if c.conn == nil {
		conn, err := c.dial(req.Context(), "tcp", req.URL.Host)
		if err != nil {
			return nil, err
		}
		c.conn, c.br = conn, bufio.NewReader(conn)
	}
	conn := c.conn
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	stop := context.AfterFunc(req.Context(), func() { conn.SetDeadline(time.Now()) })
	defer stop()
	if err := req.Write(conn); err != nil {
		c.close()
		return nil, err
	}
	resp, err := http.ReadResponse(c.br, req)
	if err == nil {
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	if err != nil || resp.Close {
		c.close()
	}
	return resp, err
}

func (c *rawClient) close() {
	if c.conn != nil {
		c.conn.Close()
		c.conn = nil
	}
}
