package eventapi

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/tributary-cdc/tributary/internal/fault"
	"github.com/tributary-cdc/tributary/internal/testenv"
	"github.com/tributary-cdc/tributary/source"
)

// TestProbe: one authenticated request; a wrong literal token is permanent
// and never shown, a wrong tenant is permanent, an unreachable server transient.
func TestProbe(t *testing.T) {
	ctx := testenv.Context(t, 10*time.Second)
	for _, flavor := range []string{source.FlavorSuite, source.FlavorClassic} {
		s, srv := startEmulator(t, flavor, 10)
		cfg := emulatorConfig(s, srv, 100)
		var requests int
		cfg.OnRequest = func(int, time.Duration) { requests++ }
		c, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Probe(ctx); err != nil {
			t.Errorf("%s: Probe = %v, want nil", flavor, err)
		}
		if requests != 1 {
			t.Errorf("%s: Probe made %d requests, want 1", flavor, requests)
		}

		cfg.Token = "not-the-token"
		c, err = New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		err = c.Probe(ctx)
		var ae *APIError
		if !fault.IsPermanent(err) || !errors.As(err, &ae) || ae.Status != 401 || strings.Contains(err.Error(), "not-the-token") {
			t.Errorf("%s: Probe with a wrong token = %v, want a permanent 401 without the token", flavor, err)
		}
	}

	s, srv := startEmulator(t, source.FlavorSuite, 10)
	cfg := emulatorConfig(s, srv, 100)
	cfg.Tenant = "00000000-0000-4000-8000-000000000000"
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Probe(ctx); !fault.IsPermanent(err) {
		t.Errorf("Probe of another tenant = %v, want a permanent error", err)
	}

	cfg = emulatorConfig(s, srv, 100)
	cfg.URL = "http://127.0.0.1:1"
	c, err = New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Probe(ctx); err == nil || fault.IsPermanent(err) {
		t.Errorf("Probe of an unreachable server = %v, want a transient error", err)
	}
}
