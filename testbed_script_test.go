package main

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestTestbedStopsOnSignal: scripts/testbed.sh handles SIGTERM and SIGINT
// while its command runs (not only after it): the signal reaches the
// command and its children once, the script waits for the command to finish,
// and exits 143 or 130. (Without servers: the servers are stopped by the
// same cleanup on every exit path.)
func TestTestbedStopsOnSignal(t *testing.T) {
	for _, tt := range []struct {
		sig  syscall.Signal
		code int
	}{{syscall.SIGTERM, 143}, {syscall.SIGINT, 130}} {
		t.Run(tt.sig.String(), func(t *testing.T) {
			dir := t.TempDir()
			// The command: a child that records the signals it gets, and a
			// grandchild (sleep) that must not outlive the script.
			script := `trap 'echo "got $1" >> ` + dir + `/signals; sleep 0.5; echo drained >> ` + dir + `/signals; exit 0' TERM INT
sleep 1000 &
echo $! > ` + dir + `/grandchild
echo started
wait`
			// env --default-signal: a shell started with SIGINT ignored
			// (as a background job is) cannot trap it.
			cmd := exec.Command("env", "--default-signal=INT,TERM", "bash", "scripts/testbed.sh", "--no-clickhouse", "--no-modern", "--no-cluster", "--no-postgres", "--", "bash", "-c", strings.ReplaceAll(script, "$1", tt.sig.String()))
			cmd.Env = append(os.Environ(), "TMPDIR="+dir)
			out, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			cmd.Stderr = os.Stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			lines := bufio.NewScanner(out)
			if !lines.Scan() || lines.Text() != "started" {
				t.Fatalf("first line %q, want started", lines.Text())
			}
			begin := time.Now()
			if err := cmd.Process.Signal(tt.sig); err != nil {
				t.Fatal(err)
			}
			err = cmd.Wait()
			took := time.Since(begin)
			if code := cmd.ProcessState.ExitCode(); code != tt.code {
				t.Errorf("exit code %d (%v), want %d", code, err, tt.code)
			}
			if took > 10*time.Second {
				t.Errorf("took %s after the signal", took)
			}
			got, _ := os.ReadFile(filepath.Join(dir, "signals"))
			if string(got) != "got "+tt.sig.String()+"\ndrained\n" {
				t.Errorf("the command recorded %q, want one %s and its drain, awaited", got, tt.sig)
			}
			b, _ := os.ReadFile(filepath.Join(dir, "grandchild"))
			if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err != nil || alive(pid) {
				t.Errorf("the command's child %q outlived the script", b)
			}
			if m, _ := filepath.Glob(filepath.Join(dir, "tributary-testbed.*")); len(m) > 0 {
				t.Errorf("the test bed's folder %s is left", m)
			}
		})
	}
}

// alive reports whether process pid exists and is not a zombie.
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}
