package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/orgforge/orgforge/internal/aurora"
)

// Results is everything one run measured; results.json is it as JSON.
type Results struct {
	Started      time.Time        `json:"started"`
	Finished     time.Time        `json:"finished"`
	TotalSeconds float64          `json:"totalSeconds"`
	Machine      Machine          `json:"machine"`
	Settings     Settings         `json:"settings"`
	Scenarios    []ScenarioResult `json:"scenarios"`
	// Fleet is the fleet scenario (fleet.go), when it ran.
	Fleet *FleetResult `json:"fleet,omitempty"`
	// Usage is the usage scenario (usage.go), when it ran.
	Usage   *UsageResult `json:"usage,omitempty"`
	Targets []Target     `json:"targets"`
}

// Machine is where the run happened.
type Machine struct {
	Cores             int     `json:"cores"`
	MemoryGiB         float64 `json:"memoryGiB"`
	CPUModel          string  `json:"cpuModel"`
	Kernel            string  `json:"kernel"`
	GoVersion         string  `json:"goVersion"`
	PostgresVersion   string  `json:"postgresVersion"`
	KubernetesVersion string  `json:"kubernetesVersion"`
	OperatorVersion   string  `json:"operatorVersion"`
	GitCommit         string  `json:"gitCommit"`
}

// Settings are the run's choices.
type Settings struct {
	Ns                     []int   `json:"ns"`
	Concurrency            int     `json:"concurrency"`
	Sweep                  []int   `json:"sweep"`
	SweepN                 int     `json:"sweepN"`
	SweepDelete            bool    `json:"sweepDelete"`
	SteadyN                int     `json:"steadyN"`
	SteadyResyncSeconds    float64 `json:"steadyResyncSeconds"`
	DatabaseMaxConnections int     `json:"databaseMaxConnections"`
	Appliers               int     `json:"appliers"`
	PostgresFsync          bool    `json:"postgresFsync"`
	// PostgresData says where the servers kept their data.
	PostgresData string `json:"postgresData"`
	// Rounds is how many the headline scenario (the largest N at
	// Concurrency) ran; OperatorFirst starts round 1 with orgforge.
	Rounds        int  `json:"rounds"`
	OperatorFirst bool `json:"operatorFirst"`
	// FleetN is the fleet scenario's N; 0 when it did not run.
	FleetN int `json:"fleetN,omitempty"`
	// StorageAccess is every Organization's spec.storage.access.
	StorageAccess string `json:"storageAccess"`
}

// ScenarioResult is one scenario's rounds, its two sides and their ratios.
type ScenarioResult struct {
	Name        string `json:"name"`
	N           int    `json:"n"`
	Concurrency int    `json:"concurrency"`
	Sweep       bool   `json:"sweep"`
	// CreateRatio and DeleteRatio are orgforge's orgs/s over raw's, both
	// pooled over the rounds (Pooled).
	CreateRatio float64 `json:"createRatio"`
	DeleteRatio float64 `json:"deleteRatio,omitempty"`
	Pooled      Pooled  `json:"pooled"`
	// Rounds are every side-by-side pair the scenario ran, in order.
	Rounds []Round `json:"rounds"`
	// Raw and Orgforge are the first round's sides with all their detail:
	// the operator's metrics and profiles, steps and CPU by process.
	Raw      SideResult `json:"raw"`
	Orgforge SideResult `json:"orgforge"`
	// Floor is the first round's floor side (floor.go), when the scenario
	// ran one.
	Floor  *SideResult   `json:"floor,omitempty"`
	Steady *SteadyResult `json:"steadyState,omitempty"`
	Errors []string      `json:"errors,omitempty"`
	// Warnings are raw organizations that failed: findings about the
	// services, which the run reports and goes on.
	Warnings []string `json:"warnings,omitempty"`
}

// Round is one pair of a scenario: both sides, each on its own fresh stack,
// one after the other.
type Round struct {
	// Round counts from 1.
	Round int `json:"round"`
	// First is the side that ran first: raw or orgforge.
	First       string  `json:"first"`
	CreateRatio float64 `json:"createRatio"`
	DeleteRatio float64 `json:"deleteRatio,omitempty"`
	// Raw and Orgforge are the round's sides; the operator's detail is in
	// ScenarioResult.Orgforge only.
	Raw      SideResult `json:"raw"`
	Orgforge SideResult `json:"orgforge"`
	// Floor, creation only, ran between the two when the scenario has it;
	// FloorRatio is its orgs/s over raw's.
	Floor      *SideResult `json:"floor,omitempty"`
	FloorRatio float64     `json:"floorRatio,omitempty"`
}

// Pooled is a scenario's throughput over all its rounds.
type Pooled struct {
	Create PooledPair  `json:"create"`
	Delete *PooledPair `json:"delete,omitempty"`
	// Floor is the floor side's creations, over the rounds that ran all
	// three sides.
	Floor *PooledFloor `json:"floor,omitempty"`
}

// PooledFloor sets the floor side beside the other two, each pooled over
// the same rounds.
type PooledFloor struct {
	Rounds   int        `json:"rounds"`
	Raw      PooledSide `json:"raw"`
	Floor    PooledSide `json:"floor"`
	Orgforge PooledSide `json:"orgforge"`
	// FloorRatio is the floor's orgs/s over raw's: what an operator making
	// orgforge's Kubernetes writes could reach here. OrgforgeToFloor is
	// orgforge's over the floor's: what the controller costs beyond them.
	FloorRatio      float64 `json:"floorRatio"`
	OrgforgeToFloor float64 `json:"orgforgeToFloor"`
	// OrgforgeRatio is orgforge's orgs/s over raw's in these rounds.
	OrgforgeRatio float64 `json:"orgforgeRatio"`
}

// PooledPair is one phase, creation or deletion, pooled over the rounds in
// which both sides measured it.
type PooledPair struct {
	Rounds   int        `json:"rounds"`
	Raw      PooledSide `json:"raw"`
	Orgforge PooledSide `json:"orgforge"`
	// Ratio is orgforge's pooled orgs/s over raw's.
	Ratio float64 `json:"ratio"`
}

// PooledSide is one side's organizations completed and seconds, summed
// over the rounds, and their quotient.
type PooledSide struct {
	Completed     int     `json:"completed"`
	Seconds       float64 `json:"seconds"`
	OrgsPerSecond float64 `json:"orgsPerSecond"`
}

