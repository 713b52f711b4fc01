package main

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/orgforge/orgforge/internal/storage"
	"github.com/orgforge/orgforge/internal/testutil"
)

// Sides of a scenario, as Round.First names them.
const (
	sideRaw      = "raw"
	sideOrgforge = "orgforge"
)

// firstSide is the side that runs first in round k (from 1): raw in odd
// rounds and orgforge in even ones, the other way round with
// --operator-first. Alternating (ABBA) gives each side the early and the
// late slot as often, so a drift of the machine's speed over the minutes
// of a scenario weighs on both sides alike.
func firstSide(k int, operatorFirst bool) string {
	if (k%2 == 1) != operatorFirst {
		return sideRaw
	}
	return sideOrgforge
}

// runScenario runs the scenario's rounds. Each round runs both sides, each
// on its own fresh stack, in the order firstSide gives; only the first
// round profiles the operator and watches the steady state. The ratios are
// pooled over the rounds.
func runScenario(ctx context.Context, o *options, sc scenario, res *Results) ScenarioResult {
	r := ScenarioResult{Name: sc.Name, N: sc.N, Concurrency: sc.Concurrency, Sweep: sc.Sweep}
	for k := 1; k <= max(sc.Rounds, 1); k++ {
		rsc := sc
		rsc.Round = k
		if k > 1 {
			rsc.Profile, rsc.Steady = false, false
		}
		if ctx.Err() != nil {
			r.Errors = append(r.Errors, rsc.label()+": not run: "+ctx.Err().Error())
			break
		}
		round := runRound(ctx, o, rsc, res, &r)
		r.Rounds = append(r.Rounds, round)
		if sc.Rounds > 1 {
			logf("%s: create ratio %.2f, delete ratio %.2f (%s first)", rsc.label(), round.CreateRatio, round.DeleteRatio, round.First)
		}
		if round.Floor != nil {
			logf("%s: floor over raw %.2f, orgforge over floor %.2f", rsc.label(), round.FloorRatio,
				ratio(round.Orgforge.Create.OrgsPerSecond, round.Floor.Create.OrgsPerSecond))
		}
	}
	r.Pooled = pool(r.Rounds)
	r.CreateRatio = r.Pooled.Create.Ratio
	if r.Pooled.Delete != nil {
		r.DeleteRatio = r.Pooled.Delete.Ratio
	}
	for _, round := range r.Rounds {
		name := sc.Name
		if len(r.Rounds) > 1 {
			name = fmt.Sprintf("%s round %d", sc.Name, round.Round)
		}
		// A raw or floor organization that failed is a finding about the
		// services, not a failure of the measurement: it is reported, and
		// the run goes on.
		phases := map[string]*Phase{"raw create": &round.Raw.Create, "raw delete": round.Raw.Delete}
		if round.Floor != nil {
			phases["floor create"] = &round.Floor.Create
		}
		for what, p := range phases {
			if p != nil && p.Completed < p.N {
				r.Warnings = append(r.Warnings, fmt.Sprintf("%s %s: %d of %d failed: %s", name, what, p.N-p.Completed, p.N, strings.Join(p.Errors, "; ")))
			}
		}
		for what, p := range map[string]*Phase{"orgforge create": &round.Orgforge.Create, "orgforge delete": round.Orgforge.Delete} {
			if p != nil && p.Completed < p.N {
				r.Errors = append(r.Errors, fmt.Sprintf("%s %s: only %d of %d completed", name, what, p.Completed, p.N))
			}
		}
		for side, l := range map[string]*Leftovers{sideRaw: round.Raw.Leftovers, sideOrgforge: round.Orgforge.Leftovers} {
			if l != nil && l.total() > 0 {
				r.Errors = append(r.Errors, fmt.Sprintf("%s %s: deletion left %s", name, side, leftovers(l)))
			}
		}
	}
	if len(r.Rounds) > 1 {
		logf("%s: pooled over %d rounds: create ratio %.2f, delete ratio %.2f", sc.Name, len(r.Rounds), r.CreateRatio, r.DeleteRatio)
	} else {
		logf("%s: create ratio %.2f, delete ratio %.2f", sc.Name, r.CreateRatio, r.DeleteRatio)
	}
	return r
}

