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
)

// Results is everything one run measured; results.json is it as JSON.
type Results struct {
	Started      time.Time        `json:"started"`
	Finished     time.Time        `json:"finished"`
	TotalSeconds float64          `json:"totalSeconds"`
	Machine      Machine          `json:"machine"`
	Settings     Settings         `json:"settings"`
	Scenarios    []ScenarioResult `json:"scenarios"`
	Targets      []Target         `json:"targets"`
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
}

// ScenarioResult is one scenario's two sides and their ratios.
type ScenarioResult struct {
	Name        string `json:"name"`
	N           int    `json:"n"`
	Concurrency int    `json:"concurrency"`
	Sweep       bool   `json:"sweep"`
	// CreateRatio and DeleteRatio are orgforge's orgs/s over raw's.
	CreateRatio float64       `json:"createRatio"`
	DeleteRatio float64       `json:"deleteRatio,omitempty"`
	Raw         SideResult    `json:"raw"`
	Orgforge    SideResult    `json:"orgforge"`
	Steady      *SteadyResult `json:"steadyState,omitempty"`
	Errors      []string      `json:"errors,omitempty"`
	// Warnings are raw organizations that failed: findings about the
	// services, which the run reports and goes on.
	Warnings []string `json:"warnings,omitempty"`
}

// SideResult is one side of a scenario.
type SideResult struct {
	Create Phase  `json:"create"`
	Delete *Phase `json:"delete,omitempty"`
	// Leftovers are what remained outside Kubernetes after the deletion.
	Leftovers *Leftovers `json:"leftovers,omitempty"`
	// Operator is set on the orgforge side.
	Operator *OperatorDetail `json:"operator,omitempty"`
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
	PeakConnections int     `json:"peakConnections"`
	DDLStatements   int     `json:"ddlStatements"`
	DDLPerOrg       float64 `json:"ddlPerOrg"`
	// CPUSeconds is the CPU each process of the stack used in the phase:
	// orgforge, postgres (with its backends), kube-apiserver, etcd,
	// versitygw, and bench (the raw loop runs in the bench itself).
	CPUSeconds map[string]float64 `json:"cpuSeconds,omitempty"`
	// Steps is the raw loop's time per step.
	Steps       map[string]HistogramSummary `json:"steps,omitempty"`
	LatenciesMs []int64                     `json:"latenciesMs"`
	Errors      []string                    `json:"errors,omitempty"`
}

