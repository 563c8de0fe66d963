package testenv

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// Binary builds the tributary binary once per test process (without -race:
// end-to-end tests kill and restart it many times) and returns its path.
func Binary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		out, err := exec.Command("go", "env", "GOMOD").Output()
		if err != nil {
			buildErr = fmt.Errorf("go env GOMOD: %v", err)
			return
		}
		root := filepath.Dir(strings.TrimSpace(string(out)))
		dir, err := os.MkdirTemp("", "tributary-bin")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "tributary")
		cmd := exec.Command("go", "build", "-o", binPath, ".")
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// Process is one running tributary, started by Start and killed at the
// test's end if still running.
type Process struct {
	cmd  *exec.Cmd
	out  *outputBuffer
	done chan struct{}
	err  error // the Wait result, valid once done is closed
}

// outputBuffer collects a process's output, keeping at most its last MiB or so.
type outputBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (o *outputBuffer) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.b.Len() > 1<<20 {
		o.b.Reset()
	}
	return o.b.Write(p)
}

func (o *outputBuffer) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.b.String()
}

// Start runs the binary with args and the environment less every TRIBUTARY_*
// variable, so that only the arguments configure it.
func Start(t testing.TB, args ...string) *Process {
	t.Helper()
	cmd := exec.Command(Binary(t), args...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "TRIBUTARY_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	p := &Process{cmd: cmd, out: &outputBuffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.out, p.out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start tributary: %v", err)
	}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.done
	})
	return p
}

// Output returns what the process printed (its last MiB or so).
func (p *Process) Output() string { return p.out.String() }

// Exited reports whether the process has ended, and its Wait error.
func (p *Process) Exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.err
	default:
		return false, nil
	}
}

// Alive returns an error with the process's output if it has ended.
func (p *Process) Alive() error {
	if done, err := p.Exited(); done {
		return fmt.Errorf("tributary exited (%v):\n%s", err, p.Output())
	}
	return nil
}

// Kill sends SIGKILL and waits until the process is gone.
func (p *Process) Kill(t testing.TB) {
	t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		t.Fatal("process did not die after SIGKILL")
	}
}

// Stop sends SIGTERM and returns the exit code and how long the exit took;
// the test fails if the process is still running 20 seconds later.
func (p *Process) Stop(t testing.TB) (code int, took time.Duration) {
	t.Helper()
	begin := time.Now()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	return p.Wait(t, 20*time.Second), time.Since(begin)
}

// Wait waits up to timeout for the process to end on its own and returns its
// exit code; the test fails if it does not end.
func (p *Process) Wait(t testing.TB, timeout time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(timeout):
		t.Fatalf("tributary still running after %s:\n%s", timeout, p.Output())
	}
	var ee *exec.ExitError
	switch {
	case p.err == nil:
		return 0
	case errors.As(p.err, &ee):
		return ee.ExitCode()
	default:
		t.Fatalf("wait for tributary: %v", p.err)
		return -1
	}
}

// WaitOutput waits until the process has printed want.
func (p *Process) WaitOutput(t testing.TB, want string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !strings.Contains(p.Output(), want) {
		if done, _ := p.Exited(); done || time.Now().After(deadline) {
			t.Fatalf("no %q in the output:\n%s", want, p.Output())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// CPU returns the CPU time (user + system) the process used, once it has
// ended (Wait, Stop or Kill), else 0.
func (p *Process) CPU() time.Duration {
	select {
	case <-p.done:
	default:
		return 0
	}
	if p.cmd.ProcessState == nil {
		return 0
	}
	return p.cmd.ProcessState.UserTime() + p.cmd.ProcessState.SystemTime()
}

// Pid returns the process id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// PeakRSS returns the peak resident set size (VmHWM) of process pid in bytes,
// or 0 when it cannot be read (the process is gone). Unlike the rusage of a
// child, it does not count memory of the parent shared before exec.
func PeakRSS(pid int) int64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			var kb int64
			if _, err := fmt.Sscanf(strings.TrimSpace(rest), "%d kB", &kb); err != nil {
				return 0
			}
			return kb << 10
		}
	}
	return 0
}

// WatchPeakRSS samples PeakRSS of the process every interval until it ends,
// and returns the last value read (VmHWM only grows).
func (p *Process) WatchPeakRSS(interval time.Duration) int64 {
	var peak int64
	for {
		if v := PeakRSS(p.Pid()); v > peak {
			peak = v
		}
		select {
		case <-p.done:
			return peak
		case <-time.After(interval):
		}
	}
}

// Summary is what a `tributary run` reported in its last "pipeline stopped"
// log line (JSON logs): its CPU time and the bytes it allocated.
type Summary struct {
	CPUSeconds     float64 `json:"cpu_seconds"`
	AllocatedBytes uint64  `json:"allocated_bytes"`
	GCCycles       uint64  `json:"gc_cycles"`
	GCCPUSeconds   float64 `json:"gc_cpu_seconds"` // the runtime's estimate
	EventsWritten  uint64  `json:"events_written"`
}

// RunSummary finds the last "pipeline stopped" line in a run's output.
func RunSummary(output string) (Summary, bool) {
	lines := strings.Split(output, "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		line := lines[i]
		if !strings.Contains(line, `"msg":"pipeline stopped"`) {
			continue
		}
		var s Summary
		if json.Unmarshal([]byte(line), &s) != nil || s.AllocatedBytes == 0 {
			return Summary{}, false
		}
		return s, true
	}
	return Summary{}, false
}
