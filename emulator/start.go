package emulator

import "time"

// StartBefore returns a simulated start at which the history cfg describes
// (its Events preloaded events) ends before end, so that a history
// generated "up to now" is over before the present: it simulates that
// history once from DefaultStart to measure how long it spans, and goes
// back that far from end, plus a margin (a week and 2 % of the span: months
// of different lengths move the last event by a few days), to midnight UTC.
// The result depends only on cfg's seed, flavor, policies and events and on
// end; the history itself depends only on the configuration and the start
// (pass the start again, --emulator.start, to get the same book any day).
func StartBefore(cfg Config, end time.Time) time.Time {
	cfg.Start = DefaultStart
	cfg.applyDefaults()
	sm, _ := newSim(cfg)
	last := DefaultStart.UnixMilli()
	for n := 0; n < cfg.Events; {
		recs, _ := sm.generate(min(cfg.Events-n, 20000), n, 0)
		if len(recs) == 0 {
			break
		}
		last = max(last, recs[len(recs)-1].ms)
		n += len(recs)
	}
	span := time.UnixMilli(last).Sub(DefaultStart)
	margin := 7*24*time.Hour + span/50
	return end.Add(-span - margin).UTC().Truncate(24 * time.Hour)
}

// TimeRange returns the times of the first and the last event served so
// far (zero times when there is none).
func (s *Server) TimeRange() (first, last time.Time) {
	recs, _ := s.st.snapshot()
	if len(recs) == 0 {
		return time.Time{}, time.Time{}
	}
	return time.UnixMilli(recs[0].ms).UTC(), time.UnixMilli(recs[len(recs)-1].ms).UTC()
}