// pool sums each side's organizations and seconds over the rounds, so
// that a long round weighs more than a short one (a mean of the rounds'
// ratios would not), and divides. A phase is pooled over the rounds in
// which both sides measured it, so that the two sides cover the same
// rounds.
func pool(rounds []Round) Pooled {
	pair := func(get func(SideResult) *Phase) *PooledPair {
		var p PooledPair
		var raws, ops []*Phase
		for _, r := range rounds {
			raw, op := get(r.Raw), get(r.Orgforge)
			if raw == nil || op == nil || raw.N == 0 || op.N == 0 {
				continue
			}
			raws, ops = append(raws, raw), append(ops, op)
		}
		if len(raws) == 0 {
			return nil
		}
		var rawRate, opRate float64
		p.Raw, rawRate = poolSide(raws)
		p.Orgforge, opRate = poolSide(ops)
		p.Rounds, p.Ratio = len(raws), ratio(opRate, rawRate)
		return &p
	}
	var out Pooled
	if c := pair(func(s SideResult) *Phase { return &s.Create }); c != nil {
		out.Create = *c
	}
	out.Delete = pair(func(s SideResult) *Phase { return s.Delete })
	var raws, floors, ops []*Phase
	for _, r := range rounds {
		if r.Floor == nil || r.Floor.Create.N == 0 || r.Raw.Create.N == 0 || r.Orgforge.Create.N == 0 {
			continue
		}
		raws, floors, ops = append(raws, &r.Raw.Create), append(floors, &r.Floor.Create), append(ops, &r.Orgforge.Create)
	}
	if len(floors) > 0 {
		f := &PooledFloor{Rounds: len(floors)}
		var rawRate, floorRate, opRate float64
		f.Raw, rawRate = poolSide(raws)
		f.Floor, floorRate = poolSide(floors)
		f.Orgforge, opRate = poolSide(ops)
		f.FloorRatio, f.OrgforgeToFloor, f.OrgforgeRatio = ratio(floorRate, rawRate), ratio(opRate, floorRate), ratio(opRate, rawRate)
		out.Floor = f
	}
	return out
}

// poolSide sums one side's organizations and seconds over its phases, and
// returns them with their quotient rounded, and the quotient unrounded for
// the ratios.
func poolSide(phases []*Phase) (PooledSide, float64) {
	var s PooledSide
	for _, p := range phases {
		s.Completed += p.Completed
		s.Seconds += p.Seconds
	}
	var rate float64
	if s.Seconds > 0 {
		rate = float64(s.Completed) / s.Seconds
	}
	s.Seconds, s.OrgsPerSecond = round(s.Seconds, 3), round(rate, 2)
	return s, rate
}

// roundsNote says how a scenario's figures were pooled.
func roundsNote(k int) string {
	if k == 1 {
		return "one round"
	}
	return fmt.Sprintf("pooled over %d rounds, alternating order", k)
}

// SideResult is one side of a scenario.
type SideResult struct {
	Create Phase  `json:"create"`
	Delete *Phase `json:"delete,omitempty"`
	// Leftovers are what remained outside Kubernetes after the deletion.
	Leftovers *Leftovers `json:"leftovers,omitempty"`
	// Operator is set on the orgforge side.
	Operator *OperatorDetail `json:"operator,omitempty"`
	// Shape is one Ready Organization's objects, on the orgforge and the
	// floor sides of a scenario with a floor.
	Shape *ObjectShape `json:"shape,omitempty"`
}

// Phase is one timed batch: N creations or N deletions.
type Phase struct {
	N         int `json:"n"`
	Completed int `json:"completed"`
	// Seconds runs from the first apply (or the loop's start) to the last
	// Ready (or gone, or done).
	Seconds       float64 `json:"seconds"`
	OrgsPerSecond float64 `json:"orgsPerSecond"`
	// StartSpreadSeconds is the first start to the last: how long
	// applying (or deleting) all N Organizations took the client.
	StartSpreadSeconds float64 `json:"startSpreadSeconds"`
	// Latency of each organization: apply to Ready (or delete to gone) for
	// orgforge; the loop's start to the organization's end for raw, all
	// being queued at once.
	P50Seconds float64 `json:"p50Seconds"`
	P95Seconds float64 `json:"p95Seconds"`
	P99Seconds float64 `json:"p99Seconds"`
	MaxSeconds float64 `json:"maxSeconds"`
	// PeakConnections is the most PostgreSQL sessions of the side seen at
	// once in pg_stat_activity during the phase.
	PeakConnections int `json:"peakConnections"`
	// Sessions is how the side's PostgreSQL sessions were spent, on
	// average over the phase.
	Sessions      *Sessions `json:"sessions,omitempty"`
	DDLStatements int       `json:"ddlStatements"`
	DDLPerOrg     float64   `json:"ddlPerOrg"`
	// CPUSeconds is the CPU each process of the stack used in the phase:
	// orgforge, postgres (with its backends), kube-apiserver, etcd,
	// versitygw, and bench (the raw loop runs in the bench itself).
	CPUSeconds map[string]float64 `json:"cpuSeconds,omitempty"`
	// Steps is the raw loop's time per step.
	Steps map[string]HistogramSummary `json:"steps,omitempty"`
	// APIWritesPerOrg counts the floor side's Kubernetes writes per
	// organization, the apply's creates left out.
	APIWritesPerOrg float64  `json:"apiWritesPerOrg,omitempty"`
	LatenciesMs     []int64  `json:"latenciesMs"`
	Errors          []string `json:"errors,omitempty"`
}

// Sessions are a side's PostgreSQL sessions over a phase, from
// pg_stat_activity polled every 25 ms: the mean number active (the server
// running a statement, or waiting for CPU, a lock or the disk to do so) and
// idle (open, the server waiting for the client's next statement).
type Sessions struct {
	Active float64 `json:"active"`
	Idle   float64 `json:"idle"`
	// AdminActive is the part of Active in the admin database: the admin
	// pool's connections at work, of the MaxConnections/2 it has.
	AdminActive float64 `json:"adminActive"`
	Samples     int     `json:"samples"`
}

// OperatorDetail is what the operator process and its metrics showed.
type OperatorDetail struct {
	Args []string `json:"args"`
	// CreateProcess is the operator that did the creations, read when all
	// were Ready: peak RSS since its start and CPU seconds including its
	// start-up.
	CreateProcess procStats `json:"createProcess"`
	// ReadyMemory is its memory then, after a garbage collection.
	ReadyMemory *ReadyMemory `json:"readyMemory,omitempty"`
	// DeleteCPUSeconds is the CPU the deletions cost.
	DeleteCPUSeconds float64 `json:"deleteCpuSeconds,omitempty"`
	// PeakRSSMiB is the highest peak of every operator process the
	// scenario ran.
	PeakRSSMiB    float64          `json:"peakRssMiB"`
	CreateMetrics OperatorMetrics  `json:"createMetrics"`
	DeleteMetrics *OperatorMetrics `json:"deleteMetrics,omitempty"`
	// CreateAPIWrites are the apiserver's write requests during the
	// creations, by verb and resource (the bench's own creates included);
	// CreateAPIWritesPerOrg counts the operator's alone.
	CreateAPIWrites       map[string]int `json:"createApiWrites"`
	CreateAPIWritesPerOrg float64        `json:"createApiWritesPerOrg"`
	// CreateAPILatency is the apiserver's time per write request in the
	// creations (apiserver_request_duration_seconds), and etcd's per
	// create, update and delete (etcd_request_duration_seconds).
	CreateAPILatency      map[string]HistogramSummary `json:"createApiLatency,omitempty"`
	DeleteAPIWrites       map[string]int              `json:"deleteApiWrites,omitempty"`
	DeleteAPIWritesPerOrg float64                     `json:"deleteApiWritesPerOrg,omitempty"`
	Profiles              []string                    `json:"profiles,omitempty"`
}

