package pgrepl

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tributary-cdc/tributary/internal/testenv"
	"github.com/tributary-cdc/tributary/source"
)

// TestRefusals: Open refuses, with a message saying what to do, a database or
// table it cannot replicate safely, and creates no slot then.
func TestRefusals(t *testing.T) {
	f := newFixture(t)
	ctx := testenv.Context(t, time.Minute)
	exec(t, f.pg.Conn, strings.Replace(fmt.Sprintf(createTableSQL, "nopk"), "locator text PRIMARY KEY", "locator text", 1))
	exec(t, f.pg.Conn, fmt.Sprintf(createTableSQL, "noident"))
	exec(t, f.pg.Conn, "ALTER TABLE noident REPLICA IDENTITY NOTHING")
	exec(t, f.pg.Conn, fmt.Sprintf(createTableSQL, "fullident"))
	exec(t, f.pg.Conn, "ALTER TABLE fullident DROP CONSTRAINT fullident_pkey, REPLICA IDENTITY FULL")
	role := testenv.Name("r_")
	exec(t, f.pg.Conn, "CREATE ROLE "+role+" LOGIN")
	exec(t, f.pg.Conn, "GRANT SELECT ON socotra_events TO "+role)
	t.Cleanup(func() {
		c, err := pgx.Connect(context.Background(), f.pg.AdminDSN)
		if err == nil {
			_, _ = c.Exec(context.Background(), "DROP OWNED BY "+role+"; DROP ROLE "+role)
			c.Close(context.Background())
		}
	})
	norepl := strings.Replace(f.pg.DSN, "postgres://postgres@", "postgres://"+role+"@", 1)
	otherPub := testenv.Name("pub_")
	exec(t, f.pg.Conn, "CREATE PUBLICATION "+otherPub+" FOR TABLE nopk")

	replica := startCluster(t, "replica")
	rc, err := pgx.Connect(ctx, replica.DSN)
	if err != nil {
		t.Fatal(err)
	}
	exec(t, rc, fmt.Sprintf(createTableSQL, "socotra_events"))
	rc.Close(ctx)

	tests := []struct {
		name string
		mod  func(*Config)
		from source.Position
		want []string
	}{
		{"wal_level replica", func(c *Config) { c.DSN = replica.DSN }, "", []string{`wal_level is "replica"`, "wal_level = logical"}},
		{"no primary key", func(c *Config) { c.Table = "nopk" }, "", []string{"no primary key", "REPLICA IDENTITY FULL"}},
		{"replica identity nothing", func(c *Config) { c.Table = "noident" }, "", []string{"REPLICA IDENTITY NOTHING"}},
		{"no REPLICATION attribute", func(c *Config) { c.DSN = norepl }, "", []string{"lacks the REPLICATION attribute", "ALTER ROLE"}},
		{"missing table", func(c *Config) { c.Table = "public.nope" }, "", []string{"does not exist"}},
		{"missing column", func(c *Config) { c.Columns.Username = "user_name" }, "", []string{`no column "user_name"`, "--pg.column.username"}},
		{"publication without the table", func(c *Config) { c.Publication = otherPub }, "", []string{"does not include table", "ALTER PUBLICATION"}},
		{"no publication, may not create", func(c *Config) { c.CreatePublication = false }, "", []string{"does not exist", "CREATE PUBLICATION"}},
		{"no slot, may not create", func(c *Config) { c.CreateSlot = false }, "", []string{"--pg.create-slot is false"}},
		{"checkpoint without its slot", func(*Config) {}, "lsn:0/16B3748", []string{"does not exist but the checkpoint"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := f.cfg
			tt.mod(&cfg)
			src, err := New(cfg, testLogger(t))
			if err != nil {
				t.Fatal(err)
			}
			err = src.Open(ctx, tt.from)
			if err == nil {
				_ = src.Close(ctx)
				t.Fatalf("Open succeeded, want an error with %q", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
	var slots int
	if err := f.pg.Conn.QueryRow(ctx, "SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1", f.cfg.Slot).Scan(&slots); err != nil || slots != 0 {
		t.Errorf("slots created by refused Opens: %d (%v)", slots, err)
	}

	// REPLICA IDENTITY FULL without a primary key is accepted.
	cfg := f.cfg
	cfg.Table = "fullident"
	cfg.Publication = testenv.Name("pub_")
	src := f.open(t, cfg, "")
	exec(t, f.pg.Conn, insertSQL("fullident", 1, 10))
	var c collected
	readUntil(t, src, 100, 30*time.Second, &c, hasN(10))
	wantExactly(t, &c, 1, 10)
}
