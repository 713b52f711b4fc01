package main

import (
	"context"
	"fmt"
	"path/filepath"
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
	// FirstPassSeconds to the first sample (every 250 ms) that counted N
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
