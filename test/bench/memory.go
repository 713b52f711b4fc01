package main

import (
	"fmt"
	"slices"
)

// memoryPoint is one scenario's memory at rest and its N.
type memoryPoint struct {
	n int
	m *ReadyMemory
}

// readyMemoryPoints are the scenarios' memories at rest, in their order.
func readyMemoryPoints(scenarios []ScenarioResult) []memoryPoint {
	var points []memoryPoint
	for _, s := range scenarios {
		if d := s.Orgforge.Operator; d != nil && d.ReadyMemory != nil {
			points = append(points, memoryPoint{s.N, d.ReadyMemory})
		}
	}
	return points
}

// writeReadyMemory writes the operator's memory at rest at each N, after a
// garbage collection (ReadyMemory), and the cost per organization as the
// slope from the N before.
func writeReadyMemory(w func(string, ...any), scenarios []ScenarioResult) {
	points := readyMemoryPoints(scenarios)
	if len(points) == 0 {
		return
	}
	w("### Memory at rest: all N Ready, after a garbage collection\n\n")
	w("RSS settled is the RSS once the runtime has returned the pages the collection freed (at most 90 s later).\n\n")
	w("| N | RSS MiB | RSS settled MiB | heap in use MiB | heap alloc MiB | KiB per organization from the N before: RSS / RSS settled / heap in use / heap alloc |\n|---:|---:|---:|---:|---:|---|\n")
	for i, p := range points {
		slope := "-"
		if i > 0 && p.n != points[i-1].n {
			q := points[i-1]
			per := func(a, b float64) float64 { return round((a-b)*1024/float64(p.n-q.n), 1) }
			slope = fmt.Sprintf("%.1f / %.1f / %.1f / %.1f", per(p.m.RSSMiB, q.m.RSSMiB), per(p.m.SettledRSSMiB, q.m.SettledRSSMiB),
				per(p.m.HeapInuseMiB, q.m.HeapInuseMiB), per(p.m.HeapAllocMiB, q.m.HeapAllocMiB))
		}
		w("| %d | %.2f | %.2f | %.2f | %.2f | %s |\n", p.n, p.m.RSSMiB, p.m.SettledRSSMiB, p.m.HeapInuseMiB, p.m.HeapAllocMiB, slope)
	}
	w("\n")
}

// memoryTarget is issue 18's memory target: 10 KiB or less per Ready
// organization as the slope of the RSS between the two largest N of the
// run, with the heap's slopes beside it.
func memoryTarget(scenarios []ScenarioResult, status func(measured, met bool) string) Target {
	t := Target{Name: "Operator memory per Ready organization, slope of RSS between two N", Want: "≤ 10 KiB", Got: "-", Status: status(false, false)}
	points := readyMemoryPoints(scenarios)
	slices.SortStableFunc(points, func(a, b memoryPoint) int { return a.n - b.n })
	points = slices.CompactFunc(points, func(a, b memoryPoint) bool { return a.n == b.n })
	if len(points) < 2 {
		return t
	}
	a, b := points[len(points)-2], points[len(points)-1]
	per := func(x, y float64) float64 { return round((y-x)*1024/float64(b.n-a.n), 1) }
	rss := per(a.m.RSSMiB, b.m.RSSMiB)
	t.Name += fmt.Sprintf(" (N=%d to %d, all Ready after creating them)", a.n, b.n)
	t.Got = fmt.Sprintf("%.1f KiB (heap in use %.1f, heap alloc %.1f)", rss, per(a.m.HeapInuseMiB, b.m.HeapInuseMiB), per(a.m.HeapAllocMiB, b.m.HeapAllocMiB))
	t.Status = status(true, rss <= 10)
	return t
}
