package fault

import (
	"errors"
	"fmt"
	"testing"
	"time"
)

func TestMarks(t *testing.T) {
	base := errors.New("boom")
	tests := []struct {
		name                string
		err                 error
		permanent, poisoned bool
		after               time.Duration
	}{
		{"nil", nil, false, false, 0},
		{"plain", base, false, false, 0},
		{"permanent", Permanent(base), true, false, 0},
		{"wrapped permanent", fmt.Errorf("write: %w", Permanent(base)), true, false, 0},
		{"poison", Poison(base), false, true, 0},
		{"retry after", WithRetryAfter(base, 3*time.Second), false, false, 3 * time.Second},
		{"retry after 0", WithRetryAfter(base, 0), false, false, 0},
		{"both", fmt.Errorf("x: %w", WithRetryAfter(Poison(base), time.Second)), false, true, time.Second},
	}
	for _, tt := range tests {
		if got := IsPermanent(tt.err); got != tt.permanent {
			t.Errorf("%s: IsPermanent = %v, want %v", tt.name, got, tt.permanent)
		}
		if got := IsPoison(tt.err); got != tt.poisoned {
			t.Errorf("%s: IsPoison = %v, want %v", tt.name, got, tt.poisoned)
		}
		if got := RetryAfter(tt.err); got != tt.after {
			t.Errorf("%s: RetryAfter = %v, want %v", tt.name, got, tt.after)
		}
		if tt.err != nil && !errors.Is(tt.err, base) {
			t.Errorf("%s: the mark hides the cause", tt.name)
		}
	}
	if Permanent(nil) != nil || Poison(nil) != nil || WithRetryAfter(nil, time.Second) != nil {
		t.Error("a mark on nil is not nil")
	}
}
