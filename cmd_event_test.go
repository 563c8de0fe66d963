package main

import (
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/tributary-cdc/tributary/emulator"
)

// TestEventCommand: event get and event request print what the API returns,
// through the client's authentication and classification, never the token.
func TestEventCommand(t *testing.T) {
	emu, err := emulator.New(emulator.Config{Seed: 9, Events: 50, Token: "tk-secret"})
	if err != nil {
		t.Fatal(err)
	}
	defer emu.Close()
	srv := httptest.NewServer(emu.Handler())
	defer srv.Close()
	ev := emu.Events()[0]
	api := []string{"--api.url", srv.URL, "--api.tenant", emu.Tenant(), "--api.token", "tk-secret"}
	with := func(args ...string) []string { return append(args, api...) }
	runCmdCases(t, []cmdCase{
		{"get", with("event", "get", ev.Locator), 0, []string{`"locator": "` + ev.Locator + `"`, `"requestId": "` + ev.RequestID + `"`, `"type": "` + ev.Type + `"`}},
		{"request", with("event", "request", ev.RequestID), 0, []string{"[\n  {", `"requestId": "` + ev.RequestID + `"`}},
		{"unknown event", with("event", "get", "NOPE"), 1, []string{"HTTP 404", "no event with locator NOPE"}},
		{"no action", with("event"), 2, []string{"want get LOCATOR or request REQUEST_ID"}},
		{"classic", with("event", "get", ev.Locator, "--api.flavor", "classic"), 2, []string{"suite flavor only"}},
		{"bad tenant", []string{"event", "get", "X", "--api.url", srv.URL, "--api.tenant", "acme"}, 2, []string{"is a UUID"}},
	})
	runCmdCases(t, []cmdCase{{"wrong token", []string{"event", "get", ev.Locator, "--api.url", srv.URL, "--api.tenant", emu.Tenant(), "--api.token", "wrong-token"}, 1,
		[]string{"HTTP 401", "token rejected"}}})
	// The token never shows, whatever happens.
	for _, args := range [][]string{with("event", "get", "NOPE"), {"event", "get", "X", "--api.url", srv.URL, "--api.tenant", emu.Tenant(), "--api.token", "wrong-token"}} {
		var out, errOut strings.Builder
		dispatch(args, &out, &errOut)
		if s := out.String() + errOut.String(); strings.Contains(s, "tk-secret") || strings.Contains(s, "wrong-token") {
			t.Errorf("%q printed the token: %s", args, s)
		}
	}
}
