package checkpoint

import (
	"errors"
	"testing"

	"github.com/tributary-cdc/tributary/internal/fault"
)

func TestCheckSave(t *testing.T) {
	lease := Lease{Pipeline: "x", Generation: 6}
	cp := Checkpoint{Pipeline: "x", Position: "p", Events: 10}
	tests := []struct {
		name   string
		lease  Lease
		cp     Checkpoint
		newest Newest
		want   string // the error's message; "" for none
		fenced bool
	}{
		{"same generation, more events", lease, cp, Newest{true, 6, 9}, "", false},
		{"same generation, same events", lease, cp, Newest{true, 6, 10}, "", false},
		{"newer generation", lease, cp, Newest{true, 7, 0},
			`checkpoint of pipeline "x" was reset or taken over by another process (generation 7; this process holds 6): stopping; the next start resumes from the stored checkpoint`, true},
		{"older generation only", lease, cp, Newest{true, 5, 0},
			`checkpoint of pipeline "x" was removed or replaced by an older copy (this process holds generation 6, which the store no longer has): stopping; the next start resumes from the stored checkpoint, if any`, true},
		{"no entry", lease, cp, Newest{}, `checkpoint of pipeline "x" was removed or replaced by an older copy (this process holds generation 6, which the store no longer has): stopping; the next start resumes from the stored checkpoint, if any`, true},
		{"backwards", lease, cp, Newest{true, 6, 11},
			`checkpoint of pipeline "x" would move backwards within generation 6 (11 events saved, this save has 10): refused; the next start resumes from the stored checkpoint`, false},
		{"zero lease", Lease{}, cp, Newest{true, 6, 0}, `save checkpoint of pipeline "x" under lease "" generation 0: not a lease of this pipeline (Acquire returns one)`, false},
		{"another pipeline's lease", Lease{Pipeline: "y", Generation: 6}, cp, Newest{true, 6, 0}, `save checkpoint of pipeline "x" under lease "y" generation 6: not a lease of this pipeline (Acquire returns one)`, false},
		{"no pipeline", lease, Checkpoint{}, Newest{true, 6, 0}, "save checkpoint: empty pipeline name", false},
	}
	for _, tt := range tests {
		err := CheckSave(tt.lease, tt.cp, tt.newest)
		got := ""
		if err != nil {
			got = err.Error()
		}
		if got != tt.want {
			t.Errorf("%s: error %q, want %q", tt.name, got, tt.want)
		}
		if err == nil {
			continue
		}
		if !fault.IsPermanent(err) {
			t.Errorf("%s: the error is not permanent", tt.name)
		}
		if errors.Is(err, ErrFenced) != tt.fenced {
			t.Errorf("%s: errors.Is(err, ErrFenced) = %v, want %v", tt.name, !tt.fenced, tt.fenced)
		}
	}
}

func TestCorrupt(t *testing.T) {
	err := Corrupt("row x cannot be read: reset it")
	if !errors.Is(err, ErrCorrupt) || !fault.IsPermanent(err) || errors.Is(err, ErrFenced) || err.Error() != "row x cannot be read: reset it" {
		t.Errorf("Corrupt = %v (corrupt %v, permanent %v)", err, errors.Is(err, ErrCorrupt), fault.IsPermanent(err))
	}
}
