package clickhouse

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/tributary-cdc/tributary/internal/fault"
)

// TestHTTPPortHint: an address that answers HTTP where the native protocol
// is expected fails at once, permanently, with the hint; an address where
// nothing answers keeps its transient error without the hint. Against the
// test bed's servers, their HTTP ports when it runs.
func TestHTTPPortHint(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("Ok.\n")) }))
	defer srv.Close()
	addrs := []string{strings.TrimPrefix(srv.URL, "http://")}
	for _, env := range []string{"TRIBUTARY_TEST_CLICKHOUSE_HTTP", "TRIBUTARY_TEST_CLICKHOUSE_MODERN_HTTP"} {
		if a := os.Getenv(env); a != "" {
			addrs = append(addrs, a)
		}
	}
	for _, addr := range addrs {
		c := DefaultConfig()
		c.Addr, c.DialTimeout = []string{addr}, 2*time.Second
		_, err := Open(context.Background(), c)
		if err == nil || !fault.IsPermanent(err) || !strings.Contains(err.Error(), addr+" answers HTTP: "+HTTPPortHint) {
			t.Errorf("Open(%s), an HTTP port = %v, want a permanent error with the hint", addr, err)
		}
	}

	// A native port answers an HTTP request too (400, "Port … is for
	// clickhouse-client program"): not the HTTP port. Its handshake
	// failing for another reason gets no hint.
	for _, env := range []string{"TRIBUTARY_TEST_CLICKHOUSE_ADDR", "TRIBUTARY_TEST_CLICKHOUSE_MODERN_ADDR"} {
		if a := os.Getenv(env); a != "" {
			if answersHTTP(context.Background(), a, false) {
				t.Errorf("the native port %s (%s) taken for the HTTP port", a, env)
			}
		}
	}

	// Something that accepts and never answers: no hint, still transient.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	c := DefaultConfig()
	c.Addr, c.DialTimeout = []string{ln.Addr().String()}, 500*time.Millisecond
	_, err = Open(context.Background(), c)
	if err == nil || fault.IsPermanent(err) || strings.Contains(err.Error(), "HTTP") {
		t.Errorf("Open of a silent port = %v, want a transient error without the hint", err)
	}
}
