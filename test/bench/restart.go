package main

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"time"
)

// RestartResult is the steady state's restart, up to the end of its first
// pass: issue 18's Restart target (ready and every organization checked
// within 60 s, no Kubernetes write, no DDL) and its Checks target (a full
// pass at 100 checks a second or more).
type RestartResult struct {
	N int `json:"n"`
	// StorageAccess is the Organizations' spec.storage.access.
	StorageAccess string `json:"storageAccess"`
	// ReadySeconds is from the operator's start to its readyz passing;
	// FirstPassSeconds to the first sample (every 500 ms) that counted N
	// drift checks.
	ReadySeconds     float64 `json:"readySeconds"`
	FirstPassSeconds float64 `json:"firstPassSeconds"`
	// ChecksPerSecond is N over FirstPassSeconds, the start-up included.
	ChecksPerSecond float64 `json:"checksPerSecond"`
	// Checks are the drift checks counted when the pass was seen done.
	Checks int `json:"checks"`
	// APIWrites are the apiserver's write requests from the start to the
	// end of the pass, its own lease heartbeat left out; by kind in
	// APIWritesByKind. OperatorClientWrites are those the operator's own
	// client counted.
	APIWrites            int            `json:"apiWrites"`
	APIWritesByKind      map[string]int `json:"apiWritesByKind,omitempty"`
	OperatorClientWrites int            `json:"operatorClientWrites"`
	DDLStatements        int            `json:"ddlStatements"`
	// SQLCost is the operator's statements in the same seconds, over the
	// pass's checks.
	SQLCost
	// AWS is its S3 and IAM requests, per organization over one pass.
	AWS *AWSCalls `json:"aws,omitempty"`
	// CPUSeconds is the operator's CPU from its start to the pass's end.
	CPUSeconds float64 `json:"cpuSeconds"`
	// Profile is the operator's CPU profile from readyz, relative to the
	// results folder, when the scenario profiles.
	Profile string `json:"profile,omitempty"`
}

// restartProfileSeconds is how long the restart's CPU profile runs: about
// the pass at 40 checks a second, the rest of the seconds (if the pass is
// faster) spent on the resyncs after it.
func restartProfileSeconds(n int) int { return min(max(n/40, 10), 60) }

// profileRestart starts a CPU profile of op from now, for the restart's
// pass; the returned wait gives its path relative to the results folder,
// or "" when it failed.
func profileRestart(ctx context.Context, o *options, sc scenario, op *operator) (wait func() string) {
	path := filepath.Join(o.out, "profiles", sc.Name+"-restart-cpu.pprof")
	done := make(chan string, 1)
	go func() {
		if err := mkdirFor(path); err != nil {
			done <- ""
			return
		}
		if err := op.profile(ctx, fmt.Sprintf("profile?seconds=%d", restartProfileSeconds(sc.N)), path); err != nil {
			logf("%s: restart profile: %v", sc.label(), err)
			done <- ""
			return
		}
		done <- relTo(o.out, path)
	}()
	return func() string { return <-done }
}

// restartFigures reads, when the restart's pass has just been seen done at
// passAt after the start, what it cost: the apiserver's writes since
// apiBefore, the operator's statements since mark, its AWS requests and
// its CPU.
func restartFigures(ctx context.Context, o *options, sc scenario, e *env, op *operator, apiBefore map[string]float64, mark int64, ready, passAt time.Duration) (*RestartResult, error) {
	r := &RestartResult{N: sc.N, StorageAccess: string(o.access), ReadySeconds: round(ready.Seconds(), 2), FirstPassSeconds: round(passAt.Seconds(), 2)}
	if passAt > 0 {
		r.ChecksPerSecond = round(float64(sc.N)/passAt.Seconds(), 1)
	}
	fams, err := op.scrape(ctx)
	if err != nil {
		return nil, err
	}
	m := operatorMetrics(fams)
	r.Checks = int(m.Steps["placement"].Count)
	r.OperatorClientWrites = writeMethods(m.ClientRequests)
	r.AWS = awsCalls(fams, sc.N, float64(r.Checks)/float64(sc.N))
	apiAfter, err := e.scrapeAPIServer(ctx)
	if err != nil {
		return nil, err
	}
	r.APIWritesByKind = writesDelta(apiBefore, apiWrites(apiAfter))
	r.APIWrites, _ = splitHeartbeat(r.APIWritesByKind)
	counts, err := e.log.sqlSince(mark)
	if err != nil {
		return nil, err
	}
	r.SQLCost = sqlCost(counts, appOperator, r.Checks)
	r.DDLStatements = r.SQLByKind["DDL"]
	st, err := op.stats()
	if err != nil {
		return nil, err
	}
	r.CPUSeconds = round(st.CPUSeconds, 2)
	return r, nil
}

