package pgrepl

import (
	"fmt"
	"net/url"
	"strings"

	"github.com/jackc/pglogrepl"

	"github.com/tributary-cdc/tributary/source"
)

// A Position of this source is one of:
//
//	lsn:<X/Y>                      streaming: every transaction whose commit ends at or
//	                               before X/Y is delivered; resuming starts the slot there.
//	snapshot:<X/Y>:<last locator>  copying the rows that existed when the slot was created
//	                               at X/Y: every row whose locator sorts at or before
//	                               <last locator> (URL path-escaped; empty: none yet) is
//	                               delivered; streaming starts at X/Y once the copy ends.
//
// The empty Position means "from the configured start" (see Open).
type position struct {
	snapshot bool
	lsn      pglogrepl.LSN
	lastKey  string // snapshot only
	hasKey   bool   // snapshot only: lastKey is set (an empty string is a valid key)
}

func (p position) encode() source.Position {
	if p.snapshot {
		k := ""
		if p.hasKey {
			k = "=" + url.PathEscape(p.lastKey)
		}
		return source.Position("snapshot:" + p.lsn.String() + ":" + k)
	}
	return source.Position("lsn:" + p.lsn.String())
}

func parsePosition(s source.Position) (position, error) {
	str := string(s)
	switch {
	case strings.HasPrefix(str, "lsn:"):
		lsn, err := pglogrepl.ParseLSN(strings.TrimPrefix(str, "lsn:"))
		if err != nil {
			return position{}, fmt.Errorf("position %q: %w", str, err)
		}
		return position{lsn: lsn}, nil
	case strings.HasPrefix(str, "snapshot:"):
		parts := strings.SplitN(strings.TrimPrefix(str, "snapshot:"), ":", 2)
		if len(parts) != 2 {
			return position{}, fmt.Errorf("position %q: want snapshot:<lsn>:<key>", str)
		}
		lsn, err := pglogrepl.ParseLSN(parts[0])
		if err != nil {
			return position{}, fmt.Errorf("position %q: %w", str, err)
		}
		p := position{snapshot: true, lsn: lsn}
		if parts[1] != "" {
			if !strings.HasPrefix(parts[1], "=") {
				return position{}, fmt.Errorf("position %q: the key must start with =", str)
			}
			k, err := url.PathUnescape(parts[1][1:])
			if err != nil {
				return position{}, fmt.Errorf("position %q: %w", str, err)
			}
			p.lastKey, p.hasKey = k, true
		}
		return p, nil
	}
	return position{}, fmt.Errorf("position %q is not a PostgreSQL position (lsn:… or snapshot:…)", str)
}
