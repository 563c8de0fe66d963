package emulator

import (
	"bytes"
	"testing"
	"time"

	"github.com/tributary-cdc/tributary/internal/testenv"
)

// Every event is written to PostgreSQL exactly as served, one transaction
// per request.
func TestPostgresCopy(t *testing.T) {
	for _, fl := range flavors {
		t.Run(fl, func(t *testing.T) {
			pg := testenv.Postgres(t)
			ctx := testenv.Context(t, 60*time.Second)
			table := testenv.Name("events_")
			cfg := Config{Flavor: fl, Seed: 61, Events: 2000, PGDSN: pg.DSN, PGTable: table}
			s, _ := newTestServer(t, cfg)
			s.Append(300)
			want := s.Events()

			rows, err := pg.Conn.Query(ctx, `SELECT locator, request_id, user_locator, username, transaction_id, tenant, flavor, type,
				occurred_at, data::text, xmin::text FROM `+table+` ORDER BY occurred_at, locator`)
			if err != nil {
				t.Fatal(err)
			}
			type row struct {
				e      Event
				flavor string
				xmin   string
			}
			var got []row
			for rows.Next() {
				var r row
				var data string
				if err := rows.Scan(&r.e.Locator, &r.e.RequestID, &r.e.UserLocator, &r.e.Username, &r.e.TransactionID,
					&r.e.Tenant, &r.flavor, &r.e.Type, &r.e.Timestamp, &data, &r.xmin); err != nil {
					t.Fatal(err)
				}
				r.e.Data = []byte(data)
				r.e.Timestamp = r.e.Timestamp.UTC()
				got = append(got, r)
			}
			if err := rows.Err(); err != nil {
				t.Fatal(err)
			}
			if len(got) != len(want) {
				t.Fatalf("%d rows, want %d events", len(got), len(want))
			}
			reqOfXmin := map[string]string{}
			xminOfReq := map[string]string{}
			for i, r := range got {
				w := want[i]
				if r.flavor != fl || !bytes.Equal(r.e.Data, w.Data) || !r.e.Timestamp.Equal(w.Timestamp) {
					t.Fatalf("row %d: flavor %s data %s at %s, want %s %s at %s", i, r.flavor, r.e.Data, r.e.Timestamp, fl, w.Data, w.Timestamp)
				}
				r.e.Data, r.e.Timestamp = w.Data, w.Timestamp
				if r.e.Locator != w.Locator || r.e.RequestID != w.RequestID || r.e.UserLocator != w.UserLocator ||
					r.e.Username != w.Username || r.e.TransactionID != w.TransactionID || r.e.Tenant != w.Tenant || r.e.Type != w.Type {
					t.Fatalf("row %d: %+v, want %+v", i, r.e, w)
				}
				req := w.RequestID + w.TransactionID
				if x, ok := xminOfReq[req]; ok && x != r.xmin {
					t.Fatalf("request %s written in transactions %s and %s", req, x, r.xmin)
				}
				if q, ok := reqOfXmin[r.xmin]; ok && q != req {
					t.Fatalf("transaction %s holds requests %s and %s", r.xmin, q, req)
				}
				xminOfReq[req], reqOfXmin[r.xmin] = r.xmin, req
			}
			if len(xminOfReq) < 2 {
				t.Fatalf("only %d requests written", len(xminOfReq))
			}

			// The documented column types.
			types := map[string]string{}
			trows, err := pg.Conn.Query(ctx, `SELECT column_name, data_type FROM information_schema.columns WHERE table_name = $1`, table)
			if err != nil {
				t.Fatal(err)
			}
			for trows.Next() {
				var c, ty string
				trows.Scan(&c, &ty)
				types[c] = ty
			}
			for col, ty := range map[string]string{"locator": "text", "data": "json", "occurred_at": "timestamp with time zone", "flavor": "text"} {
				if types[col] != ty {
					t.Errorf("column %s is %q, want %q", col, types[col], ty)
				}
			}

			// A restart with the same seed into the same table adds nothing twice.
			s2, err := New(cfg)
			if err != nil {
				t.Fatalf("restart into the existing table: %v", err)
			}
			s2.Close()
			var n int
			if err := pg.Conn.QueryRow(ctx, `SELECT count(*) FROM `+table).Scan(&n); err != nil {
				t.Fatal(err)
			}
			if n != len(want) {
				t.Errorf("%d rows after a replay, want %d", n, len(want))
			}
		})
	}
}