// OperatorDetail is what the operator process and its metrics showed.
type OperatorDetail struct {
	Args []string `json:"args"`
	// CreateProcess is the operator that did the creations, read when all
	// were Ready: peak RSS since its start and CPU seconds including its
	// start-up.
	CreateProcess procStats `json:"createProcess"`
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
	// reconcile every Organization once.
	InitialPassSeconds float64 `json:"initialPassSeconds"`
	// Reconciles counts them in the window, the restart's pass and the
	// resyncs; Passes is Reconciles/N.
	Reconciles int     `json:"reconciles"`
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

// evaluateTargets checks the targets against the figures.
func evaluateTargets(r *Results) []Target {
	var out []Target
	status := func(measured, met bool) string {
		switch {
		case !measured:
			return "not measured"
		case met:
			return "met"
		}
		return "missed"
	}
	s, label := r.targetScenario()
	createGot, deleteGot := "-", "-"
	var createOK, deleteOK, createM, deleteM bool
	if s != nil && s.CreateRatio > 0 {
		createM, createOK = true, s.CreateRatio >= 0.8
		createGot = fmt.Sprintf("%.2f× (%.1f vs %.1f orgs/s)", s.CreateRatio, s.Orgforge.Create.OrgsPerSecond, s.Raw.Create.OrgsPerSecond)
	}
	if s != nil && s.DeleteRatio > 0 && s.Orgforge.Delete != nil && s.Raw.Delete != nil {
		deleteM, deleteOK = true, s.DeleteRatio >= 0.8
		deleteGot = fmt.Sprintf("%.2f× (%.1f vs %.1f orgs/s)", s.DeleteRatio, s.Orgforge.Delete.OrgsPerSecond, s.Raw.Delete.OrgsPerSecond)
	}
	out = append(out,
		Target{Name: "Create throughput at " + label + ", concurrency " + fmt.Sprint(r.Settings.Concurrency), Want: "≥ 0.8× raw", Got: createGot, Status: status(createM, createOK)},
		Target{Name: "Delete throughput at " + label + ", concurrency " + fmt.Sprint(r.Settings.Concurrency), Want: "≥ 0.8× raw", Got: deleteGot, Status: status(deleteM, deleteOK)},
	)

	peak, where := 0, ""
	for _, sc := range r.Scenarios {
		phases := map[string]int{"create": sc.Orgforge.Create.PeakConnections}
		if sc.Orgforge.Delete != nil {
			phases["delete"] = sc.Orgforge.Delete.PeakConnections
		}
		if sc.Steady != nil {
			phases["steady state"] = sc.Steady.PeakConnections
		}
		for ph, v := range phases {
			if v > peak {
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
	w("Every side of every scenario runs on a fresh stack. The operator runs as its own process with default settings but `--max-concurrent-reconciles`; the raw loop runs as many workers through the same services with the same connection cap (%d). Ratios are orgforge's orgs/s over raw's. Run took %.0f s.\n\n",
		st.DatabaseMaxConnections, r.TotalSeconds)

	main := filterScenarios(r.Scenarios, func(s ScenarioResult) bool { return s.Concurrency == st.Concurrency && slices.Contains(st.Ns, s.N) })
	if len(main) > 0 {
		w("## Create: N Organizations applied at once, concurrency %d\n\n", st.Concurrency)
		w("| N | orgforge s (applying took) | orgforge orgs/s | raw s | raw orgs/s | ratio | apply→Ready p50 / p95 / p99 s | raw p50 / p95 / p99 s | peak PG conns orgforge / raw (cap %d) | DDL/org orgforge / raw | API writes/org | operator peak RSS MiB | operator CPU s | other load CPU s orgforge / raw |\n", st.DatabaseMaxConnections)
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
				s.N, secs(o), o.StartSpreadSeconds, o.OrgsPerSecond, secs(rw), rw.OrgsPerSecond, s.CreateRatio, pct(o), pct(rw),
				o.PeakConnections, rw.PeakConnections, o.DDLPerOrg, rw.DDLPerOrg, writes, rss, cpu, noise(o, &rw))
		}
		w("\n")
		w("## Delete: the N Organizations deleted at once (deletionPolicy Delete), concurrency %d\n\n", st.Concurrency)
		w("| N | orgforge s | orgforge orgs/s | raw s | raw orgs/s | ratio | delete→gone p50 / p95 / p99 s | peak PG conns orgforge / raw | DDL/org orgforge / raw | API writes/org | operator CPU s | leftovers orgforge / raw | other load CPU s orgforge / raw |\n")
		w("|---:|---:|---:|---:|---:|---:|---|---|---|---:|---:|---|---|\n")
		for _, s := range main {
			o, rw := s.Orgforge.Delete, s.Raw.Delete
			if o == nil || rw == nil {
				continue
			}
			cpu, writes := "-", "-"
			if d := s.Orgforge.Operator; d != nil {
				cpu = fmt.Sprintf("%.1f", d.DeleteCPUSeconds)
				writes = fmt.Sprintf("%.1f", d.DeleteAPIWritesPerOrg)
			}
			w("| %d | %s | %.1f | %s | %.1f | **%.2f** | %s | %d / %d | %.1f / %.1f | %s | %s | %s / %s | %s |\n",
				s.N, secs(*o), o.OrgsPerSecond, secs(*rw), rw.OrgsPerSecond, s.DeleteRatio, pct(*o),
				o.PeakConnections, rw.PeakConnections, o.DDLPerOrg, rw.DDLPerOrg, writes, cpu,
				leftovers(s.Orgforge.Leftovers), leftovers(s.Raw.Leftovers), noise(*o, rw))
		}
		w("\n")
	}

	sweep := filterScenarios(r.Scenarios, func(s ScenarioResult) bool { return s.Sweep })
	slices.SortFunc(sweep, func(a, b ScenarioResult) int { return a.Concurrency - b.Concurrency })
	if len(sweep) > 0 {
		w("## Concurrency sweep: N=%d, `--max-concurrent-reconciles` = raw workers\n\n", st.SweepN)
		w("| concurrency | orgforge create orgs/s | raw create orgs/s | create ratio | apply→Ready p50 / p95 / p99 s | peak PG conns orgforge / raw | orgforge delete orgs/s | raw delete orgs/s | delete ratio | other load CPU s orgforge / raw (create) |\n")
		w("|---:|---:|---:|---:|---|---|---:|---:|---:|---|\n")
		for _, s := range sweep {
			od, rd, dr := "-", "-", "-"
			if s.Orgforge.Delete != nil && s.Raw.Delete != nil {
				od, rd = fmt.Sprintf("%.1f", s.Orgforge.Delete.OrgsPerSecond), fmt.Sprintf("%.1f", s.Raw.Delete.OrgsPerSecond)
				dr = fmt.Sprintf("%.2f", s.DeleteRatio)
			}
			w("| %d | %.1f | %.1f | **%.2f** | %s | %d / %d | %s | %s | %s | %s |\n", s.Concurrency,
				s.Orgforge.Create.OrgsPerSecond, s.Raw.Create.OrgsPerSecond, s.CreateRatio, pct(s.Orgforge.Create),
				s.Orgforge.Create.PeakConnections, s.Raw.Create.PeakConnections, od, rd, dr, noise(s.Orgforge.Create, &s.Raw.Create))
		}
		w("\n")
	}

	for _, s := range r.Scenarios {
		ss := s.Steady
		if ss == nil {
			continue
		}
		w("## Steady state: N=%d Ready, operator restarted with `--resync-period %gs`\n\n", ss.N, ss.ResyncPeriodSeconds)
		w("| window s | restart pass s | reconciles (passes) | API writes | apiserver's own lease writes | operator client writes | DDL statements | peak PG conns | RSS MiB peak | CPU s |\n")
		w("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
		w("| %.1f | %.1f | %d (%.1f) | **%d** | %d | %d | **%d** | %d | %.1f | %.1f |\n\n", ss.WindowSeconds, ss.InitialPassSeconds,
			ss.Reconciles, ss.Passes, ss.APIWrites, ss.HeartbeatWrites, ss.OperatorClientWrites, ss.DDLStatements,
			ss.PeakConnections, ss.Process.PeakRSSMiB, ss.Process.CPUSeconds)
	}

	if len(r.Targets) > 0 {
		w("## Targets (issue 5)\n\n| target | want | got | |\n|---|---|---|---|\n")
		for _, t := range r.Targets {
			w("| %s | %s | %s | %s |\n", t.Name, t.Want, t.Got, t.Status)
		}
		w("\n")
	}

	if s, _ := r.targetScenario(); s != nil && s.Orgforge.Operator != nil {
		d := s.Orgforge.Operator
		w("## Where the operator's time went: %s create\n\n", s.Name)
		rt, qw := d.CreateMetrics.ReconcileTime, d.CreateMetrics.QueueWait
		w("Reconciles %v; mean reconcile %.0f ms (%d), mean queue wait %.0f ms. Operator API requests by method: %v.\n\n",
			d.CreateMetrics.Reconciles, rt.MeanMs, rt.Count, qw.MeanMs, d.CreateMetrics.ClientRequests)
		if len(s.Orgforge.Create.CPUSeconds) > 0 {
			w("CPU seconds used during the create phase, by process (the machine has %d cores):\n\n", r.Machine.Cores)
			w("| process | orgforge side (%.1f s wall) | raw side (%.1f s wall) |\n|---|---:|---:|\n", s.Orgforge.Create.Seconds, s.Raw.Create.Seconds)
			procs := map[string]bool{}
			var to, tr float64
			for k, v := range s.Orgforge.Create.CPUSeconds {
				procs[k] = true
				to += v
			}
			for k, v := range s.Raw.Create.CPUSeconds {
				procs[k] = true
				tr += v
			}
			delete(procs, "other")
			to -= s.Orgforge.Create.CPUSeconds["other"]
			tr -= s.Raw.Create.CPUSeconds["other"]
			for _, k := range sortedKeys(procs) {
				w("| %s | %.1f | %.1f |\n", k, s.Orgforge.Create.CPUSeconds[k], s.Raw.Create.CPUSeconds[k])
			}
			w("| total of the stack | %.1f | %.1f |\n", to, tr)
			w("| other processes on the machine (noise) | %.1f | %.1f |\n\n", s.Orgforge.Create.CPUSeconds["other"], s.Raw.Create.CPUSeconds["other"])
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
			w("Raw delete steps: ")
			for i, k := range sortedKeys(s.Raw.Delete.Steps) {
				h := s.Raw.Delete.Steps[k]
				if i > 0 {
					w(", ")
				}
				w("%s %.0f ms", k, h.MeanMs)
			}
			w(" (mean per call).")
			if dm := d.DeleteMetrics; dm != nil {
				w(" orgforge delete: reconciles %v, mean reconcile %.0f ms.", dm.Reconciles, dm.ReconcileTime.MeanMs)
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
	w("Plots: [latency CDF](latency-cdf.png), [throughput vs concurrency](throughput-concurrency.png). Every figure: [results.json](results.json).\n")
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
