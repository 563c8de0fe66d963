package pgrepl

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
)

// spill buffers the changes of one streamed (in-progress) transaction in a
// temporary file until its commit, so that memory stays flat whatever the
// transaction's size and an aborted transaction never reaches the sink.
type spill struct {
	f       *os.File
	w       *bufio.Writer
	aborted map[uint32]bool // aborted subtransactions
	buf     []byte
}

func newSpill(dir string) (*spill, error) {
	f, err := os.CreateTemp(dir, "tributary-pgrepl-*.spill")
	if err != nil {
		return nil, fmt.Errorf("spill a streamed transaction: %w", err)
	}
	return &spill{f: f, w: bufio.NewWriterSize(f, 256<<10)}, nil
}

// append writes one change of subtransaction xid: xid, the NULL and
// unchanged-TOAST sets, then each field as a uvarint length and its bytes.
func (sp *spill) append(xid uint32, t *tuple) error {
	b := binary.BigEndian.AppendUint32(sp.buf[:0], xid)
	b = binary.BigEndian.AppendUint16(b, uint16(t.null))
	b = binary.BigEndian.AppendUint16(b, uint16(t.toast))
	for _, s := range t.v {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	sp.buf = b
	if _, err := sp.w.Write(b); err != nil {
		return fmt.Errorf("spill a streamed transaction: %w", err)
	}
	return nil
}

func (sp *spill) abortSub(xid uint32) {
	if sp.aborted == nil {
		sp.aborted = map[uint32]bool{}
	}
	sp.aborted[xid] = true
}

// replay calls f with every change in order, skipping aborted subtransactions.
func (sp *spill) replay(f func(*tuple) error) error {
	if err := sp.w.Flush(); err != nil {
		return fmt.Errorf("spill flush: %w", err)
	}
	if _, err := sp.f.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("spill rewind: %w", err)
	}
	r := bufio.NewReaderSize(sp.f, 256<<10)
	var head [8]byte
	var t tuple
	var field []byte
	for {
		if _, err := io.ReadFull(r, head[:]); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("spill read: %w", err)
		}
		xid := binary.BigEndian.Uint32(head[:4])
		t.null = fieldSet(binary.BigEndian.Uint16(head[4:6]))
		t.toast = fieldSet(binary.BigEndian.Uint16(head[6:8]))
		for i := range t.v {
			n, err := binary.ReadUvarint(r)
			if err != nil {
				return fmt.Errorf("spill read: %w", err)
			}
			if cap(field) < int(n) {
				field = make([]byte, n)
			}
			field = field[:n]
			if _, err := io.ReadFull(r, field); err != nil {
				return fmt.Errorf("spill read: %w", err)
			}
			t.v[i] = string(field)
		}
		if sp.aborted[xid] {
			continue
		}
		if err := f(&t); err != nil {
			return err
		}
	}
}

func (sp *spill) remove() {
	name := sp.f.Name()
	sp.f.Close()
	os.Remove(name)
}
