package clickhouse

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/proto"

	"github.com/tributary-cdc/tributary/internal/fault"
)

// HTTPPortHint is added to the error of an address that answers HTTP where
// the native protocol was expected.
const HTTPPortHint = "this looks like the HTTP port; use the native port (9000, or 9440 with TLS)"

// httpProbeTimeout bounds the question asked of each address.
const httpProbeTimeout = 2 * time.Second

// withHTTPPortHint is called when connecting failed with err. Unless
// ClickHouse itself answered (an exception), it asks each address, in one
// short request (GET /ping), whether it is ClickHouse's HTTP interface:
// such a port waits for
// an HTTP request, so the native handshake times out there with nothing to
// say why. An address that answers HTTP makes the error permanent, with
// HTTPPortHint: such a port never starts speaking the native protocol, so
// retrying would only repeat the timeout every --clickhouse.dial-timeout
// (the same judgement as a refused password). Otherwise err is returned as
// it was.
func withHTTPPortHint(ctx context.Context, c Config, err error) error {
	var exc *proto.Exception
	if err == nil || errors.As(err, &exc) || ctx.Err() != nil {
		return err
	}
	for _, addr := range c.Addr {
		if answersHTTP(ctx, addr, c.TLS) {
			return fault.Permanent(fmt.Errorf("%w; %s answers HTTP: %s", err, addr, HTTPPortHint))
		}
	}
	return err
}

// answersHTTP reports whether addr answers GET /ping as ClickHouse's HTTP
// interface does (200, "Ok."), over TLS when useTLS, within
// httpProbeTimeout.
func answersHTTP(ctx context.Context, addr string, useTLS bool) bool {
	ctx, cancel := context.WithTimeout(ctx, httpProbeTimeout)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return false
	}
	defer conn.Close()
	deadline, _ := ctx.Deadline()
	_ = conn.SetDeadline(deadline)
	if useTLS {
		host, _, _ := net.SplitHostPort(addr)
		// Only a status line is read back, and nothing secret is sent.
		tc := tls.Client(conn, &tls.Config{ServerName: host, InsecureSkipVerify: true}) //nolint:gosec // a probe
		if err := tc.HandshakeContext(ctx); err != nil {
			return false
		}
		conn = tc
	}
	if _, err := conn.Write([]byte("GET /ping HTTP/1.0\r\nUser-Agent: tributary\r\n\r\n")); err != nil {
		return false
	}
	// ClickHouse's HTTP interface answers /ping with 200 and "Ok.". Its
	// native port answers an HTTP request too, with a 400 saying which
	// port is for HTTP: that is not the mistake this looks for.
	resp, _ := io.ReadAll(io.LimitReader(conn, 8<<10))
	status, rest, _ := bytes.Cut(resp, []byte("\r\n"))
	_, body, _ := bytes.Cut(rest, []byte("\r\n\r\n"))
	return bytes.HasPrefix(status, []byte("HTTP/1.")) && bytes.Contains(status, []byte(" 200 ")) &&
		string(bytes.TrimSpace(body)) == "Ok."
}