// restartTargets are issue 18's Restart and Checks targets, from the run's
// restart.
func restartTargets(rs *RestartResult, status func(measured, met bool) string) []Target {
	restart := Target{Name: "Restart: ready and first pass done, no Kubernetes write, no DDL", Want: "≤ 60 s, 0, 0", Got: "-", Status: status(false, false)}
	checks := Target{Name: "Checks: a full drift pass", Want: "≥ 100 organizations/s", Got: "-", Status: status(false, false)}
	if rs == nil {
		return []Target{restart, checks}
	}
	at := fmt.Sprintf(" (N=%d, storage.access %s)", rs.N, rs.StorageAccess)
	restart.Name += at
	restart.Got = fmt.Sprintf("ready %.1f s, pass done %.1f s; %d writes (operator's client: %d), %d DDL", rs.ReadySeconds, rs.FirstPassSeconds, rs.APIWrites, rs.OperatorClientWrites, rs.DDLStatements)
	restart.Status = status(true, rs.FirstPassSeconds <= 60 && rs.APIWrites == 0 && rs.OperatorClientWrites == 0 && rs.DDLStatements == 0)
	checks.Name += at
	checks.Got = fmt.Sprintf("%.1f/s (%d in %.1f s from the start)", rs.ChecksPerSecond, rs.N, rs.FirstPassSeconds)
	checks.Status = status(true, rs.ChecksPerSecond >= 100)
	return []Target{restart, checks}
}

