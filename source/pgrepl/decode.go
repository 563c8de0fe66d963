package pgrepl

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// The pgoutput Insert and Update messages are decoded here rather than with
// pglogrepl.Parse, which allocates every column twice: the message is copied
// into one string once and the mapped columns are substrings of it.
//
//	Insert: 'I' [xid, in a stream] relid 'N' tuple
//	Update: 'U' [xid, in a stream] relid ['K'|'O' tuple] 'N' tuple
//	tuple:  ncols uint16, then per column 'n' | 'u' | 't' len uint32 bytes | 'b' len bytes

var errShort = errors.New("message too short")

// fieldSet is a set of fields (columnFields indexes), one bit each.
type fieldSet uint16

func (f fieldSet) has(i int) bool { return f&(1<<i) != 0 }

// tuple is one row as read: the mapped fields' text values ("" for NULL or
// an unmapped field), which of them were NULL, and which were unchanged
// TOASTed values the server did not send.
type tuple struct {
	v     rowValues
	null  fieldSet
	toast fieldSet
}

// decodeChange decodes an Insert or Update message; ri is looked up from the
// relation id. newT is nil when the relation is not the events table. The
// tuples are the streamer's own, valid until the next call.
func (st *streamer) decodeChange(msg string) (xid uint32, newT, oldT *tuple, ri *relInfo, err error) {
	p := 1
	if st.inStream {
		if len(msg) < p+4 {
			return 0, nil, nil, nil, errShort
		}
		xid = binary.BigEndian.Uint32([]byte(msg[p : p+4]))
		p += 4
	}
	if len(msg) < p+5 {
		return 0, nil, nil, nil, errShort
	}
	relID := binary.BigEndian.Uint32([]byte(msg[p : p+4]))
	p += 4
	ri = st.relations[relID]
	if ri == nil {
		return 0, nil, nil, nil, fmt.Errorf("change for relation %d before its Relation message", relID)
	}
	if !ri.ours {
		return xid, nil, nil, ri, nil
	}
	if msg[0] == 'U' && (msg[p] == 'K' || msg[p] == 'O') {
		full := msg[p] == 'O'
		st.oldTuple = tuple{}
		if p, err = decodeTuple(msg, p+1, ri, &st.oldTuple); err != nil {
			return 0, nil, nil, nil, err
		}
		if full {
			oldT = &st.oldTuple
		}
		if len(msg) <= p {
			return 0, nil, nil, nil, errShort
		}
	}
	if msg[p] != 'N' {
		return 0, nil, nil, nil, fmt.Errorf("expected a new tuple, got %q", msg[p])
	}
	st.newTuple = tuple{}
	newT = &st.newTuple
	if _, err = decodeTuple(msg, p+1, ri, newT); err != nil {
		return 0, nil, nil, nil, err
	}
	return xid, newT, oldT, ri, nil
}

// decodeTuple reads the tuple at msg[p:] into t and returns the offset after it.
func decodeTuple(msg string, p int, ri *relInfo, t *tuple) (int, error) {
	if len(msg) < p+2 {
		return 0, errShort
	}
	n := int(binary.BigEndian.Uint16([]byte(msg[p : p+2])))
	p += 2
	for col := 0; col < n; col++ {
		if len(msg) < p+1 {
			return 0, errShort
		}
		kind := msg[p]
		p++
		var val string
		switch kind {
		case 'n', 'u':
		case 't', 'b':
			if len(msg) < p+4 {
				return 0, errShort
			}
			l := int(binary.BigEndian.Uint32([]byte(msg[p : p+4])))
			p += 4
			if len(msg) < p+l {
				return 0, errShort
			}
			if kind == 'b' {
				return 0, fmt.Errorf("%s: binary tuple data is not supported", ri.name)
			}
			val = msg[p : p+l]
			p += l
		default:
			return 0, fmt.Errorf("unknown tuple column kind %q", kind)
		}
		if col < len(ri.field) {
			if f := ri.field[col]; f >= 0 {
				t.v[f] = val
				switch kind {
				case 'n':
					t.null |= 1 << f
				case 'u':
					t.toast |= 1 << f
				}
			}
		}
	}
	return p, nil
}