// runRound runs round sc.Round of the scenario into a Round. The first
// round's sides, with all their detail, and its steady state also go to r;
// every round's errors do.
func runRound(ctx context.Context, o *options, sc scenario, res *Results, r *ScenarioResult) Round {
	// The sides fill a ScenarioResult of their own: the operator side reads
	// the raw side's creation time (to size its profile) from it.
	var sides ScenarioResult
	raw := func() {
		if !o.raw {
			return
		}
		if err := runRawSide(ctx, o, sc, &sides, res); err != nil {
			r.Errors = append(r.Errors, fmt.Sprintf("%s raw: %v", sc.label(), err))
		}
	}
	operator := func() {
		if err := runOperatorSide(ctx, o, sc, &sides, res); err != nil {
			r.Errors = append(r.Errors, fmt.Sprintf("%s orgforge: %v", sc.label(), err))
		}
	}
	// The floor side, when the scenario has one, runs between the two: the
	// middle slot, which a steady drift of the machine's speed over the
	// round weighs as it weighs the mean of the two ends.
	floor := func() {
		if !sc.Floor {
			return
		}
		if err := runFloorSide(ctx, o, sc, &sides, res); err != nil {
			r.Errors = append(r.Errors, fmt.Sprintf("%s floor: %v", sc.label(), err))
		}
	}
	first := firstSide(sc.Round, o.operatorFirst)
	if first == sideRaw {
		raw()
		floor()
		operator()
	} else {
		operator()
		floor()
		raw()
	}
	if sc.Round == 1 {
		r.Raw, r.Orgforge, r.Floor, r.Steady = sides.Raw, sides.Orgforge, sides.Floor, sides.Steady
	}
	return newRound(sc.Round, first, sides)
}

// newRound is round k of the sides that ran, first first, with its ratios.
func newRound(k int, first string, sides ScenarioResult) Round {
	round := Round{Round: k, First: first, Raw: sides.Raw, Orgforge: sides.Orgforge, Floor: sides.Floor}
	// The operator's detail is the first round's, kept once in
	// ScenarioResult.Orgforge.
	round.Orgforge.Operator = nil
	round.CreateRatio = ratio(round.Orgforge.Create.OrgsPerSecond, round.Raw.Create.OrgsPerSecond)
	if round.Orgforge.Delete != nil && round.Raw.Delete != nil {
		round.DeleteRatio = ratio(round.Orgforge.Delete.OrgsPerSecond, round.Raw.Delete.OrgsPerSecond)
	}
	if round.Floor != nil {
		round.FloorRatio = ratio(round.Floor.Create.OrgsPerSecond, round.Raw.Create.OrgsPerSecond)
	}
	return round
}

func (e *env) noteVersions(ctx context.Context, res *Results) {
	pg, kube := e.serverVersions(ctx)
	if res.Machine.PostgresVersion == "" {
		res.Machine.PostgresVersion = pg
	}
	if res.Machine.KubernetesVersion == "" && kube != "" {
		res.Machine.KubernetesVersion = kube
	}
}

func runRawSide(ctx context.Context, o *options, sc scenario, r *ScenarioResult, res *Results) error {
	e, svc, err := startLoopStack(ctx, o, sc, sideRaw, res)
	if err != nil {
		return err
	}
	defer func() { svc.close(); _ = e.close() }()

	names := orgNames("raw", sc)
	orgs := make([]rawOrg, sc.N)
	for i := range orgs {
		if orgs[i], err = newRawOrg(names[i]); err != nil {
			return err
		}
	}
	phase := func(work func(context.Context, rawOrg) error) Phase {
		pctx, cancel := context.WithTimeout(ctx, o.phaseTimeout)
		defer cancel()
		mark := e.log.mark()
		e.sampler.reset()
		svc.steps.take()
		cpu := takeCPU(0)
		lr := workerLoop(pctx, sc.N, sc.Concurrency, func(ctx context.Context, i int) error { return work(ctx, orgs[i]) })
		p := loopPhase(names, lr)
		p.Steps = svc.steps.take()
		p.CPUSeconds = takeCPU(0).since(cpu)
		p.PeakConnections = e.sampler.peakOf(appRaw)
		p.Sessions = e.sampler.sessionsOf(appRaw)
		if ddl, err := e.log.ddlSince(mark); err == nil {
			p.DDLStatements = ddl[appRaw]
			p.DDLPerOrg = round(float64(p.DDLStatements)/float64(max(p.Completed, 1)), 2)
		}
		return p
	}

	logf("%s: raw create, %d workers", sc.label(), sc.Concurrency)
	r.Raw.Create = phase(svc.provision)
	logf("%s: raw created %d/%d in %.1fs (%.1f/s)", sc.label(), r.Raw.Create.Completed, sc.N, r.Raw.Create.Seconds, r.Raw.Create.OrgsPerSecond)
	if !sc.Delete {
		return nil
	}
	logf("%s: raw delete", sc.label())
	p := phase(svc.deprovision)
	r.Raw.Delete = &p
	logf("%s: raw deleted %d/%d in %.1fs (%.1f/s)", sc.label(), p.Completed, sc.N, p.Seconds, p.OrgsPerSecond)
	l, err := e.leftovers(ctx)
	if err != nil {
		return err
	}
	r.Raw.Leftovers = &l
	return nil
}

