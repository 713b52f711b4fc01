package main

import "fmt"

// writeReadyMemory writes the operator's memory at rest at each N, after a
// garbage collection (ReadyMemory), and the cost per organization as the
// slope from the N before.
func writeReadyMemory(w func(string, ...any), scenarios []ScenarioResult) {
	type point struct {
		n int
		m *ReadyMemory
	}
	var points []point
	for _, s := range scenarios {
		if d := s.Orgforge.Operator; d != nil && d.ReadyMemory != nil {
			points = append(points, point{s.N, d.ReadyMemory})
		}
	}
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
