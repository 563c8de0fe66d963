package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestEmulateCommand(t *testing.T) {
	t.Setenv("TRIBUTARY_EMULATOR_FLAVOR", "classic") // the environment twin
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pr, pw := io.Pipe()
	done := make(chan int, 1)
	go func() {
		done <- emulate(ctx, func() {}, []string{"--web.listen-address", "127.0.0.1:0", "--emulator.events", "300", "--emulator.seed", "5", "--emulator.token", "tk"}, io.Discard, pw)
		pw.Close()
	}()
	lines := bufio.NewScanner(pr)
	var addr string
	for addr == "" && lines.Scan() {
		var rec struct {
			Msg         string    `json:"msg"`
			Address     string    `json:"address"`
			Flavor      string    `json:"flavor"`
			StartChosen bool      `json:"start_chosen"`
			LastEvent   time.Time `json:"last_event"`
		}
		if err := json.Unmarshal(lines.Bytes(), &rec); err != nil {
			t.Fatalf("log line is not JSON: %s", lines.Text())
		}
		if rec.Msg == "emulator listening" {
			if rec.Flavor != "classic" {
				t.Errorf("flavor %q, want classic from the environment", rec.Flavor)
			}
			addr = rec.Address
			// Without --emulator.start the history ends before the present.
			if !rec.StartChosen || !rec.LastEvent.Before(time.Now()) {
				t.Errorf("start chosen %v, last event %s: want a chosen start and a history that ends before now", rec.StartChosen, rec.LastEvent)
			}
		}
	}
	if addr == "" {
		t.Fatal("no 'emulator listening' log line")
	}
	go io.Copy(io.Discard, pr)
	tests := []struct {
		token string
		want  int
	}{{"", http.StatusUnauthorized}, {"tk", http.StatusOK}}
	for _, tt := range tests {
		req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/eventstream/events?startTimestamp=0", nil)
		if tt.token != "" {
			req.Header.Set("Authorization", "Bearer "+tt.token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tt.want {
			t.Errorf("token %q: %d %s, want %d", tt.token, resp.StatusCode, body, tt.want)
		}
		if tt.want == http.StatusOK && !strings.Contains(string(body), `"events":[{"id":"`) {
			t.Errorf("page %s is not a classic page", body[:min(len(body), 200)])
		}
	}
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("exit code %d after shutdown, want 0", code)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("emulate did not stop after its context ended")
	}
}

func TestEmulateInvalidConfig(t *testing.T) {
	tests := []struct {
		args []string
		want []string
	}{
		{[]string{"--emulator.flavor", "modern", "--emulator.page-size-max", "-1"}, []string{"emulator.flavor", "emulator.page-size-max"}},
		{[]string{"--no-such-flag"}, []string{"unknown flag"}},
		{[]string{"extra"}, []string{"unexpected arguments"}},
	}
	for _, tt := range tests {
		var errOut strings.Builder
		code := emulate(context.Background(), func() {}, tt.args, io.Discard, &errOut)
		if code != 2 {
			t.Errorf("%q: exit code %d, want 2", tt.args, code)
		}
		for _, w := range tt.want {
			if !strings.Contains(errOut.String(), w) {
				t.Errorf("%q: output %q lacks %q", tt.args, errOut.String(), w)
			}
		}
	}
}