// writeRestart reports the restart under the steady state's heading.
func writeRestart(w func(string, ...any), rs *RestartResult) {
	if rs == nil {
		return
	}
	w("### Restart: N=%d, storage.access %s\n\n", rs.N, rs.StorageAccess)
	w("From the operator's start to the end of its first pass (every Organization checked once), the machine's 2 cores shared with whatever else ran:\n\n")
	w("| ready s | first pass done s | checks/s | Kubernetes writes (operator's client) | DDL | SQL statements (per org) | AWS requests (per org) | operator CPU s |\n")
	w("|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	aws, awsPer := 0, 0.0
	if rs.AWS != nil {
		aws, awsPer = rs.AWS.Total, rs.AWS.PerOrgPerPass
	}
	w("| %.1f | %.1f | **%.1f** | **%d** (%d) | **%d** | %d (%.3f) | %d (%.2f) | %.1f |\n\n", rs.ReadySeconds, rs.FirstPassSeconds, rs.ChecksPerSecond,
		rs.APIWrites, rs.OperatorClientWrites, rs.DDLStatements, rs.SQLStatements, rs.SQLPerOrgPass, aws, awsPer, rs.CPUSeconds)
	if len(rs.APIWritesByKind) > 0 {
		w("Writes in the pass by kind: %s.\n\n", kinds(rs.APIWritesByKind))
	}
	if rs.Profile != "" {
		w("CPU profile of the operator from readyz: `%s`.\n\n", rs.Profile)
	}
}

// RestartCompare is the same restart timed with two operator binaries,
// taking turns over the same Ready Organizations, so that the machine's
// drift falls on both: each restart is timed to the end of its first pass.
type RestartCompare struct {
	N             int    `json:"n"`
	StorageAccess string `json:"storageAccess"`
	// Managers are the two binaries, the run's --manager first.
	Managers [2]string `json:"managers"`
	// PassSeconds and CPUSeconds are each restart's, per binary, in the
	// order run; the medians are over them.
	PassSeconds       [2][]float64 `json:"passSeconds"`
	CPUSeconds        [2][]float64 `json:"cpuSeconds"`
	MedianPassSeconds [2]float64   `json:"medianPassSeconds"`
	MedianCPUSeconds  [2]float64   `json:"medianCpuSeconds"`
	// ResyncPeriodSeconds is the restarted operators' --resync-period when
	// the next pass is timed too (--restart-compare-resync); then
	// ResyncCPUSeconds is each operator's CPU from the end of its first
	// pass to N more checks, the checks of a process that has seen every
	// Organization once, and MedianResyncCPUMsPerCheck its median per check.
	ResyncPeriodSeconds       float64      `json:"resyncPeriodSeconds,omitempty"`
	ResyncCPUSeconds          [2][]float64 `json:"resyncCpuSeconds,omitempty"`
	MedianResyncCPUMsPerCheck [2]float64   `json:"medianResyncCpuMsPerCheck,omitempty"`
	// Memory is each restarted operator's after a collection, read at the
	// end of its timed passes (the next pass's when it is timed): a
	// process that has checked every Organization and created none, as
	// one at rest in production. MedianMemory holds the medians.
	Memory       [2][]ReadyMemory `json:"memory,omitempty"`
	MedianMemory [2]ReadyMemory   `json:"medianMemory"`
}

// compareRestarts restarts the operator --restart-compare-rounds times
// with each of --manager and --restart-compare, alternating, and times each
// restart's first pass and the operator's CPU until then. The operators it
// starts are stopped before it returns.
func compareRestarts(ctx context.Context, o *options, sc scenario, e *env, dir string) (*RestartCompare, error) {
	rc := &RestartCompare{N: sc.N, StorageAccess: string(o.access), Managers: [2]string{o.manager, o.restartCompare},
		ResyncPeriodSeconds: o.restartCompareResync.Seconds()}
	for turn := range o.restartCompareRounds {
		for i, bin := range rc.Managers {
			// The first round starts with --manager, the next with the
			// other, and so on.
			if turn%2 == 1 {
				i = 1 - i
				bin = rc.Managers[i]
			}
			start := time.Now()
			op, err := startOperator(ctx, bin, e.st, dir, fmt.Sprintf("operator-compare-%d-%d", turn+1, i), operatorFlags{
				maxConcurrentReconciles: sc.Concurrency, databaseMaxConnections: o.dbMaxConns, resyncPeriod: o.restartCompareResync,
			})
			if err != nil {
				return rc, err
			}
			spread := sampleSpread(ctx, op, start)
			err = spread.waitChecks(ctx, op, sc.N, time.Now().Add(o.phaseTimeout))
			pass := spread.reached(sc.N)
			st, serr := op.stats()
			var resync float64
			if err == nil && serr == nil && o.restartCompareResync > 0 {
				if err = spread.waitChecks(ctx, op, 2*sc.N, time.Now().Add(2*o.restartCompareResync+o.phaseTimeout)); err == nil {
					var after procStats
					if after, serr = op.stats(); serr == nil {
						resync = after.CPUSeconds - st.CPUSeconds
					}
				}
			}
			spread.cancel()
			var mem ReadyMemory
			if err == nil && serr == nil {
				mem, serr = op.memoryAfterGC(ctx)
			}
			op.stop()
			if err != nil {
				return rc, fmt.Errorf("restart with %s: %w", bin, err)
			}
			if serr != nil {
				return rc, serr
			}
			rc.PassSeconds[i] = append(rc.PassSeconds[i], round(pass.Seconds(), 2))
			rc.CPUSeconds[i] = append(rc.CPUSeconds[i], round(st.CPUSeconds, 2))
			rc.Memory[i] = append(rc.Memory[i], mem)
			if o.restartCompareResync > 0 {
				rc.ResyncCPUSeconds[i] = append(rc.ResyncCPUSeconds[i], round(resync, 2))
			}
			logf("%s: restart %d with %s: first pass done in %.1fs, operator CPU %.1fs; %.1f CPU s over the next %d checks",
				sc.label(), turn+1, filepath.Base(bin), pass.Seconds(), st.CPUSeconds, resync, sc.N)
		}
	}
	for i := range rc.Managers {
		rc.MedianPassSeconds[i] = round(median(rc.PassSeconds[i]), 2)
		rc.MedianCPUSeconds[i] = round(median(rc.CPUSeconds[i]), 2)
		rc.MedianMemory[i] = medianMemory(rc.Memory[i])
		if len(rc.ResyncCPUSeconds[i]) > 0 {
			rc.MedianResyncCPUMsPerCheck[i] = round(median(rc.ResyncCPUSeconds[i])*1000/float64(sc.N), 2)
		}
	}
	return rc, nil
}

// median is the middle value of xs, or the mean of the two middle ones.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// writeRestartCompare reports the two binaries' restarts side by side.
func writeRestartCompare(w func(string, ...any), rc *RestartCompare) {
	if rc == nil || len(rc.PassSeconds[0]) == 0 {
		return
	}
	w("### Restart, two binaries taking turns: N=%d, storage.access %s\n\n", rc.N, rc.StorageAccess)
	w("Each restart is timed from the operator's start to every Organization checked once; CPU is the operator's until then. Medians over %d restarts each.\n\n", len(rc.PassSeconds[0]))
	w("| binary | first pass s (each) | median s | median checks/s | operator CPU s (each) | median CPU s |\n|---|---|---:|---:|---|---:|\n")
	for i, bin := range rc.Managers {
		rate := 0.0
		if rc.MedianPassSeconds[i] > 0 {
			rate = float64(rc.N) / rc.MedianPassSeconds[i]
		}
		w("| `%s` | %v | %.1f | %.1f | %v | %.1f |\n", filepath.Base(bin), rc.PassSeconds[i], rc.MedianPassSeconds[i], rate, rc.CPUSeconds[i], rc.MedianCPUSeconds[i])
	}
	if rc.MedianPassSeconds[0] > 0 && rc.MedianCPUSeconds[0] > 0 {
		w("\nRatios, second over first: first pass %.2f, CPU %.2f.\n", rc.MedianPassSeconds[1]/rc.MedianPassSeconds[0], rc.MedianCPUSeconds[1]/rc.MedianCPUSeconds[0])
	}
	if c := rc.MedianResyncCPUMsPerCheck; c[0] > 0 {
		w("\nOperator CPU over the %d checks after the first pass (`--resync-period %gs`), a process that has seen every Organization once: `%s` %v s, median %.2f ms a check; `%s` %v s, median %.2f ms a check; ratio %.2f.\n",
			rc.N, rc.ResyncPeriodSeconds, filepath.Base(rc.Managers[0]), rc.ResyncCPUSeconds[0], c[0], filepath.Base(rc.Managers[1]), rc.ResyncCPUSeconds[1], c[1], c[1]/c[0])
	}
	if m := rc.MedianMemory; m[0].RSSMiB > 0 {
		w("\nMemory at the end of those passes, after a collection, medians (RSS / heap in use / heap alloc MiB): `%s` %.2f / %.2f / %.2f; `%s` %.2f / %.2f / %.2f.\n",
			filepath.Base(rc.Managers[0]), m[0].RSSMiB, m[0].HeapInuseMiB, m[0].HeapAllocMiB,
			filepath.Base(rc.Managers[1]), m[1].RSSMiB, m[1].HeapInuseMiB, m[1].HeapAllocMiB)
	}
	w("\n")
}

// medianMemory is the median of each of ms's figures, taken apart.
func medianMemory(ms []ReadyMemory) ReadyMemory {
	pick := func(f func(ReadyMemory) float64) float64 {
		xs := make([]float64, len(ms))
		for i, m := range ms {
			xs[i] = f(m)
		}
		return round(median(xs), 2)
	}
	return ReadyMemory{
		RSSMiB:       pick(func(m ReadyMemory) float64 { return m.RSSMiB }),
		HeapInuseMiB: pick(func(m ReadyMemory) float64 { return m.HeapInuseMiB }),
		HeapAllocMiB: pick(func(m ReadyMemory) float64 { return m.HeapAllocMiB }),
	}
}
