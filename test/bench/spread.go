package main

import (
	"context"
	"fmt"
	"math"
	"strings"
	"sync"
	"time"
)

// SpreadResult is how the steady state's drift checks fell over time: the
// restart, its pass over every Organization, then the checks, which should
// come at an even N per resync period rather than in one burst a period
// after the restart (docs/scaling.md, "Spread"). A check is a reconcile
// that ran the placement step: those a restart requeues while the fleet's
// first health check is under way (fleetStarting) check nothing.
type SpreadResult struct {
	// ReadySeconds is from the restart to the operator's readyz passing;
	// FirstPassSeconds to every Organization's first check.
	ReadySeconds     float64 `json:"readySeconds"`
	FirstPassSeconds float64 `json:"firstPassSeconds"`
	// BinSeconds is the width of each of PerSecond's bins, from the
	// restart; PerSecond is the checks per second in each.
	BinSeconds float64   `json:"binSeconds"`
	PerSecond  []float64 `json:"perSecond"`
	// After the restart's pass, over whole bins: the mean of PerSecond, its
	// highest and lowest bin, and its coefficient of variation (standard
	// deviation over mean; 0 is perfectly even).
	MeanAfterPass float64 `json:"meanAfterPass"`
	MaxAfterPass  float64 `json:"maxAfterPass"`
	MinAfterPass  float64 `json:"minAfterPass"`
	CVAfterPass   float64 `json:"cvAfterPass"`
}

// spreadSample is the operator's drift checks so far at a moment.
type spreadSample struct {
	at     time.Duration
	checks int
}

// spreadSampler reads the operator's check count every half second from
// its restart, so that the restart's pass is timed to half a second. (Each
// read is a scrape, which lists every Organization from the cache: four a
// second were a third of the operator's CPU in an N=2000 restart.)
type spreadSampler struct {
	start  time.Time
	ready  time.Duration
	cancel context.CancelFunc
	done   chan struct{}

	mu      sync.Mutex
	samples []spreadSample
}

// sampleSpread starts sampling op, restarted at start.
func sampleSpread(ctx context.Context, op *operator, start time.Time) *spreadSampler {
	ctx, cancel := context.WithCancel(ctx)
	s := &spreadSampler{start: start, ready: time.Since(start), cancel: cancel, done: make(chan struct{})}
	s.samples = append(s.samples, spreadSample{at: s.ready})
	go func() {
		defer close(s.done)
		tick := time.NewTicker(500 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			fams, err := op.scrape(ctx)
			if err != nil {
				continue
			}
			checks := int(operatorMetrics(fams).Steps["placement"].Count)
			s.mu.Lock()
			s.samples = append(s.samples, spreadSample{at: time.Since(start), checks: checks})
			s.mu.Unlock()
		}
	}()
	return s
}

// waitChecks waits until the operator has made n drift checks since its
// restart. The requeues of a restart waiting for the fleet's first health
// check are reconciles too, but check nothing: counting reconciles would
// end the restart's pass before it began.
func (s *spreadSampler) waitChecks(ctx context.Context, op *operator, n int, deadline time.Time) error {
	return waitCount(ctx, op, n, "checks", deadline, func() (int, bool) {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.samples[len(s.samples)-1].checks, true
	})
}

// reached is when, from the restart, a sample first counted n checks;
// zero when none has.
func (s *spreadSampler) reached(n int) time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, x := range s.samples {
		if x.checks >= n {
			return x.at
		}
	}
	return 0
}

// finish stops sampling and bins the checks of n Organizations, a tenth of
// resync to a bin.
func (s *spreadSampler) finish(resync time.Duration, n int) *SpreadResult {
	s.cancel()
	<-s.done
	bin := max(resync/10, time.Second)
	r := &SpreadResult{ReadySeconds: round(s.ready.Seconds(), 2), BinSeconds: bin.Seconds()}
	if len(s.samples) < 2 {
		return r
	}
	passSeconds := math.Inf(1)
	if at := s.reached(n); at > 0 {
		passSeconds = at.Seconds()
		r.FirstPassSeconds = round(passSeconds, 1)
	}
	// The count at each bin's edge, from the last sample at or before it.
	last := s.samples[len(s.samples)-1].at
	countAt := func(t time.Duration) int {
		n := 0
		for _, x := range s.samples {
			if x.at > t {
				break
			}
			n = x.checks
		}
		return n
	}
	var after []float64
	for edge := time.Duration(0); edge+bin <= last; edge += bin {
		rate := float64(countAt(edge+bin)-countAt(edge)) / bin.Seconds()
		// Bins from the first that starts after the pass.
		r.PerSecond = append(r.PerSecond, round(rate, 2))
		if edge.Seconds() >= passSeconds {
			after = append(after, rate)
		}
	}
	if len(after) == 0 {
		return r
	}
	sum, lo, hi := 0.0, math.Inf(1), 0.0
	for _, v := range after {
		sum += v
		lo, hi = min(lo, v), max(hi, v)
	}
	mean := sum / float64(len(after))
	variance := 0.0
	for _, v := range after {
		variance += (v - mean) * (v - mean)
	}
	r.MeanAfterPass, r.MaxAfterPass, r.MinAfterPass = round(mean, 2), round(hi, 2), round(lo, 2)
	if mean > 0 {
		r.CVAfterPass = round(math.Sqrt(variance/float64(len(after)))/mean, 2)
	}
	return r
}

// writeSpread writes the steady state's timeline of reconciles.
func writeSpread(w func(string, ...any), ss *SteadyResult) {
	sp := ss.Spread
	if sp == nil || len(sp.PerSecond) == 0 {
		return
	}
	w("Restart: ready (readyz) in **%.1f s**; every one of the %d Organizations checked once (the placement step run) **%.1f s** after the restart. ", sp.ReadySeconds, ss.N, sp.FirstPassSeconds)
	w("Drift checks per second, from the restart, in bins of %g s (the resync period is %g s; N/period is %.1f/s):\n\n", sp.BinSeconds, ss.ResyncPeriodSeconds, float64(ss.N)/ss.ResyncPeriodSeconds)
	w("| from s | checks/s | |\n|---:|---:|---|\n")
	top := 0.0
	for _, v := range sp.PerSecond {
		top = max(top, v)
	}
	for i, v := range sp.PerSecond {
		bar := 0
		if top > 0 {
			bar = int(math.Round(v / top * 40))
		}
		w("| %g | %.1f | %s |\n", float64(i)*sp.BinSeconds, v, strings.Repeat("#", bar))
	}
	w("\n")
	if sp.MeanAfterPass > 0 {
		w("After the first pass: mean %.2f checks/s, bins from %.2f to %.2f/s, coefficient of variation %.2f.\n\n", sp.MeanAfterPass, sp.MinAfterPass, sp.MaxAfterPass, sp.CVAfterPass)
	}
}

// spreadSummary is the one-line log of a spread.
func spreadSummary(sp *SpreadResult) string {
	return fmt.Sprintf("ready in %.1fs, first pass of checks in %.1fs; then %.2f checks/s (bins %.2f..%.2f, CV %.2f)",
		sp.ReadySeconds, sp.FirstPassSeconds, sp.MeanAfterPass, sp.MinAfterPass, sp.MaxAfterPass, sp.CVAfterPass)
}
