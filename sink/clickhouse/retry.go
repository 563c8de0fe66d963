package clickhouse

import (
	"context"
	"errors"
	"io"
	"net"
	"syscall"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/proto"
)

// transientCodes are ClickHouse exception codes worth retrying: overload,
// timeouts, network trouble between servers, replicas catching up.
var transientCodes = map[int32]bool{
	3:   true, // UNEXPECTED_END_OF_FILE
	32:  true, // ATTEMPT_TO_READ_AFTER_EOF
	159: true, // TIMEOUT_EXCEEDED
	160: true, // TOO_SLOW
	202: true, // TOO_MANY_SIMULTANEOUS_QUERIES
	203: true, // NO_FREE_CONNECTION
	209: true, // SOCKET_TIMEOUT
	210: true, // NETWORK_ERROR
	236: true, // ABORTED
	241: true, // MEMORY_LIMIT_EXCEEDED
	242: true, // TABLE_IS_READ_ONLY (a replica lost its keeper session)
	252: true, // TOO_MANY_PARTS
	285: true, // TOO_FEW_LIVE_REPLICAS
	319: true, // UNKNOWN_STATUS_OF_INSERT
	394: true, // QUERY_WAS_CANCELLED (server shutting down)
	425: true, // SYSTEM_ERROR
	999: true, // KEEPER_EXCEPTION
}

// Retry reasons passed to Config.OnRetry; they match the reason label of
// metrics.Retries.
const (
	ReasonTimeout     = "timeout"      // a deadline passed (client or server side)
	ReasonNetwork     = "network"      // connection refused, reset or closed
	ReasonRateLimited = "rate_limited" // too many queries, connections or parts
	ReasonServerError = "server_error" // another transient server exception
)

// classify says whether err is worth retrying and gives a bounded reason
// (one of the Reason constants) for metrics. It is the one place the
// package decides what is transient; everything it does not recognize
// (unknown column, type mismatch, authentication, syntax, a bad row) is
// permanent.
func classify(err error) (reason string, transient bool) {
	var perm *permanentError
	var exc *proto.Exception
	var netErr net.Error
	switch {
	case err == nil:
		return "", false
	case errors.As(err, &perm), errors.Is(err, context.Canceled):
		return "", false
	case errors.As(err, &exc):
		if transientCodes[exc.Code] {
			switch exc.Code {
			case 159, 209:
				return ReasonTimeout, true
			case 202, 203, 252:
				return ReasonRateLimited, true
			}
			return ReasonServerError, true
		}
		return "", false
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, clickhouse.ErrAcquireConnTimeout), errors.Is(err, syscall.ETIMEDOUT):
		return ReasonTimeout, true
	case errors.As(err, &netErr) && netErr.Timeout():
		return ReasonTimeout, true
	case errors.As(err, &netErr), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.ECONNREFUSED),
		errors.Is(err, syscall.ECONNABORTED), errors.Is(err, syscall.EPIPE), errors.Is(err, net.ErrClosed):
		return ReasonNetwork, true
	}
	return "", false
}

// markPermanent marks err permanent (see permanentError) when it is known to
// be: a bad row, or a ClickHouse exception whose code is not transient.
// Errors classify does not recognize stay unmarked, so that a caller may
// still retry them.
func markPermanent(err error) error {
	var perm *permanentError
	var exc *proto.Exception
	switch {
	case err == nil, errors.As(err, &perm):
		return err
	case errors.As(err, &exc) && !transientCodes[exc.Code]:
		return &permanentError{err: err}
	}
	return err
}
