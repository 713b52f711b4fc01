package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

// writePlots draws the apply-to-Ready latency CDF of each N (the first
// round's, for a scenario run several), the throughput against
// concurrency (pooled over the rounds) and, when the fleet scenario ran,
// its latency CDF on one cluster and on the fleet, as PNGs next to
// results.md.
func writePlots(dir string, r *Results) error {
	if err := latencyPlot(filepath.Join(dir, "latency-cdf.png"), r); err != nil {
		return err
	}
	if err := throughputPlot(filepath.Join(dir, "throughput-concurrency.png"), r); err != nil {
		return err
	}
	if r.Fleet == nil {
		return nil
	}
	return fleetPlot(filepath.Join(dir, "fleet-latency-cdf.png"), r.Fleet)
}

// fleetPlot draws the fleet scenario's apply-to-Ready latency CDF, on one
// cluster and on the fleet.
func fleetPlot(path string, f *FleetResult) error {
	p := plot.New()
	p.Title.Text = fmt.Sprintf("Apply-to-Ready latency, N=%d applied at once, concurrency %d: one cluster and %d", f.N, f.Concurrency, fleetClusters)
	p.X.Label.Text = "seconds from apply"
	p.Y.Label.Text = "fraction of organizations"
	p.Y.Min, p.Y.Max = 0, 1
	p.Add(plotter.NewGrid())
	p.Legend.Top = false
	p.Legend.Left = false
	for i, side := range []struct {
		name string
		s    FleetSide
	}{{"one cluster", f.Single}, {fmt.Sprintf("%d clusters", fleetClusters), f.Fleet}} {
		if len(side.s.Create.LatenciesMs) == 0 {
			continue
		}
		l, err := plotter.NewLine(cdf(side.s.Create.LatenciesMs, side.s.Create.N))
		if err != nil {
			return err
		}
		l.Color = plotutil.Color(i)
		l.Width = vg.Points(1.5)
		p.Add(l)
		p.Legend.Add(side.name, l)
	}
	return save(p, path)
}

var dashed = []vg.Length{vg.Points(6), vg.Points(3)}

func latencyPlot(path string, r *Results) error {
	p := plot.New()
	p.Title.Text = fmt.Sprintf("Apply-to-Ready latency, N applied at once, concurrency %d", r.Settings.Concurrency)
	if r.multiRound() {
		p.Title.Text += " (round 1)"
	}
	p.X.Label.Text = "seconds from apply (raw: from the loop's start)"
	p.Y.Label.Text = "fraction of organizations"
	p.Y.Min, p.Y.Max = 0, 1
	p.Add(plotter.NewGrid())
	p.Legend.Top = false
	p.Legend.Left = false
	i := 0
	for _, s := range r.Scenarios {
		if s.Concurrency != r.Settings.Concurrency || !slices.Contains(r.Settings.Ns, s.N) {
			continue
		}
		for _, side := range []struct {
			name string
			p    Phase
			dash bool
		}{{"orgforge", s.Orgforge.Create, false}, {"raw", s.Raw.Create, true}} {
			if len(side.p.LatenciesMs) == 0 {
				continue
			}
			l, err := plotter.NewLine(cdf(side.p.LatenciesMs, side.p.N))
			if err != nil {
				return err
			}
			l.Color = plotutil.Color(i)
			l.Width = vg.Points(1.5)
			if side.dash {
				l.Dashes = dashed
			}
			p.Add(l)
			p.Legend.Add(fmt.Sprintf("%s N=%d", side.name, s.N), l)
		}
		i++
	}
	return save(p, path)
}

// cdf is the empirical distribution of the latencies, over n organizations
// (the ones that never completed keep it below 1).
func cdf(latMs []int64, n int) plotter.XYs {
	sorted := slices.Clone(latMs)
	slices.Sort(sorted)
	xys := make(plotter.XYs, 0, 2*len(sorted)+1)
	xys = append(xys, plotter.XY{X: 0, Y: 0})
	// A step at each latency: the fraction jumps there, it does not slope.
	for i, ms := range sorted {
		x := float64(ms) / 1000
		xys = append(xys,
			plotter.XY{X: x, Y: float64(i) / float64(max(n, 1))},
			plotter.XY{X: x, Y: float64(i+1) / float64(max(n, 1))})
	}
	return xys
}

func throughputPlot(path string, r *Results) error {
	var sweep []ScenarioResult
	for _, s := range r.Scenarios {
		if s.Sweep {
			sweep = append(sweep, s)
		}
	}
	slices.SortFunc(sweep, func(a, b ScenarioResult) int { return a.Concurrency - b.Concurrency })
	p := plot.New()
	p.Title.Text = fmt.Sprintf("Throughput against concurrency, N=%d", r.Settings.SweepN)
	p.X.Label.Text = "--max-concurrent-reconciles (raw: workers)"
	p.Y.Label.Text = "organizations per second"
	p.Y.Min = 0
	p.Add(plotter.NewGrid())
	p.Legend.Top = true
	p.Legend.Left = true
	series := []struct {
		name  string
		color int
		dash  bool
		get   func(ScenarioResult) (float64, bool)
	}{
		{"orgforge create", 0, false, func(s ScenarioResult) (float64, bool) { return s.Pooled.Create.Orgforge.OrgsPerSecond, true }},
		{"raw create", 0, true, func(s ScenarioResult) (float64, bool) { return s.Pooled.Create.Raw.OrgsPerSecond, true }},
		{"orgforge delete", 1, false, func(s ScenarioResult) (float64, bool) {
			if s.Pooled.Delete == nil {
				return 0, false
			}
			return s.Pooled.Delete.Orgforge.OrgsPerSecond, true
		}},
		{"raw delete", 1, true, func(s ScenarioResult) (float64, bool) {
			if s.Pooled.Delete == nil {
				return 0, false
			}
			return s.Pooled.Delete.Raw.OrgsPerSecond, true
		}},
	}
	for _, se := range series {
		var xys plotter.XYs
		for _, s := range sweep {
			if v, ok := se.get(s); ok && v > 0 {
				xys = append(xys, plotter.XY{X: float64(s.Concurrency), Y: v})
			}
		}
		if len(xys) == 0 {
			continue
		}
		l, pts, err := plotter.NewLinePoints(xys)
		if err != nil {
			return err
		}
		l.Color, pts.Color = plotutil.Color(se.color), plotutil.Color(se.color)
		l.Width = vg.Points(1.5)
		if se.dash {
			l.Dashes = dashed
			pts.Shape = plotutil.Shape(1)
		}
		p.Add(l, pts)
		p.Legend.Add(se.name, l, pts)
	}
	var ticks []plot.Tick
	for _, s := range sweep {
		ticks = append(ticks, plot.Tick{Value: float64(s.Concurrency), Label: fmt.Sprint(s.Concurrency)})
	}
	if len(ticks) > 0 {
		p.X.Tick.Marker = plot.ConstantTicks(ticks)
		p.X.Min, p.X.Max = 0, float64(sweep[len(sweep)-1].Concurrency)+1
	}
	return save(p, path)
}

func save(p *plot.Plot, path string) error {
	return p.Save(8*vg.Inch, 5*vg.Inch, path)
}

func mkdirFor(path string) error {
	return os.MkdirAll(filepath.Dir(path), 0o755)
}

// relTo is path relative to dir, for links in the results.
func relTo(dir, path string) string {
	if rel, err := filepath.Rel(dir, path); err == nil {
		return rel
	}
	return path
}
