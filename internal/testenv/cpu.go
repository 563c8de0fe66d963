package testenv

import (
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// CPUSample is a reading of the machine's CPU time counters (the first line
// of /proc/stat), for measuring how busy every process together kept the
// cores during a benchmark phase.
type CPUSample struct {
	busy, total uint64
	ok          bool
}

// ReadCPU reads the counters; the sample is empty (and BusyCores reports
// -1) when /proc/stat cannot be read.
func ReadCPU() CPUSample {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return CPUSample{}
	}
	line, _, _ := strings.Cut(string(data), "\n")
	f := strings.Fields(line)
	if len(f) < 8 || f[0] != "cpu" {
		return CPUSample{}
	}
	var s CPUSample
	for i, v := range f[1:] {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return CPUSample{}
		}
		if i >= 8 { // guest and guest_nice are already counted in user and nice
			break
		}
		s.total += n
		if i != 3 && i != 4 { // idle, iowait
			s.busy += n
		}
	}
	s.ok = true
	return s
}

// BusyCores returns how many cores were busy on average between a and b
// (b taken later), counting every process of the machine: 2.0 on a saturated
// two-core machine. It returns -1 when a sample is empty or no time passed.
func BusyCores(a, b CPUSample) float64 {
	if !a.ok || !b.ok || b.total <= a.total {
		return -1
	}
	return float64(runtime.NumCPU()) * float64(b.busy-a.busy) / float64(b.total-a.total)
}

// ProcessCPU returns the CPU time (user + system) process pid has used so
// far, from /proc/PID/stat, or -1 when it cannot be read. Benchmarks take
// the difference of two readings as a server's share of a phase.
func ProcessCPU(pid int) time.Duration {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return -1
	}
	// The command name (field 2) may hold spaces; the fields after its
	// closing parenthesis start with field 3 (state).
	s := string(data)
	end := strings.LastIndexByte(s, ')')
	if end < 0 {
		return -1
	}
	f := strings.Fields(s[end+1:])
	if len(f) < 13 {
		return -1
	}
	utime, err1 := strconv.ParseUint(f[11], 10, 64) // field 14
	stime, err2 := strconv.ParseUint(f[12], 10, 64) // field 15
	if err1 != nil || err2 != nil {
		return -1
	}
	// /proc reports clock ticks of USER_HZ, which is 100 on Linux.
	return time.Duration(utime+stime) * (time.Second / 100)
}
