package backoff

import (
	"context"
	"testing"
	"time"
)

func TestDelay(t *testing.T) {
	tests := []struct {
		attempt   int
		base, max time.Duration
		want      time.Duration // the full delay; the result lies in [want/2, want]
	}{
		{0, 100 * time.Millisecond, time.Second, 100 * time.Millisecond},
		{1, 100 * time.Millisecond, time.Second, 200 * time.Millisecond},
		{3, 100 * time.Millisecond, time.Second, 800 * time.Millisecond},
		{4, 100 * time.Millisecond, time.Second, time.Second},
		{60, 100 * time.Millisecond, time.Second, time.Second}, // no overflow
		{2, time.Second, 500 * time.Millisecond, 500 * time.Millisecond},
	}
	for _, tt := range tests {
		for range 50 {
			if got := Delay(tt.attempt, tt.base, tt.max); got < tt.want/2 || got > tt.want {
				t.Fatalf("Delay(%d, %s, %s) = %s, want within [%s, %s]", tt.attempt, tt.base, tt.max, got, tt.want/2, tt.want)
			}
		}
	}
}

func TestSleep(t *testing.T) {
	if err := Sleep(context.Background(), time.Millisecond); err != nil {
		t.Errorf("Sleep = %v, want nil", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	begin := time.Now()
	if err := Sleep(ctx, time.Hour); err != context.Canceled {
		t.Errorf("Sleep on a cancelled context = %v, want context.Canceled", err)
	}
	if time.Since(begin) > time.Second {
		t.Error("Sleep did not end with its context")
	}
}
