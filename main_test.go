package main

import (
	"bytes"
	"runtime"
	"strings"
	"testing"
)

func TestDispatch(t *testing.T) {
	tests := []struct {
		args     []string
		wantCode int
		wantOut  string
	}{
		{[]string{"version"}, 0, "tributary dev (commit unknown, " + runtime.Version()},
		{[]string{"--help"}, 0, "version"},
		{[]string{"nonsense"}, 2, `unknown command "nonsense"`},
		{nil, 2, "Commands:"},
	}
	for _, tt := range tests {
		var out, errOut bytes.Buffer
		code := dispatch(tt.args, &out, &errOut)
		if code != tt.wantCode {
			t.Errorf("dispatch(%q) = %d, want %d", tt.args, code, tt.wantCode)
		}
		if got := out.String() + errOut.String(); !strings.Contains(got, tt.wantOut) {
			t.Errorf("dispatch(%q) printed %q, want it to contain %q", tt.args, got, tt.wantOut)
		}
	}
}
