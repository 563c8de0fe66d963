package pgrepl

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tributary-cdc/tributary/internal/testenv"
)

// TestRestartPostgres restarts PostgreSQL (a private cluster, so that other
// tests keep their server) twice while rows stream in: Read returns each lost
// connection as a transient error, the next Read reconnects (the test retries
// like the pipeline), every row arrives, and Acks keep moving the slot.
func TestRestartPostgres(t *testing.T) {
	cl := startCluster(t, "logical")
	ctx := testenv.Context(t, 3*time.Minute)
	conn, err := pgx.Connect(ctx, cl.DSN)
	if err != nil {
		t.Fatal(err)
	}
	exec(t, conn, fmt.Sprintf(createTableSQL, "socotra_events"))
	exec(t, conn, insertSQL("socotra_events", 1, 1000))
	conn.Close(ctx)

	cfg := DefaultConfig()
	cfg.DSN = cl.DSN
	cfg.StatusInterval = 200 * time.Millisecond
	cfg.LagInterval = 200 * time.Millisecond
	src, err := New(cfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := src.Open(ctx, ""); err != nil {
		t.Fatal(err)
	}
	defer src.Close(context.Background())

	const total, per = 30000, 100
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // the writer retries through the restarts; ON CONFLICT makes a retried batch exact
		defer wg.Done()
		var wc *pgx.Conn
		for i := 1001; i <= total; {
			if wc == nil {
				c, err := pgx.Connect(ctx, cl.DSN)
				if err != nil {
					time.Sleep(100 * time.Millisecond)
					continue
				}
				wc = c
			}
			q := insertSQL("socotra_events", i, i+per-1) + " ON CONFLICT DO NOTHING"
			if _, err := wc.Exec(ctx, q); err != nil {
				if ctx.Err() != nil {
					t.Errorf("writer: %v", err)
					return
				}
				wc.Close(context.Background())
				wc = nil
				continue
			}
			i += per
			time.Sleep(2 * time.Millisecond)
		}
		if wc != nil {
			wc.Close(context.Background())
		}
	}()

	// The restarts run beside the reader: a fast shutdown waits until the
	// walsender's last position is confirmed, which needs Read and Ack going on.
	var c collected
	restarts := 0
	restartErr := make(chan error, 2)
	readUntil(t, src, 1000, 2*time.Minute, &c, func(c *collected) bool {
		if strings.HasPrefix(string(c.last), "lsn:") {
			if err := src.Ack(context.Background(), c.last); err != nil {
				t.Fatal(err)
			}
		}
		if restarts < 2 && len(c.count) > 8000*(restarts+1) {
			restarts++
			go func() { restartErr <- cl.restart() }()
		}
		return len(c.count) >= total
	})
	wg.Wait()
	for i := 0; i < restarts; i++ {
		if err := <-restartErr; err != nil {
			t.Errorf("restart: %v", err)
		}
	}
	readFor(t, src, 500*time.Millisecond, &c)
	if len(c.count) != total {
		t.Errorf("distinct events: got %d, want %d", len(c.count), total)
	}
	for i := 1; i <= total; i++ {
		if c.count[fmt.Sprintf("ev-%09d", i)] == 0 {
			t.Fatalf("event %d missing", i)
		}
	}
	if n := src.Stats().Reconnects; n < 2 {
		t.Errorf("reconnects: got %d, want ≥ 2", n)
	}
	dup := 0
	for _, n := range c.count {
		dup += n - 1
	}
	t.Logf("%d events, %d redelivered after reconnects (absorbed by the idempotent sink), %d reconnects", total, dup, src.Stats().Reconnects)
}
