package e2e

import (
	"io"
	"net"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/tributary-cdc/tributary/emulator"
	"github.com/tributary-cdc/tributary/internal/testenv"
)

// stallProxy forwards TCP connections to target until stalled, after which
// it stops moving bytes (the connections stay open): a ClickHouse that hangs.
// While refusing, it closes every new connection at once: a server that is
// down.
type stallProxy struct {
	ln       net.Listener
	target   string
	stalled  atomic.Bool
	refusing atomic.Bool
	mu       sync.Mutex
	conns    []net.Conn
}

func newStallProxy(t *testing.T, target string) *stallProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &stallProxy{ln: ln, target: target}
	t.Cleanup(p.close)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			if p.refusing.Load() {
				c.Close()
				continue
			}
			u, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, u)
			p.mu.Unlock()
			go p.pipe(u, c)
			go p.pipe(c, u)
		}
	}()
	return p
}

func (p *stallProxy) pipe(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		for p.stalled.Load() {
			time.Sleep(10 * time.Millisecond)
		}
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			if err != io.EOF {
				dst.Close()
			}
			return
		}
	}
}

func (p *stallProxy) close() {
	p.stalled.Store(false)
	p.ln.Close()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
}

// TestSecondSignalExitsAtOnce: while the first SIGTERM's drain waits on a
// ClickHouse that stopped answering, a second signal ends the process at once
// with exit code 1; the next start resumes from the last checkpoint.
func TestSecondSignalExitsAtOnce(t *testing.T) {
	testenv.ForEachClickHouse(t, testSecondSignalExitsAtOnce)
}

func testSecondSignalExitsAtOnce(t *testing.T, ch *testenv.ClickHouseServer) {
	emu, err := emulator.New(emulator.Config{Flavor: emulator.FlavorSuite, Seed: 9, Events: 50000, Policies: 1500})
	if err != nil {
		t.Fatal(err)
	}
	defer emu.Close()
	srv := httptest.NewServer(emu.Handler())
	defer srv.Close()
	proxy := newStallProxy(t, ch.Addr)
	args := apiArgs(srv.URL, emu.Tenant(), ch.FlagsVia(proxy.ln.Addr().String(), ch.Database), "--pipeline.shutdown-timeout", "30s")
	p := testenv.Start(t, args...)
	testenv.WaitEvents(t, ch.Conn, ch.Database, 5000, time.Minute, p.Alive)
	proxy.stalled.Store(true)
	time.Sleep(300 * time.Millisecond) // let a write reach the stalled proxy
	if err := syscall.Kill(p.Pid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	if done, _ := p.Exited(); done {
		t.Fatalf("exited on the first signal while ClickHouse hung: the drain did not wait:\n%s", p.Output())
	}
	begin := time.Now()
	if err := syscall.Kill(p.Pid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	code := p.Wait(t, 5*time.Second)
	if took := time.Since(begin); code != 1 || took > 2*time.Second {
		t.Errorf("second signal: exit code %d after %s, want 1 within 2s", code, took)
	}
	proxy.close()

	// Nothing is lost: a new run finishes the history.
	q := testenv.Start(t, apiArgs(srv.URL, emu.Tenant(), ch.Flags())...)
	testenv.WaitEvents(t, ch.Conn, ch.Database, uint64(emu.Len()), 2*time.Minute, q.Alive)
	if code, _ := q.Stop(t); code != 0 {
		t.Errorf("clean stop: exit code %d:\n%s", code, q.Output())
	}
}
