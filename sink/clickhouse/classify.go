package clickhouse

import (
	"context"
	"errors"
	"fmt"

	"github.com/ClickHouse/clickhouse-go/v2/lib/proto"

	"github.com/tributary-cdc/tributary/internal/fault"
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
	225: true, // NO_ZOOKEEPER (a replica not connected to its keeper yet)
	252: true, // TOO_MANY_PARTS
	279: true, // ALL_CONNECTION_TRIES_FAILED (a shard unreachable through a Distributed table)
	285: true, // TOO_FEW_LIVE_REPLICAS
	319: true, // UNKNOWN_STATUS_OF_INSERT
	394: true, // QUERY_WAS_CANCELLED (server shutting down)
	425: true, // SYSTEM_ERROR
	999: true, // KEEPER_EXCEPTION
}

// poisonCodes are ClickHouse exception codes that refuse an INSERT for the
// content of its rows: the pipeline isolates the rows instead of retrying
// or stopping.
var poisonCodes = map[int32]bool{
	6:   true, // CANNOT_PARSE_TEXT
	26:  true, // CANNOT_PARSE_QUOTED_STRING
	27:  true, // CANNOT_PARSE_INPUT_ASSERTION_FAILED
	38:  true, // CANNOT_PARSE_DATE
	41:  true, // CANNOT_PARSE_DATETIME
	69:  true, // ARGUMENT_OUT_OF_BOUND
	70:  true, // CANNOT_CONVERT_TYPE
	72:  true, // CANNOT_PARSE_NUMBER
	117: true, // INCORRECT_DATA
	131: true, // TOO_LARGE_STRING_SIZE
	321: true, // VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE
	349: true, // CANNOT_INSERT_NULL_IN_ORDINARY_COLUMN
}

// classifyErr marks err for the pipeline (internal/fault). It is the one
// place the package decides: errors already marked keep their mark; a
// ClickHouse exception is transient when its code is in transientCodes,
// poison when in poisonCodes, and permanent otherwise (unknown column or
// table, type mismatch, authentication, syntax, privileges); anything else
// (network errors, timeouts, a closed connection) is transient.
func classifyErr(err error) error {
	var exc *proto.Exception
	switch {
	case err == nil, fault.IsPermanent(err), fault.IsPoison(err), errors.Is(err, context.Canceled):
		return err
	case errors.As(err, &exc):
		switch {
		case transientCodes[exc.Code]:
			return err
		case poisonCodes[exc.Code]:
			return fault.Poison(err)
		}
		return fault.Permanent(err)
	}
	return err
}

// permanent returns a permanent error with a formatted message.
func permanent(format string, args ...any) error {
	return fault.Permanent(fmt.Errorf(format, args...))
}