// SteadyResult is the steady-state window: N Ready Organizations, the
// operator restarted with a short resync period, nothing changing.
type SteadyResult struct {
	N                   int     `json:"n"`
	ResyncPeriodSeconds float64 `json:"resyncPeriodSeconds"`
	WindowSeconds       float64 `json:"windowSeconds"`
	// InitialPassSeconds is how long the restarted operator took to
	// check every Organization once (spreadSampler.waitChecks).
	InitialPassSeconds float64 `json:"initialPassSeconds"`
	// Reconciles counts them in the window, the restart's pass and the
	// resyncs, with the requeues of the restart's first moments that
	// wait for the fleet's first check and do nothing else; Checks counts
	// the drift checks (reconciles that ran the placement step), and
	// Passes is Checks/N: the per-pass figures divide by Checks.
	Reconciles int     `json:"reconciles"`
	Checks     int     `json:"checks"`
	Passes     float64 `json:"passes"`
	// APIWrites are the apiserver's write requests in the window, not
	// counting its own lease heartbeat (HeartbeatWrites).
	APIWrites       int            `json:"apiWrites"`
	HeartbeatWrites int            `json:"heartbeatWrites"`
	APIWritesByKind map[string]int `json:"apiWritesByKind"`
	// OperatorClientWrites are the operator's own write requests by its
	// client-go metrics.
	OperatorClientWrites int             `json:"operatorClientWrites"`
	DDLStatements        int             `json:"ddlStatements"`
	PeakConnections      int             `json:"peakConnections"`
	Process              procStats       `json:"process"`
	Metrics              OperatorMetrics `json:"metrics"`
	// SQLCost is every statement of the operator's in the window (sql.go).
	SQLCost
	// Spread is the window's drift checks over time (spread.go).
	Spread *SpreadResult `json:"spread,omitempty"`
	// AWS is the window's S3 and IAM requests (aws.go).
	AWS *AWSCalls `json:"aws,omitempty"`
	// Restart is the window's start, to the end of its first pass
	// (restart.go).
	Restart *RestartResult `json:"restart,omitempty"`
	// Compare is the restarts of two binaries in turns, when asked
	// (--restart-compare).
	Compare *RestartCompare `json:"compare,omitempty"`
}

// Leftovers are the external objects left after a deletion.
type Leftovers struct {
	Databases int `json:"databases"`
	Roles     int `json:"roles"`
	IAMUsers  int `json:"iamUsers"`
	Objects   int `json:"objects"`
}

func (l *Leftovers) total() int { return l.Databases + l.Roles + l.IAMUsers + l.Objects }

// Target is one of the targets and whether this run met it.
type Target struct {
	Name   string `json:"name"`
	Want   string `json:"want"`
	Got    string `json:"got"`
	Status string `json:"status"` // met, missed, not measured
}

// newPhase computes a phase from each organization's start and end; the
// ones without an end did not complete.
func newPhase(n int, starts, ends map[string]time.Time) Phase {
	p := Phase{N: n}
	var first, last, lastStart time.Time
	var lat []time.Duration
	for name, s := range starts {
		if first.IsZero() || s.Before(first) {
			first = s
		}
		if s.After(lastStart) {
			lastStart = s
		}
		e, ok := ends[name]
		if !ok {
			continue
		}
		if e.After(last) {
			last = e
		}
		lat = append(lat, e.Sub(s))
	}
	p.Completed = len(lat)
	if p.Completed == 0 {
		return p
	}
	p.StartSpreadSeconds = round(lastStart.Sub(first).Seconds(), 3)
	span := last.Sub(first)
	p.Seconds = round(span.Seconds(), 3)
	if span > 0 {
		p.OrgsPerSecond = round(float64(p.Completed)/span.Seconds(), 2)
	}
	slices.Sort(lat)
	p.P50Seconds = round(percentile(lat, 50).Seconds(), 3)
	p.P95Seconds = round(percentile(lat, 95).Seconds(), 3)
	p.P99Seconds = round(percentile(lat, 99).Seconds(), 3)
	p.MaxSeconds = round(lat[len(lat)-1].Seconds(), 3)
	p.LatenciesMs = make([]int64, len(lat))
	for i, d := range lat {
		p.LatenciesMs[i] = d.Milliseconds()
	}
	return p
}

// loopPhase is newPhase for a raw loop: every item starts with the loop.
func loopPhase(names []string, lr loopResult) Phase {
	starts := map[string]time.Time{}
	ends := map[string]time.Time{}
	for i, name := range names {
		starts[name] = lr.start
		if !lr.ends[i].IsZero() {
			ends[name] = lr.ends[i]
		}
	}
	p := newPhase(len(names), starts, ends)
	for _, err := range lr.errs {
		p.Errors = append(p.Errors, err.Error())
	}
	return p
}

// percentile is the nearest-rank percentile of sorted values.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	rank = min(max(rank, 1), len(sorted))
	return sorted[rank-1]
}

func round(v float64, digits int) float64 {
	f := math.Pow(10, float64(digits))
	return math.Round(v*f) / f
}

func ratio(a, b float64) float64 {
	if a == 0 || b == 0 {
		return 0
	}
	return round(a/b, 3)
}