// startLoopStack starts a side's fresh stack, the control plane too for
// the floor side, and the raw loop's services on it.
func startLoopStack(ctx context.Context, o *options, sc scenario, side string, res *Results) (*env, *rawServices, error) {
	e, err := startEnv(ctx, o, sc.stackDir(o, side), side == sideFloor)
	if err != nil {
		return nil, nil, fmt.Errorf("starting the stack: %w", err)
	}
	e.noteVersions(ctx, res)
	svc, err := newRawServices(ctx, e.st, o.dbMaxConns, o.access)
	if err != nil {
		_ = e.close()
		return nil, nil, err
	}
	return e, svc, nil
}

// startOperatorEnv starts the orgforge side's fresh stack in dir, its
// default DatabaseCluster with room for sc.N organizations, and the
// operator that creates them, with the flags it returns.
func startOperatorEnv(ctx context.Context, o *options, sc scenario, dir string, res *Results) (*env, *operator, operatorFlags, error) {
	flags := operatorFlags{maxConcurrentReconciles: sc.Concurrency, databaseMaxConnections: o.dbMaxConns}
	e, err := startEnv(ctx, o, dir, true)
	if err != nil {
		return nil, nil, flags, fmt.Errorf("starting the stack: %w", err)
	}
	e.noteVersions(ctx, res)
	if err := ensureDefaultCluster(ctx, e.kube, int32(sc.N)*poolMaxConnections()); err != nil {
		_ = e.close()
		return nil, nil, flags, err
	}
	op, err := startOperator(ctx, o.manager, e.st, dir, "operator-create", flags)
	if err != nil {
		_ = e.close()
		return nil, nil, flags, err
	}
	return e, op, flags, nil
}

