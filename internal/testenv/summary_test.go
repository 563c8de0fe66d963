package testenv

import "testing"

func TestRunSummary(t *testing.T) {
	out := `{"time":"t","level":"INFO","msg":"progress","events_written":5}
{"time":"t","level":"INFO","msg":"pipeline stopped","pipeline":"p","events_written":300000,"cpu_seconds":3.25,"allocated_bytes":123456789}
{"time":"t","level":"INFO","msg":"tributary stopped"}
`
	got, ok := RunSummary(out)
	if want := (Summary{CPUSeconds: 3.25, AllocatedBytes: 123456789, EventsWritten: 300000}); !ok || got != want {
		t.Errorf("RunSummary = %+v, %v; want %+v", got, ok, want)
	}
	if _, ok := RunSummary(`{"msg":"pipeline stopped","events_written":1}`); ok {
		t.Error("a summary without allocated_bytes was accepted")
	}
	if _, ok := RunSummary("no logs"); ok {
		t.Error("output without a summary was accepted")
	}
}
