package clickhouse

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
)

// replicaRecheck is how long a connection to ClickHouse lives when several
// addresses are configured: a new connection tries the addresses in order
// again, so the sink returns to the first one after it comes back, and
// notices that it did (Degraded).
const replicaRecheck = 10 * time.Second

// replicas records, per configured address, whether the last attempt to
// connect to it failed. The driver connects through dialStrategy: the
// addresses in order, the first that completes the handshake serves.
type replicas struct {
	mu   sync.Mutex
	now  func() time.Time
	down map[string]replicaDown
}

type replicaDown struct {
	since time.Time
	err   error
}

func newReplicas() *replicas {
	return &replicas{now: time.Now, down: map[string]replicaDown{}}
}

func (r *replicas) record(addr string, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err == nil {
		delete(r.down, addr)
		return
	}
	d, ok := r.down[addr]
	if !ok {
		d.since = r.now()
	}
	d.err = err
	r.down[addr] = d
}

// dialStrategy is the driver's DefaultDialStrategy in order
// (ConnOpenInOrder), recording each address's outcome; a dial cut short by
// the caller's context says nothing about the address.
func (r *replicas) dialStrategy(ctx context.Context, _ int, opt *clickhouse.Options, dial clickhouse.Dial) (clickhouse.DialResult, error) {
	var (
		res clickhouse.DialResult
		err error
	)
	for _, addr := range opt.Addr {
		res, err = dial(ctx, addr, opt)
		if ctx.Err() != nil {
			return res, err
		}
		r.record(addr, err)
		if err == nil {
			return res, nil
		}
	}
	if err == nil {
		err = errors.New("no ClickHouse address to connect to")
	}
	return res, err
}

// Degraded names the configured addresses whose last connection attempt
// failed, when others serve; nil when every address answered its last
// attempt. With a single address a failure is no degraded state but an
// outage, which the pipeline reports as the sink failing.
func (s *Sink) Degraded() []string {
	if len(s.cfg.Addr) < 2 {
		return nil
	}
	r := s.replicas
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.down) == 0 || len(r.down) >= len(s.cfg.Addr) {
		return nil
	}
	out := make([]string, 0, len(r.down))
	for addr, d := range r.down {
		out = append(out, fmt.Sprintf("ClickHouse %s unreachable since %s (%s): %v; writing through the other addresses",
			addr, d.since.UTC().Format(time.RFC3339), r.now().Sub(d.since).Round(time.Second), d.err))
	}
	sort.Strings(out)
	return out
}