func runOperatorSide(ctx context.Context, o *options, sc scenario, r *ScenarioResult, res *Results) (err error) {
	dir := sc.stackDir(o, sideOrgforge)
	e, op, _, err := startOperatorEnv(ctx, o, sc, dir, res)
	if err != nil {
		return err
	}
	defer func() { _ = e.close() }()
	// op is replaced when the steady state restarts the operator; whichever
	// runs at the end is stopped.
	defer func() { op.stop() }()
	detail := &OperatorDetail{Args: op.args}
	r.Orgforge.Operator = detail

	tctx, stopTracker := context.WithCancel(ctx)
	t := startTracker(tctx, e.kube, sc.Name)
	defer func() { stopTracker(); <-t.done }()

	names := orgNames("org", sc)

	// Create.
	apiBefore, err := e.scrapeAPIServer(ctx)
	if err != nil {
		return fmt.Errorf("apiserver metrics: %w", err)
	}
	mBefore, err := op.scrape(ctx)
	if err != nil {
		return fmt.Errorf("operator metrics: %w", err)
	}
	mark := e.log.mark()
	e.sampler.reset()
	profileDone := make(chan struct{})
	if sc.Profile {
		// The raw side's time is the best guess of how long this takes.
		secs := int(min(max(r.Raw.Create.Seconds, 5), 120))
		path := filepath.Join(o.out, "profiles", sc.Name+"-create-cpu.pprof")
		apiPath := filepath.Join(o.out, "profiles", sc.Name+"-create-apiserver-cpu.pprof")
		go func() {
			defer close(profileDone)
			if err := mkdirFor(path); err != nil {
				return
			}
			// The apiserver's profile is taken over the same seconds, to
			// show what the Kubernetes side of a creation costs it.
			apiDone := make(chan error, 1)
			go func() { apiDone <- e.profileAPIServer(ctx, secs, apiPath) }()
			if err := op.profile(ctx, fmt.Sprintf("profile?seconds=%d", secs), path); err == nil {
				detail.Profiles = append(detail.Profiles, relTo(o.out, path))
			}
			if err := <-apiDone; err == nil {
				detail.Profiles = append(detail.Profiles, relTo(o.out, apiPath))
			}
		}()
	} else {
		close(profileDone)
	}
	logf("%s: orgforge create, applying %d Organizations", sc.label(), sc.N)
	cpu := takeCPU(op.Cmd.Process.Pid)
	applied, applyErrs := applyAll(ctx, e.kube, names, sc.Name, o.appliers, t, testutil.WithStorageAccess(o.access))
	missing := t.waitAll(ctx, names, readyMap, o.phaseTimeout)
	r.Orgforge.Create = newPhase(sc.N, applied, t.times(readyMap))
	r.Orgforge.Create.CPUSeconds = takeCPU(op.Cmd.Process.Pid).since(cpu)
	r.Orgforge.Create.PeakConnections = e.sampler.peakOf(appOperator)
	r.Orgforge.Create.Sessions = e.sampler.sessionsOf(appOperator)
	for _, err := range firstErrors(applyErrs, 5) {
		r.Orgforge.Create.Errors = append(r.Orgforge.Create.Errors, err.Error())
	}
	if len(missing) > 0 {
		r.Orgforge.Create.Errors = append(r.Orgforge.Create.Errors, fmt.Sprintf("%d not Ready after %s, e.g. %s", len(missing), o.phaseTimeout, missing[0]))
	}
	if sc.Floor && len(missing) == 0 {
		if r.Orgforge.Shape, err = shapeOf(ctx, e.kube, names[0]); err != nil {
			r.Orgforge.Create.Errors = append(r.Orgforge.Create.Errors, err.Error())
		}
	}
	if detail.CreateProcess, err = op.stats(); err != nil {
		return err
	}
	if ddl, err := e.log.ddlSince(mark); err == nil {
		r.Orgforge.Create.DDLStatements = ddl[appOperator]
		r.Orgforge.Create.DDLPerOrg = round(float64(ddl[appOperator])/float64(max(r.Orgforge.Create.Completed, 1)), 2)
	}
	mAfter, err := op.scrape(ctx)
	if err != nil {
		return fmt.Errorf("operator metrics: %w", err)
	}
	detail.CreateMetrics = operatorMetrics(mAfter).delta(operatorMetrics(mBefore))
	apiAfter, err := e.scrapeAPIServer(ctx)
	if err != nil {
		return fmt.Errorf("apiserver metrics: %w", err)
	}
	detail.CreateAPIWrites = writesDelta(apiWrites(apiBefore), apiWrites(apiAfter))
	detail.CreateAPILatency = latencyDelta(apiLatency(apiBefore), apiLatency(apiAfter))
	detail.CreateAPIWritesPerOrg = writesPerOrg(detail.CreateAPIWrites, "POST tenancy.orgforge.io/organizations", sc.N)
	detail.PeakRSSMiB = detail.CreateProcess.PeakRSSMiB
	c := r.Orgforge.Create
	logf("%s: orgforge Ready %d/%d in %.1fs (%.1f/s), p50 %.2fs p99 %.2fs, peak conns %d, RSS %.1f MiB",
		sc.label(), c.Completed, sc.N, c.Seconds, c.OrgsPerSecond, c.P50Seconds, c.P99Seconds, c.PeakConnections, detail.PeakRSSMiB)
	<-profileDone
	if len(missing) == 0 {
		if m, err := op.readyMemory(ctx); err == nil {
			detail.ReadyMemory = &m
			logf("%s: orgforge at rest after a GC: RSS %.1f MiB, heap in use %.1f MiB, heap alloc %.1f MiB",
				sc.label(), m.RSSMiB, m.HeapInuseMiB, m.HeapAllocMiB)
		} else {
			logf("%s: orgforge memory at rest: %v", sc.label(), err)
		}
	}
	if sc.Profile {
		path := filepath.Join(o.out, "profiles", sc.Name+"-ready-heap.pprof")
		if err := op.profile(ctx, "heap", path); err == nil {
			detail.Profiles = append(detail.Profiles, relTo(o.out, path))
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%d Organizations not Ready after %s (operator log %s)", len(missing), o.phaseTimeout, op.LogPath)
	}

	if sc.Steady {
		ss, next, err := steadyState(ctx, o, sc, e, op, dir)
		if next != nil {
			op = next
		}
		// What the window measured is kept when what follows it (the
		// compared restarts, the restart before deleting) fails.
		r.Steady = ss
		if err != nil {
			return fmt.Errorf("steady state: %w", err)
		}
		detail.PeakRSSMiB = max(detail.PeakRSSMiB, ss.Process.PeakRSSMiB)
	}
	if !sc.Delete {
		if st, err := op.stats(); err == nil {
			detail.PeakRSSMiB = max(detail.PeakRSSMiB, st.PeakRSSMiB)
		}
		return nil
	}

	// Delete.
	if mBefore, err = op.scrape(ctx); err != nil {
		return fmt.Errorf("operator metrics: %w", err)
	}
	if apiBefore, err = e.scrapeAPIServer(ctx); err != nil {
		return fmt.Errorf("apiserver metrics: %w", err)
	}
	before, err := op.stats()
	if err != nil {
		return err
	}
	mark = e.log.mark()
	e.sampler.reset()
	logf("%s: orgforge delete", sc.label())
	cpu = takeCPU(op.Cmd.Process.Pid)
	deleted, deleteErrs := deleteAll(ctx, e.kube, names, o.appliers)
	missing = t.waitAll(ctx, names, goneMap, o.phaseTimeout)
	dp := newPhase(sc.N, deleted, t.times(goneMap))
	dp.CPUSeconds = takeCPU(op.Cmd.Process.Pid).since(cpu)
	dp.PeakConnections = e.sampler.peakOf(appOperator)
	dp.Sessions = e.sampler.sessionsOf(appOperator)
	for _, err := range firstErrors(deleteErrs, 5) {
		dp.Errors = append(dp.Errors, err.Error())
	}
	if len(missing) > 0 {
		dp.Errors = append(dp.Errors, fmt.Sprintf("%d not gone after %s, e.g. %s", len(missing), o.phaseTimeout, missing[0]))
	}
	if ddl, err := e.log.ddlSince(mark); err == nil {
		dp.DDLStatements = ddl[appOperator]
		dp.DDLPerOrg = round(float64(dp.DDLStatements)/float64(max(dp.Completed, 1)), 2)
	}
	r.Orgforge.Delete = &dp
	after, err := op.stats()
	if err != nil {
		return err
	}
	detail.DeleteCPUSeconds = round(after.CPUSeconds-before.CPUSeconds, 2)
	detail.PeakRSSMiB = max(detail.PeakRSSMiB, after.PeakRSSMiB)
	if mAfter, err = op.scrape(ctx); err == nil {
		dm := operatorMetrics(mAfter).delta(operatorMetrics(mBefore))
		detail.DeleteMetrics = &dm
	}
	if apiAfter, err = e.scrapeAPIServer(ctx); err == nil {
		detail.DeleteAPIWrites = writesDelta(apiWrites(apiBefore), apiWrites(apiAfter))
		detail.DeleteAPIWritesPerOrg = writesPerOrg(detail.DeleteAPIWrites, "DELETE tenancy.orgforge.io/organizations", sc.N)
	}
	logf("%s: orgforge deleted %d/%d in %.1fs (%.1f/s)", sc.label(), dp.Completed, sc.N, dp.Seconds, dp.OrgsPerSecond)
	l, err := e.leftovers(ctx)
	if err != nil {
		return err
	}
	r.Orgforge.Leftovers = &l
	if len(missing) > 0 {
		return fmt.Errorf("%d Organizations not gone after %s (operator log %s)", len(missing), o.phaseTimeout, op.LogPath)
	}
	return nil
}

// steadyState restarts the operator with a short resync period over the N
// Ready Organizations and counts, while nothing changes, the Kubernetes
// writes and DDL statements: the restart's pass over every Organization
// and two resync passes. When the scenario deletes, it then restarts the
// operator with its defaults again, waits for that restart's pass, and
// returns it for the deletion.
func steadyState(ctx context.Context, o *options, sc scenario, e *env, current *operator, dir string) (*SteadyResult, *operator, error) {
	ss := &SteadyResult{N: sc.N, ResyncPeriodSeconds: o.steady.Seconds()}
	current.stop()
	apiBefore, err := e.scrapeAPIServer(ctx)
	if err != nil {
		return nil, nil, err
	}
	restoreLog, err := e.logEveryStatement(ctx)
	if err != nil {
		return nil, nil, err
	}
	defer restoreLog()
	mark := e.log.mark()
	e.sampler.reset()
	start := time.Now()
	logf("%s: steady state, operator restarted with --resync-period %s", sc.label(), o.steady)
	op, err := startOperator(ctx, o.manager, e.st, dir, "operator-steady", operatorFlags{
		maxConcurrentReconciles: sc.Concurrency, databaseMaxConnections: o.dbMaxConns, resyncPeriod: o.steady,
	})
	if err != nil {
		return nil, nil, err
	}
	spread := sampleSpread(ctx, op, start)
	defer spread.cancel()
	profile := func() string { return "" }
	if sc.Profile {
		profile = profileRestart(ctx, o, sc, op)
	}
	// The restart's pass, then two resync periods' worth of passes.
	passDeadline := time.Now().Add(o.phaseTimeout)
	if err := spread.waitChecks(ctx, op, sc.N, passDeadline); err != nil {
		return nil, op, fmt.Errorf("restart pass: %w", err)
	}
	ss.InitialPassSeconds = round(time.Since(start).Seconds(), 2)
	if ss.Restart, err = restartFigures(ctx, o, sc, e, op, apiWrites(apiBefore), mark, spread.ready, spread.reached(sc.N)); err != nil {
		return nil, op, fmt.Errorf("restart pass: %w", err)
	}
	rs := ss.Restart
	logf("%s: restart: ready in %.1fs, first pass done in %.1fs (%.1f checks/s); %d Kubernetes writes, %d DDL, %.3f SQL and %.2f AWS requests per organization",
		sc.label(), rs.ReadySeconds, rs.FirstPassSeconds, rs.ChecksPerSecond, rs.APIWrites, rs.DDLStatements, rs.SQLPerOrgPass, rs.AWS.PerOrgPerPass)
	// Checks fall up to 1.1 periods apart after the pass (Spread).
	deadline := time.Now().Add(2*o.steady + o.steady/5 + 2*time.Duration(ss.InitialPassSeconds*float64(time.Second)) + 30*time.Second)
	_ = spread.waitChecks(ctx, op, 3*sc.N, deadline)
	ss.WindowSeconds = round(time.Since(start).Seconds(), 1)
	ss.Spread = spread.finish(o.steady, sc.N)
	logf("%s: steady state: %s", sc.label(), spreadSummary(ss.Spread))

	fams, err := op.scrape(ctx)
	if err != nil {
		return nil, op, err
	}
	ss.Metrics = operatorMetrics(fams)
	ss.Reconciles = sumInts(ss.Metrics.Reconciles)
	ss.Checks = int(ss.Metrics.Steps["placement"].Count)
	ss.Passes = round(float64(ss.Checks)/float64(sc.N), 2)
	ss.AWS = awsCalls(fams, sc.N, ss.Passes)
	ss.OperatorClientWrites = writeMethods(ss.Metrics.ClientRequests)
	apiAfter, err := e.scrapeAPIServer(ctx)
	if err != nil {
		return nil, op, err
	}
	ss.APIWritesByKind = writesDelta(apiWrites(apiBefore), apiWrites(apiAfter))
	ss.APIWrites, ss.HeartbeatWrites = splitHeartbeat(ss.APIWritesByKind)
	if counts, err := e.log.sqlSince(mark); err == nil {
		ss.SQLCost = sqlCost(counts, appOperator, ss.Checks)
		ss.DDLStatements = ss.SQLByKind["DDL"]
	} else {
		return nil, op, err
	}
	restoreLog()
	ss.Restart.Profile = profile()
	ss.PeakConnections = e.sampler.peakOf(appOperator)
	if ss.Process, err = op.stats(); err != nil {
		return nil, op, err
	}
	logf("%s: steady state over %.0fs: %d reconciles (%.1f passes), %d API writes (+%d apiserver lease), %d DDL, %d SQL statements (%.3f per org per pass)",
		sc.label(), ss.WindowSeconds, ss.Reconciles, ss.Passes, ss.APIWrites, ss.HeartbeatWrites, ss.DDLStatements,
		ss.SQLStatements, ss.SQLPerOrgPass)
	op.stop()
	if o.restartCompare != "" {
		ss.Compare, err = compareRestarts(ctx, o, sc, e, dir)
		if err != nil {
			return ss, nil, fmt.Errorf("restarts compared: %w", err)
		}
	}
	if !sc.Delete {
		// Nothing more to do on this stack: no operator for a deletion.
		return ss, op, nil
	}

	next, err := startOperator(ctx, o.manager, e.st, dir, "operator-delete", operatorFlags{
		maxConcurrentReconciles: sc.Concurrency, databaseMaxConnections: o.dbMaxConns,
	})
	if err != nil {
		return ss, nil, err
	}
	if err := waitReconciles(ctx, next, sc.N, time.Now().Add(o.phaseTimeout)); err != nil {
		return ss, next, fmt.Errorf("restart pass before deleting: %w", err)
	}
	return ss, next, nil
}

// waitReconciles waits until the operator has finished n reconciles.
func waitReconciles(ctx context.Context, op *operator, n int, deadline time.Time) error {
	return waitCount(ctx, op, n, "reconciles", deadline, func() (int, bool) {
		fams, err := op.scrape(ctx)
		if err != nil {
			return 0, false
		}
		return sumInts(operatorMetrics(fams).Reconciles), true
	})
}

// waitCount polls count until it reaches n, the operator exits, or the
// deadline passes; what names the count in the error.
func waitCount(ctx context.Context, op *operator, n int, what string, deadline time.Time, count func() (int, bool)) error {
	for {
		if got, ok := count(); ok && got >= n {
			return nil
		}
		if op.Exited() {
			return errors.New("operator exited:\n" + op.Tail(20))
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("fewer than %d %s by the deadline", n, what)
		}
		sleepCtx(ctx, 250*time.Millisecond)
	}
}

// leftovers counts what organizations left outside Kubernetes: databases
// and roles named org_*, IAM users under orgforge's path, objects under
// orgs/.
func (e *env) leftovers(ctx context.Context) (Leftovers, error) {
	var l Leftovers
	err := e.su.QueryRow(ctx, `SELECT (SELECT count(*) FROM pg_database WHERE datname LIKE 'org\_%'),
		(SELECT count(*) FROM pg_roles WHERE rolname LIKE 'org\_%')`).Scan(&l.Databases, &l.Roles)
	if err != nil {
		return l, fmt.Errorf("counting databases: %w", err)
	}
	objects := s3.NewListObjectsV2Paginator(e.st.S3.RootClient(), &s3.ListObjectsV2Input{
		Bucket: aws.String(e.st.S3.Bucket), Prefix: aws.String("orgs/"),
	})
	for objects.HasMorePages() {
		page, err := objects.NextPage(ctx)
		if err != nil {
			return l, fmt.Errorf("listing objects: %w", err)
		}
		l.Objects += len(page.Contents)
	}
	iamClient := iam.New(iam.Options{
		Region:       e.st.S3.Region,
		BaseEndpoint: aws.String(e.st.S3.IAMEndpoint),
		Credentials:  credentials.NewStaticCredentialsProvider(e.st.S3.AccessKey, e.st.S3.SecretKey, ""),
	})
	users := iam.NewListUsersPaginator(iamClient, &iam.ListUsersInput{PathPrefix: aws.String(storage.DefaultIAMPath)})
	for users.HasMorePages() {
		page, err := users.NextPage(ctx)
		if err != nil {
			return l, fmt.Errorf("listing IAM users: %w", err)
		}
		l.IAMUsers += len(page.Users)
	}
	return l, nil
}

func firstErrors(errs []error, n int) []error {
	if len(errs) > n {
		return append(errs[:n:n], fmt.Errorf("and %d more errors", len(errs)-n))
	}
	return errs
}