// machineInfo describes the machine; the servers' versions are added by
// the first scenario.
func machineInfo(manager string) Machine {
	m := Machine{Cores: runtime.NumCPU(), GoVersion: runtime.Version()}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb float64
		for _, line := range strings.Split(string(b), "\n") {
			if _, err := fmt.Sscanf(line, "MemTotal: %f kB", &kb); err == nil {
				m.MemoryGiB = round(kb/1024/1024, 1)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if out, err := exec.Command(manager, "--version").Output(); err == nil {
		m.OperatorVersion = strings.TrimSpace(string(out))
	}
	if out, err := exec.Command("git", "describe", "--always", "--dirty").Output(); err == nil {
		m.GitCommit = strings.TrimSpace(string(out))
	}
	return m
}

// find returns the scenario of n at concurrency c.
func (r *Results) find(n, c int) *ScenarioResult {
	for i := range r.Scenarios {
		if r.Scenarios[i].N == n && r.Scenarios[i].Concurrency == c {
			return &r.Scenarios[i]
		}
	}
	return nil
}

// targetScenario is the scenario the throughput targets are judged on:
// N=500 at the default concurrency, or the largest N when there is none.
func (r *Results) targetScenario() (*ScenarioResult, string) {
	if s := r.find(500, r.Settings.Concurrency); s != nil {
		return s, "N=500"
	}
	var best *ScenarioResult
	for i := range r.Scenarios {
		s := &r.Scenarios[i]
		if s.Concurrency == r.Settings.Concurrency && slices.Contains(r.Settings.Ns, s.N) && (best == nil || s.N > best.N) {
			best = s
		}
	}
	if best == nil {
		return nil, "N=500 (not in this run)"
	}
	return best, fmt.Sprintf("N=%d (no N=500 in this run)", best.N)
}

// multiRound is whether any scenario of the run ran more than one round.
func (r *Results) multiRound() bool {
	for _, s := range r.Scenarios {
		if len(s.Rounds) > 1 {
			return true
		}
	}
	return false
}

// roundSecs is each round's seconds of one phase, joined with " + ".
func roundSecs(s ScenarioResult, get func(Round) *Phase) string {
	var out []string
	for _, rd := range s.Rounds {
		if p := get(rd); p != nil {
			out = append(out, secs(*p))
		}
	}
	return strings.Join(out, " + ")
}

// evaluateTargets checks the targets against the figures.
// targetStatus is a target's verdict: not measured, met or missed.
func targetStatus(measured, met bool) string {
	switch {
	case !measured:
		return "not measured"
	case met:
		return "met"
	}
	return "missed"
}

func evaluateTargets(r *Results) []Target {
	var out []Target
	status := targetStatus
	s, label := r.targetScenario()
	createGot, deleteGot := "-", "-"
	var createOK, deleteOK, createM, deleteM bool
	// The ratios are the pooled ones (ScenarioResult.CreateRatio).
	if s != nil && s.CreateRatio > 0 {
		c := s.Pooled.Create
		createM, createOK = true, s.CreateRatio >= 0.8
		createGot = fmt.Sprintf("%.2f× (%.1f vs %.1f orgs/s, %s)", s.CreateRatio, c.Orgforge.OrgsPerSecond, c.Raw.OrgsPerSecond, roundsNote(c.Rounds))
	}
	if s != nil && s.Pooled.Delete != nil && s.DeleteRatio > 0 {
		d := s.Pooled.Delete
		deleteM, deleteOK = true, s.DeleteRatio >= 0.8
		deleteGot = fmt.Sprintf("%.2f× (%.1f vs %.1f orgs/s, %s)", s.DeleteRatio, d.Orgforge.OrgsPerSecond, d.Raw.OrgsPerSecond, roundsNote(d.Rounds))
	}
	out = append(out,
		Target{Name: "Create throughput at " + label + ", concurrency " + fmt.Sprint(r.Settings.Concurrency), Want: "≥ 0.8× raw", Got: createGot, Status: status(createM, createOK)},
		Target{Name: "Delete throughput at " + label + ", concurrency " + fmt.Sprint(r.Settings.Concurrency), Want: "≥ 0.8× raw", Got: deleteGot, Status: status(deleteM, deleteOK)},
	)

	peak, where := 0, ""
	for _, sc := range r.Scenarios {
		phases := map[string]int{}
		for _, rd := range sc.Rounds {
			name := ""
			if len(sc.Rounds) > 1 {
				name = fmt.Sprintf(" round %d", rd.Round)
			}
			phases["create"+name] = rd.Orgforge.Create.PeakConnections
			if rd.Orgforge.Delete != nil {
				phases["delete"+name] = rd.Orgforge.Delete.PeakConnections
			}
		}
		if sc.Steady != nil {
			phases["steady state"] = sc.Steady.PeakConnections
		}
		for _, ph := range sortedKeys(phases) {
			if v := phases[ph]; v > peak {
				peak, where = v, sc.Name+" "+ph
			}
		}
	}
	capN := r.Settings.DatabaseMaxConnections
	out = append(out, Target{
		Name: "Operator PostgreSQL connections, every N", Want: fmt.Sprintf("≤ %d (the cap)", capN),
		Got: fmt.Sprintf("peak %d (%s)", peak, where), Status: status(len(r.Scenarios) > 0, peak <= capN),
	})

	var st *SteadyResult
	for _, sc := range r.Scenarios {
		if sc.Steady != nil {
			st = sc.Steady
		}
	}
	if st != nil {
		out = append(out,
			Target{Name: fmt.Sprintf("Kubernetes writes in steady state (N=%d, %.0f s, %.1f passes)", st.N, st.WindowSeconds, st.Passes),
				Want: "0", Got: fmt.Sprintf("%d (operator's client: %d)", st.APIWrites, st.OperatorClientWrites),
				Status: status(st.Passes >= 3, st.APIWrites == 0 && st.OperatorClientWrites == 0)},
			Target{Name: fmt.Sprintf("DDL statements in steady state (N=%d)", st.N),
				Want: "0", Got: fmt.Sprint(st.DDLStatements), Status: status(st.Passes >= 3, st.DDLStatements == 0)})
	} else {
		out = append(out,
			Target{Name: "Kubernetes writes in steady state", Want: "0", Got: "-", Status: "not measured"},
			Target{Name: "DDL statements in steady state", Want: "0", Got: "-", Status: "not measured"})
	}
	out = append(out, sqlTarget(st, status), awsTarget(st, r.Settings.StorageAccess, status), memoryTarget(r.Scenarios, status))
	var rs *RestartResult
	if st != nil {
		rs = st.Restart
	}
	out = append(out, restartTargets(rs, status)...)

	big := r.find(1000, r.Settings.Concurrency)
	label = "N=1000"
	if big == nil && len(r.Settings.Ns) > 0 {
		n := slices.Max(r.Settings.Ns)
		big = r.find(n, r.Settings.Concurrency)
		label = fmt.Sprintf("N=%d (no N=1000 in this run)", n)
	}
	t := Target{Name: "Operator RSS at " + label, Want: "< 150 MiB", Got: "-", Status: "not measured"}
	if big != nil && big.Orgforge.Operator != nil && big.Orgforge.Operator.PeakRSSMiB > 0 {
		t.Got = fmt.Sprintf("%.1f MiB peak", big.Orgforge.Operator.PeakRSSMiB)
		t.Status = status(true, big.Orgforge.Operator.PeakRSSMiB < 150)
	}
	out = append(out, t)
	return out
}

func writeResults(dir string, r *Results) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "results.json"), append(b, '\n'), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "results.md"), []byte(markdown(r)), 0o644)
}

// markdown renders the tables of results.md.
func markdown(r *Results) string {
	var b bytes.Buffer
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	m := r.Machine
	w("# orgforge benchmark, %s\n\n", r.Started.Format("2006-01-02 15:04 UTC"))
	w("Machine: %d cores (%s), %.1f GiB, Linux %s. %s; Kubernetes %s (envtest kube-apiserver + etcd); versitygw for S3 and IAM. %s, operator %s (%s).\n\n",
		m.Cores, m.CPUModel, m.MemoryGiB, m.Kernel, firstWords(m.PostgresVersion, 2)+" (fsync on)", m.KubernetesVersion, m.GoVersion, m.OperatorVersion, m.GitCommit)
	st := r.Settings
	if st.StorageAccess != "" {
		w("Every Organization has `spec.storage.access: %s`: every figure below is for that access.\n\n", st.StorageAccess)
	}
	if st.PostgresData != "" {
		w("PostgreSQL's data: %s.\n\n", st.PostgresData)
	}
	w("Every side of every scenario runs on a fresh stack. The operator runs as its own process with default settings but `--max-concurrent-reconciles`; the raw loop runs as many workers through the same services with the same connection cap (%d). Ratios are orgforge's orgs/s over raw's. Run took %.0f s.\n\n",
		st.DatabaseMaxConnections, r.TotalSeconds)
	multi := r.multiRound()
	r1 := ""
	if multi {
		r1 = " (round 1)"
		for _, s := range r.Scenarios {
			if len(s.Rounds) > 1 {
				w("The N=%d scenario ran %d rounds, each a fresh pair of stacks, alternating which side ran first (round 1: %s), because the machine's speed drifts over minutes and the side that runs in a slow minute loses. Its orgs/s and ratios are pooled over the rounds: each side's organizations completed over its seconds, summed over the rounds. Its s columns list each round's; its other figures are round 1's, as later rounds time only the creations and the deletions.\n\n",
					s.N, len(s.Rounds), s.Rounds[0].First)
			}
		}
	}

	main := filterScenarios(r.Scenarios, func(s ScenarioResult) bool { return s.Concurrency == st.Concurrency && slices.Contains(st.Ns, s.N) })
	if len(main) > 0 {
		w("## Create: N Organizations applied at once, concurrency %d\n\n", st.Concurrency)
		w("| N | orgforge s (applying took) | orgforge orgs/s | raw s | raw orgs/s | ratio | apply→Ready p50 / p95 / p99 s%s | raw p50 / p95 / p99 s%s | peak PG conns orgforge / raw (cap %d) | DDL/org orgforge / raw | API writes/org | operator peak RSS MiB | operator CPU s | other load CPU s orgforge / raw |\n", r1, r1, st.DatabaseMaxConnections)
		w("|---:|---:|---:|---:|---:|---:|---|---|---|---|---:|---:|---:|---|\n")
		for _, s := range main {
			o, rw := s.Orgforge.Create, s.Raw.Create
			rss, cpu, writes := "-", "-", "-"
			if d := s.Orgforge.Operator; d != nil {
				rss = fmt.Sprintf("%.1f", d.CreateProcess.PeakRSSMiB)
				cpu = fmt.Sprintf("%.1f", d.CreateProcess.CPUSeconds)
				writes = fmt.Sprintf("%.1f", d.CreateAPIWritesPerOrg)
			}
			w("| %d | %s (%.1f) | %.1f | %s | %.1f | **%.2f** | %s | %s | %d / %d | %.1f / %.1f | %s | %s | %s | %s |\n",
				s.N, roundSecs(s, func(rd Round) *Phase { return &rd.Orgforge.Create }), o.StartSpreadSeconds, s.Pooled.Create.Orgforge.OrgsPerSecond,
				roundSecs(s, func(rd Round) *Phase { return &rd.Raw.Create }), s.Pooled.Create.Raw.OrgsPerSecond, s.CreateRatio, pct(o), pct(rw),
				o.PeakConnections, rw.PeakConnections, o.DDLPerOrg, rw.DDLPerOrg, writes, rss, cpu, noise(o, &rw))
		}
		w("\n")
		writeReadyMemory(w, main)
		w("## Delete: the N Organizations deleted at once (deletionPolicy Delete), concurrency %d\n\n", st.Concurrency)
		w("| N | orgforge s | orgforge orgs/s | raw s | raw orgs/s | ratio | delete→gone p50 / p95 / p99 s%s | peak PG conns orgforge / raw | DDL/org orgforge / raw | API writes/org | operator CPU s | leftovers orgforge / raw | other load CPU s orgforge / raw |\n", r1)
		w("|---:|---:|---:|---:|---:|---:|---|---|---|---:|---:|---|---|\n")
		for _, s := range main {
			o, rw, pd := s.Orgforge.Delete, s.Raw.Delete, s.Pooled.Delete
			if o == nil || rw == nil || pd == nil {
				continue
			}
			cpu, writes := "-", "-"
			if d := s.Orgforge.Operator; d != nil {
				cpu = fmt.Sprintf("%.1f", d.DeleteCPUSeconds)
				writes = fmt.Sprintf("%.1f", d.DeleteAPIWritesPerOrg)
			}
			w("| %d | %s | %.1f | %s | %.1f | **%.2f** | %s | %d / %d | %.1f / %.1f | %s | %s | %s / %s | %s |\n",
				s.N, roundSecs(s, func(rd Round) *Phase { return rd.Orgforge.Delete }), pd.Orgforge.OrgsPerSecond,
				roundSecs(s, func(rd Round) *Phase { return rd.Raw.Delete }), pd.Raw.OrgsPerSecond, s.DeleteRatio, pct(*o),
				o.PeakConnections, rw.PeakConnections, o.DDLPerOrg, rw.DDLPerOrg, writes, cpu,
				leftovers(s.Orgforge.Leftovers), leftovers(s.Raw.Leftovers), noise(*o, rw))
		}
		w("\n")
	}

	for _, s := range r.Scenarios {
		if len(s.Rounds) < 2 {
			continue
		}
		w("## Rounds: N=%d, concurrency %d, alternating which side runs first\n\n", s.N, s.Concurrency)
		w("| round | first | raw create orgs/s (s) | orgforge create orgs/s (s) | create ratio | raw delete orgs/s (s) | orgforge delete orgs/s (s) | delete ratio |\n")
		w("|---|---|---:|---:|---:|---:|---:|---:|\n")
		rate := func(p *Phase) string {
			if p == nil {
				return "-"
			}
			return fmt.Sprintf("%.1f (%s)", p.OrgsPerSecond, secs(*p))
		}
		for _, rd := range s.Rounds {
			dr := "-"
			if rd.DeleteRatio > 0 {
				dr = fmt.Sprintf("%.2f", rd.DeleteRatio)
			}
			w("| %d | %s | %s | %s | %.2f | %s | %s | %s |\n", rd.Round, rd.First, rate(&rd.Raw.Create), rate(&rd.Orgforge.Create),
				rd.CreateRatio, rate(rd.Raw.Delete), rate(rd.Orgforge.Delete), dr)
		}
		pooled := func(p PooledSide) string {
			return fmt.Sprintf("%.1f (%d in %.1f)", p.OrgsPerSecond, p.Completed, p.Seconds)
		}
		c := s.Pooled.Create
		pdr, pdo, pdRatio := "-", "-", "-"
		if d := s.Pooled.Delete; d != nil {
			pdr, pdo, pdRatio = pooled(d.Raw), pooled(d.Orgforge), fmt.Sprintf("**%.2f**", d.Ratio)
		}
		w("| pooled, %d rounds | | %s | %s | **%.2f** | %s | %s | %s |\n\n", c.Rounds, pooled(c.Raw), pooled(c.Orgforge), c.Ratio, pdr, pdo, pdRatio)
	}

	for _, s := range r.Scenarios {
		writeFloor(w, s)
	}

	sweep := filterScenarios(r.Scenarios, func(s ScenarioResult) bool { return s.Sweep })
	slices.SortFunc(sweep, func(a, b ScenarioResult) int { return a.Concurrency - b.Concurrency })
	if len(sweep) > 0 {
		w("## Concurrency sweep: N=%d, `--max-concurrent-reconciles` = raw workers\n\n", st.SweepN)
		w("| concurrency | orgforge create orgs/s | raw create orgs/s | create ratio | apply→Ready p50 / p95 / p99 s%s | peak PG conns orgforge / raw | orgforge delete orgs/s | raw delete orgs/s | delete ratio | other load CPU s orgforge / raw (create) |\n", r1)
		w("|---:|---:|---:|---:|---|---|---:|---:|---:|---|\n")
		for _, s := range sweep {
			od, rd, dr := "-", "-", "-"
			if d := s.Pooled.Delete; d != nil {
				od, rd = fmt.Sprintf("%.1f", d.Orgforge.OrgsPerSecond), fmt.Sprintf("%.1f", d.Raw.OrgsPerSecond)
				dr = fmt.Sprintf("%.2f", s.DeleteRatio)
			}
			c := fmt.Sprint(s.Concurrency)
			if len(s.Rounds) > 1 {
				c += fmt.Sprintf(" (%s)", roundsNote(len(s.Rounds)))
			}
			w("| %s | %.1f | %.1f | **%.2f** | %s | %d / %d | %s | %s | %s | %s |\n", c,
				s.Pooled.Create.Orgforge.OrgsPerSecond, s.Pooled.Create.Raw.OrgsPerSecond, s.CreateRatio, pct(s.Orgforge.Create),
				s.Orgforge.Create.PeakConnections, s.Raw.Create.PeakConnections, od, rd, dr, noise(s.Orgforge.Create, &s.Raw.Create))
		}
		w("\n")
	}

	for _, s := range r.Scenarios {
		ss := s.Steady
		if ss == nil {
			continue
		}
		w("## Steady state: N=%d Ready (storage.access %s), operator restarted with `--resync-period %gs`\n\n", ss.N, st.StorageAccess, ss.ResyncPeriodSeconds)
		w("| window s | restart pass s | reconciles (passes) | API writes | apiserver's own lease writes | operator client writes | DDL statements | peak PG conns | RSS MiB peak | CPU s |\n")
		w("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
		w("| %.1f | %.1f | %d (%.1f) | **%d** | %d | %d | **%d** | %d | %.1f | %.1f |\n\n", ss.WindowSeconds, ss.InitialPassSeconds,
			ss.Reconciles, ss.Passes, ss.APIWrites, ss.HeartbeatWrites, ss.OperatorClientWrites, ss.DDLStatements,
			ss.PeakConnections, ss.Process.PeakRSSMiB, ss.Process.CPUSeconds)
		w("%s", steadySQLLine(ss))
		writeAWSCalls(w, ss.AWS)
		writeRestart(w, ss.Restart)
		writeRestartCompare(w, ss.Compare)
		writeSpread(w, ss)
	}

	writeFleet(w, r.Fleet)
	writeUsage(w, r.Usage)

	if len(r.Targets) > 0 {
		w("## Targets (issues 5 and 18)\n\n| target | want | got | |\n|---|---|---|---|\n")
		for _, t := range r.Targets {
			w("| %s | %s | %s | %s |\n", t.Name, t.Want, t.Got, t.Status)
		}
		w("\n")
	}

	if s, _ := r.targetScenario(); s != nil && s.Orgforge.Operator != nil {
		d := s.Orgforge.Operator
		which := ""
		if len(s.Rounds) > 1 {
			which = fmt.Sprintf(", round 1 of %d", len(s.Rounds))
		}
		w("## Where the operator's time went: %s create%s\n\n", s.Name, which)
		rt, qw := d.CreateMetrics.ReconcileTime, d.CreateMetrics.QueueWait
		w("Reconciles %v; mean reconcile %.0f ms (%d), mean queue wait %.0f ms. Operator API requests by method: %v.\n\n",
			d.CreateMetrics.Reconciles, rt.MeanMs, rt.Count, qw.MeanMs, d.CreateMetrics.ClientRequests)
		if len(s.Orgforge.Create.CPUSeconds) > 0 {
			w("CPU seconds used during the create phase, by process (the machine has %d cores):\n\n", r.Machine.Cores)
			w("| process | orgforge side (%.1f s wall) | raw side (%.1f s wall) |\n|---|---:|---:|\n", s.Orgforge.Create.Seconds, s.Raw.Create.Seconds)
			procs := map[string]bool{}
			for k := range s.Orgforge.Create.CPUSeconds {
				procs[k] = true
			}
			for k := range s.Raw.Create.CPUSeconds {
				procs[k] = true
			}
			delete(procs, "other")
			to, tr := stackCPU(s.Orgforge.Create.CPUSeconds), stackCPU(s.Raw.Create.CPUSeconds)
			for _, k := range sortedKeys(procs) {
				w("| %s | %.1f | %.1f |\n", k, s.Orgforge.Create.CPUSeconds[k], s.Raw.Create.CPUSeconds[k])
			}
			w("| total of the stack | %.1f | %.1f |\n", to, tr)
			w("| other processes on the machine (noise) | %.1f | %.1f |\n\n", s.Orgforge.Create.CPUSeconds["other"], s.Raw.Create.CPUSeconds["other"])
			writeCPUCeiling(w, s.Rounds, r.Machine.Cores)
		}
		if so, sr := s.Orgforge.Create.Sessions, s.Raw.Create.Sessions; so != nil && sr != nil {
			w("PostgreSQL sessions during the creations, mean over the phase (pg_stat_activity every 25 ms): orgforge %.2f active (%.2f of them in the admin database, of the admin pool's %d connections), %.2f idle; raw %.2f active (%.2f in the admin database), %.2f idle. Active is the server running a statement or waiting for CPU, a lock or the disk; idle is an open session waiting for its client.\n\n",
				so.Active, so.AdminActive, aurora.AdminConnections(int32(r.Settings.DatabaseMaxConnections)), so.Idle, sr.Active, sr.AdminActive, sr.Idle)
		}
		if len(d.CreateAPILatency) > 0 {
			w("Kubernetes writes during the creations, as the apiserver timed them (mean per request):")
			for i, k := range sortedKeys(d.CreateAPILatency) {
				h := d.CreateAPILatency[k]
				if i > 0 {
					w(";")
				}
				w(" %s %d × %.1f ms", k, h.Count, h.MeanMs)
			}
			w(".\n\n")
		}
		w("Step times, orgforge's (orgforge_reconcile_step_duration_seconds; its accessKey step holds the IAM user, policy and key) against the raw loop's:\n\n")
		w("| step | orgforge calls | orgforge mean ms | orgforge total s | raw calls | raw mean ms | raw total s |\n|---|---:|---:|---:|---:|---:|---:|\n")
		steps := map[string]bool{}
		for k := range d.CreateMetrics.Steps {
			steps[k] = true
		}
		for k := range s.Raw.Create.Steps {
			steps[k] = true
		}
		for _, k := range sortedKeys(steps) {
			w("| %s | %s | %s |\n", k, stepCells(d.CreateMetrics.Steps, k), stepCells(s.Raw.Create.Steps, k))
		}
		w("\n")
		if s.Raw.Delete != nil && len(s.Raw.Delete.Steps) > 0 {
			steps := func(m map[string]HistogramSummary) {
				for i, k := range sortedKeys(m) {
					if i > 0 {
						w(", ")
					}
					w("%s %.0f ms", k, m[k].MeanMs)
				}
			}
			w("Raw delete steps: ")
			steps(s.Raw.Delete.Steps)
			w(" (mean per call).")
			if dm := d.DeleteMetrics; dm != nil {
				w(" orgforge delete: reconciles %v, mean reconcile %.0f ms", dm.Reconciles, dm.ReconcileTime.MeanMs)
				if len(dm.Steps) > 0 {
					w("; steps ")
					steps(dm.Steps)
					w(" (dropDatabase runs beside deleteUser and deletePrefix)")
				}
				w(".")
			}
			w("\n\n")
		}
	}

	var errs []string
	for _, s := range r.Scenarios {
		errs = append(errs, s.Errors...)
		errs = append(errs, s.Warnings...)
	}
	if len(errs) > 0 {
		w("## Problems\n\n")
		for _, e := range errs {
			w("- %s\n", strings.ReplaceAll(e, "\n", " "))
		}
		w("\n")
	}
	w("Plots: [latency CDF](latency-cdf.png), [throughput vs concurrency](throughput-concurrency.png)")
	if r.Fleet != nil {
		w(", [fleet latency CDF](fleet-latency-cdf.png)")
	}
	w(". Every figure: [results.json](results.json).\n")
	return b.String()
}

func filterScenarios(all []ScenarioResult, keep func(ScenarioResult) bool) []ScenarioResult {
	var out []ScenarioResult
	for _, s := range all {
		if keep(s) {
			out = append(out, s)
		}
	}
	return out
}

func secs(p Phase) string {
	if p.Completed < p.N {
		return fmt.Sprintf("%.1f (%d/%d done)", p.Seconds, p.Completed, p.N)
	}
	return fmt.Sprintf("%.1f", p.Seconds)
}

func pct(p Phase) string {
	return fmt.Sprintf("%.2f / %.2f / %.2f", p.P50Seconds, p.P95Seconds, p.P99Seconds)
}

func leftovers(l *Leftovers) string {
	if l == nil {
		return "-"
	}
	if l.total() == 0 {
		return "none"
	}
	return fmt.Sprintf("%d db, %d roles, %d users, %d objects", l.Databases, l.Roles, l.IAMUsers, l.Objects)
}

func firstWords(s string, n int) string {
	f := strings.Fields(s)
	if len(f) > n {
		f = f[:n]
	}
	return strings.Join(f, " ")
}

func stepCells(steps map[string]HistogramSummary, k string) string {
	h, ok := steps[k]
	if !ok {
		return "- | - | -"
	}
	return fmt.Sprintf("%d | %.1f | %.1f", h.Count, h.MeanMs, h.TotalSeconds)
}

// noise is the CPU other processes on the machine used during a phase of
// each side: a busy neighbour slows that side down.
func noise(o Phase, raw *Phase) string {
	r := "-"
	if raw != nil {
		r = fmt.Sprintf("%.1f", raw.CPUSeconds["other"])
	}
	return fmt.Sprintf("%.1f / %s", o.CPUSeconds["other"], r)
}

// cpuCeiling estimates the create ratio the machine's CPU allows, when CPU is
// what limits both sides: raw's stack (postgres, versitygw and the loop in
// the bench) over the same plus what the Kubernetes side adds
// (kube-apiserver, etcd, the operator and the bench's applying, less the raw
// loop's own share in the bench, which the operator does instead). It
// assumes postgres and versitygw cost each side the same for the same work;
// ServicesOrgforge and ServicesRaw show whether they did.
type cpuCeiling struct {
	RawStack, OrgforgeStack, Kubernetes, Ratio float64
	// ServicesOrgforge and ServicesRaw are postgres and versitygw's CPU on
	// each side, the same work.
	ServicesOrgforge, ServicesRaw float64
}

// stackCPU is the CPU of a side's stack: every process but "other", the
// rest of the machine.
func stackCPU(m map[string]float64) float64 {
	var sum float64
	for k, v := range m {
		if k != "other" {
			sum += v
		}
	}
	return sum
}

func ceilingOf(o, r map[string]float64) (cpuCeiling, bool) {
	if len(o) == 0 || len(r) == 0 {
		return cpuCeiling{}, false
	}
	c := cpuCeiling{RawStack: stackCPU(r), OrgforgeStack: stackCPU(o)}
	c.Kubernetes = o["kube-apiserver"] + o["etcd"] + o["orgforge"] + o["bench"] - r["bench"]
	c.ServicesOrgforge = o["postgres"] + o["versitygw"]
	c.ServicesRaw = r["postgres"] + r["versitygw"]
	if c.RawStack+c.Kubernetes <= 0 {
		return cpuCeiling{}, false
	}
	c.Ratio = c.RawStack / (c.RawStack + c.Kubernetes)
	return c, true
}

// writeCPUCeiling writes, for each round that measured CPU, how busy the
// machine was and the create ratio its CPU allows.
func writeCPUCeiling(w func(string, ...any), rounds []Round, cores int) {
	var rows []string
	var sum cpuCeiling
	for _, rd := range rounds {
		c, ok := ceilingOf(rd.Orgforge.Create.CPUSeconds, rd.Raw.Create.CPUSeconds)
		if !ok || rd.Orgforge.Create.Seconds <= 0 || rd.Raw.Create.Seconds <= 0 {
			continue
		}
		busyO := c.OrgforgeStack / rd.Orgforge.Create.Seconds
		busyR := c.RawStack / rd.Raw.Create.Seconds
		rows = append(rows, fmt.Sprintf("| %d | %.2f / %.2f | %.1f | %.1f | %.1f / %.1f | %.2f | %.2f |\n",
			rd.Round, busyO, busyR, c.RawStack, c.Kubernetes, c.ServicesOrgforge, c.ServicesRaw, c.Ratio, rd.CreateRatio))
		sum.RawStack += c.RawStack
		sum.Kubernetes += c.Kubernetes
	}
	if len(rows) == 0 {
		return
	}
	w("What the CPU allows, an estimate. If both sides were wholly limited by the machine's %d cores, and postgres and versitygw spent the same CPU on the same statements and calls on both sides, the create ratio would be raw's stack CPU over the same plus what the Kubernetes side adds: kube-apiserver, etcd, the operator and the bench's applying, less the raw loop's own CPU in the bench, whose work the operator does instead. The columns show how busy the cores were and what postgres and versitygw did spend:\n\n", cores)
	w("| round | cores busy orgforge / raw | raw stack CPU s | Kubernetes side adds, CPU s | postgres + versitygw CPU s orgforge / raw | ratio the CPU allows | measured create ratio |\n|---:|---|---:|---:|---|---:|---:|\n")
	for _, row := range rows {
		w("%s", row)
	}
	if len(rows) > 1 {
		w("\nOver the rounds: %.1f / (%.1f + %.1f) = %.2f.\n", sum.RawStack, sum.RawStack, sum.Kubernetes, sum.RawStack/(sum.RawStack+sum.Kubernetes))
	}
	w("\n")
}

// writeFloor writes the floor side's rounds beside the other two, and the
// first round's CPU by process beside orgforge's.
func writeFloor(w func(string, ...any), s ScenarioResult) {
	f := s.Pooled.Floor
	if f == nil {
		return
	}
	w("## The floor: the raw loop plus orgforge's Kubernetes writes, N=%d, concurrency %d\n\n", s.N, s.Concurrency)
	w("A third side, creations only, on a fresh stack of its own between the other two. The N Organizations are applied as on the orgforge side, and %d workers of the bench do, for each one the watch has seen, the raw loop's external work and the Kubernetes writes orgforge makes, in the same shapes: the finalizer patch, the namespace, the two Secrets, the status patch and the Event. No informer, cache or work queue. Like the raw loop, each worker does one organization's steps one after another. Its orgs/s over raw's is what these writes cost on this machine: what an operator that makes them, with raw's order of steps, could reach. orgforge's over the floor's is what the controller costs beyond the writes (its watch, cache and work queue), less what it gains by running the database and the storage parts of a reconcile at once.\n\n", s.Concurrency)
	w("| round | order | raw orgs/s (s) | floor orgs/s (s) | orgforge orgs/s (s) | floor / raw | orgforge / raw | orgforge / floor |\n")
	w("|---|---|---:|---:|---:|---:|---:|---:|\n")
	for _, rd := range s.Rounds {
		if rd.Floor == nil {
			continue
		}
		order := "raw, floor, orgforge"
		if rd.First == sideOrgforge {
			order = "orgforge, floor, raw"
		}
		rc, fc, oc := rd.Raw.Create, rd.Floor.Create, rd.Orgforge.Create
		w("| %d | %s | %.1f (%s) | %.1f (%s) | %.1f (%s) | %.2f | %.2f | %.2f |\n", rd.Round, order,
			rc.OrgsPerSecond, secs(rc), fc.OrgsPerSecond, secs(fc), oc.OrgsPerSecond, secs(oc),
			rd.FloorRatio, rd.CreateRatio, ratio(oc.OrgsPerSecond, fc.OrgsPerSecond))
	}
	label := fmt.Sprintf("pooled, %d rounds", f.Rounds)
	if f.Rounds == 1 {
		label = "the round pooled"
	}
	w("| %s | | %.1f | %.1f | %.1f | **%.2f** | %.2f | **%.2f** |\n\n", label,
		f.Raw.OrgsPerSecond, f.Floor.OrgsPerSecond, f.Orgforge.OrgsPerSecond,
		f.FloorRatio, f.OrgforgeRatio, f.OrgforgeToFloor)
	fl := s.Floor
	if fl == nil {
		return
	}
	if a, b := fl.Shape, s.Orgforge.Shape; a != nil && b != nil {
		what := "the same conditions, and Secrets with the same keys"
		if d := sameShape(a, b); d != "" {
			what = "**different objects**: " + d
		}
		w("One Ready Organization of round 1 on each side: the floor's and orgforge's hold %s. As JSON, managed fields included, the floor's against orgforge's:", what)
		for i, k := range sortedKeys(b.Bytes) {
			if i > 0 {
				w(";")
			}
			w(" %s %d / %d bytes", k, a.Bytes[k], b.Bytes[k])
		}
		w(".\n\n")
	}
	if len(fl.Create.CPUSeconds) == 0 || len(s.Orgforge.Create.CPUSeconds) == 0 {
		return
	}
	writes := "-"
	if d := s.Orgforge.Operator; d != nil {
		writes = fmt.Sprintf("%.1f", d.CreateAPIWritesPerOrg)
	}
	w("Round 1's CPU seconds by process during the creations; the floor's loop runs in the bench. Kubernetes writes per Organization, the apply's creates left out: floor %.1f, orgforge %s.\n\n", fl.Create.APIWritesPerOrg, writes)
	w("| process | floor side (%.1f s wall) | orgforge side (%.1f s wall) |\n|---|---:|---:|\n", fl.Create.Seconds, s.Orgforge.Create.Seconds)
	procs := map[string]bool{}
	for k := range fl.Create.CPUSeconds {
		procs[k] = true
	}
	for k := range s.Orgforge.Create.CPUSeconds {
		procs[k] = true
	}
	delete(procs, "other")
	for _, k := range sortedKeys(procs) {
		w("| %s | %.1f | %.1f |\n", k, fl.Create.CPUSeconds[k], s.Orgforge.Create.CPUSeconds[k])
	}
	w("| total of the stack | %.1f | %.1f |\n", stackCPU(fl.Create.CPUSeconds), stackCPU(s.Orgforge.Create.CPUSeconds))
	w("| other processes on the machine (noise) | %.1f | %.1f |\n\n", fl.Create.CPUSeconds["other"], s.Orgforge.Create.CPUSeconds["other"])
}
