// Command bench measures orgforge against the raw baseline on the real local
// stack, and writes the figures as a Markdown table, a JSON file and PNG
// plots. `make bench` runs it; it is a program, not a test, and asserts
// nothing about timings.
//
// For every scenario (N organizations at a concurrency C) it runs two sides,
// each on a fresh stack (kube-apiserver and etcd, PostgreSQL with fsync on,
// versitygw):
//
//   - raw: a plain Go loop of C workers doing each organization's external
//     work straight through the project's own services, then the same loop
//     dropping it all again;
//   - orgforge: the operator binary as a separate process with
//     --max-concurrent-reconciles C, N Organizations applied at once, timed
//     until each is Ready, then deleted (deletionPolicy Delete) and timed
//     until each is gone.
//
// The two sides of a scenario run one after the other, and this machine's
// disk and CPU drift over minutes: whichever side lands in a slow minute
// loses, whatever its code does. So the headline scenario (the largest N at
// --concurrency) runs --rounds rounds, each a fresh pair of stacks, and
// alternates which side goes first (raw then orgforge, orgforge then raw,
// ...). Its orgs/s are pooled over the rounds, each side's organizations
// over its seconds, and its ratios are the pooled orgforge orgs/s over the
// pooled raw ones. Every other scenario runs one round.
//
// The headline's first round also profiles the operator and, after the
// creations, restarts it with a short resync period to count the
// Kubernetes writes and the DDL statements it makes while nothing changes.
// Later rounds only time the creations and the deletions.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	crlog "sigs.k8s.io/controller-runtime/pkg/log"

	tenancyv1alpha1 "github.com/orgforge/orgforge/api/v1alpha1"
)

// options are the command line's choices.
type options struct {
	manager string
	out     string
	work    string
	crdDir  string

	ns          []int
	concurrency int
	sweep       []int
	sweepN      int
	sweepDelete bool
	steadyN     int
	steady      time.Duration
	dbMaxConns  int
	appliers    int
	profile     bool
	profileN    int

	phaseTimeout  time.Duration
	timeout       time.Duration
	keepWork      bool
	operatorFirst bool
	rounds        int
	floor         bool
	// fleetN is the fleet scenario's N (fleet.go); 0 skips it.
	fleetN int
	// usageN is the usage scenario's N (usage.go); 0 skips it.
	usageN int
	// pgVolume gives PostgreSQL a filesystem of its own (volume.go);
	// pgBase is where its stacks' servers then keep their data.
	pgVolume bool
	pgBase   string
	// raw runs the raw side of each round.
	raw bool
	// deleteN times the N scenarios' deletions.
	deleteN bool
	// restartCompare is a second operator binary whose restarts the
	// steady state times against --manager's, restartCompareRounds each.
	restartCompare       string
	restartCompareRounds int
	// restartCompareResync also times, when set, each compared restart's
	// next pass with this resync period.
	restartCompareResync time.Duration
	// access is every Organization's spec.storage.access.
	access tenancyv1alpha1.StorageAccess
}

func parseFlags(args []string) (*options, error) {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	o := &options{}
	var ns, sweep, access string
	quick := fs.Bool("quick", false, "A small run for development: --n 20,50 --sweep 1,4 --sweep-n 50 --profile-n 50 --steady-resync 10s --fleet-n 50.")
	fs.StringVar(&o.manager, "manager", "bin/manager", "Operator binary (make build).")
	fs.StringVar(&o.out, "out", "bench/results/"+time.Now().UTC().Format("2006-01-02"), "Folder for results.md, results.json, the plots and the profiles.")
	fs.StringVar(&o.work, "work", "", "Folder for the stacks' data and the operator's logs; a temporary one, removed at the end, when empty.")
	fs.StringVar(&o.crdDir, "crd", "config/crd/bases", "Folder of the CRDs to install.")
	// The set is N=100, 500 and 1000. On this 2-core machine N=1000
	// is slow, mostly because versitygw's IAM slows down as it holds more
	// users (each call costs time in proportion to them), which a thousand
	// organizations feel on both sides and in the steady-state passes: one
	// N=1000 pair took 7 minutes, and with its rounds and the steady state
	// at N=1000 the set ran over twenty before PostgreSQL had a filesystem
	// of its own. The default set keeps the run under twenty minutes: N=100
	// and 500, the steady state at 500, the sweep at 500. --n 100,500,1000
	// adds N=1000 and moves the steady state there.
	fs.StringVar(&ns, "n", "100,500", "Numbers of Organizations applied at once, at --concurrency (the issue's set is 100,500,1000; 1000 added over 20 minutes when last timed).")
	fs.IntVar(&o.concurrency, "concurrency", 4, "--max-concurrent-reconciles of the N scenarios, and the raw loop's workers (4 is the operator's default).")
	fs.StringVar(&sweep, "sweep", "1,2,4,8", "Concurrencies of the sweep at --sweep-n; empty skips the sweep.")
	// The sweep reuses the N scenario of the same N for its --concurrency
	// point.
	fs.IntVar(&o.sweepN, "sweep-n", 500, "Organizations of each sweep point.")
	fs.BoolVar(&o.deleteN, "delete", true, "Time the deletion of the N scenarios; false drops their stacks as they are (at N=2000 a deletion takes minutes).")
	fs.BoolVar(&o.sweepDelete, "sweep-delete", false, "Also time deletion at each sweep point (adds several minutes).")
	fs.IntVar(&o.steadyN, "steady-n", 0, "Scenario whose N Ready Organizations are watched in steady state; 0 is the largest N, -1 skips it.")
	fs.DurationVar(&o.steady, "steady-resync", 15*time.Second, "--resync-period of the operator in the steady-state window, which lasts two of them.")
	fs.IntVar(&o.dbMaxConns, "database-max-connections", 4, "Connection cap of the operator and of the raw loop's service (4 is the operator's default).")
	fs.IntVar(&o.appliers, "appliers", 8, "Client goroutines that create and delete the Organizations.")
	fs.BoolVar(&o.profile, "profile", true, "Save CPU and heap profiles of the operator (pprof) in the --profile-n scenario.")
	fs.IntVar(&o.profileN, "profile-n", 500, "N of the scenario to profile; the largest N when no scenario has it.")
	fs.DurationVar(&o.phaseTimeout, "phase-timeout", 10*time.Minute, "Longest wait for one phase (all Ready, all gone, one raw loop).")
	fs.DurationVar(&o.timeout, "timeout", 90*time.Minute, "Longest the whole run may take (the issue's full set with N=1000 took about 45 minutes when last timed).")
	fs.BoolVar(&o.keepWork, "keep-work", false, "Keep --work (logs) at the end.")
	// One N=500 round with its floor side costs about 3.5 minutes (the
	// default set took 14 with two, at 6f56273); a third brings it to about
	// 17.5, a fourth past twenty.
	fs.IntVar(&o.rounds, "rounds", 2, "Rounds of the headline scenario (the largest N at --concurrency), each a fresh raw and orgforge pair, alternating which side runs first; its orgs/s and ratios are pooled over them. Each extra N=500 round adds about 3.5 minutes with its floor side, 2.8 without.")
	fs.BoolVar(&o.floor, "floor", true, "Run a third side in each round of the headline scenario, creations only: the raw loop plus the Kubernetes writes orgforge makes for each Organization, with no controller. It adds about 50 seconds to each round.")
	fs.BoolVar(&o.pgVolume, "postgres-volume", true, "Keep PostgreSQL's data on a filesystem of its own, an ext4 image with a journal on a loop device (needs root and mkfs.ext4); without it, or when it cannot be made, the data stays in --work.")
	fs.IntVar(&o.fleetN, "fleet-n", 500, "Organizations of the fleet scenario, applied at once against 3 DatabaseClusters on 3 more PostgreSQL servers, beside the single-cluster run of the same N (the N scenario's, or one of its own); 0 skips it.")
	fs.IntVar(&o.usageN, "usage-n", 0, "Organizations of the usage scenario, which times a pass of the operator reading every Organization's usage against a pass that reads none, with the SQL statements, S3 requests and CPU of each (about 5 minutes at 500); 0 skips it.")
	fs.BoolVar(&o.raw, "raw", true, "Run the raw side of each round; false runs the orgforge side alone (its memory, say). The pooled throughputs and ratios need both sides, so results.md then shows them as 0: read each side in results.json's rounds.")
	// versitygw keeps its IAM users in one file, so each IAM call costs
	// time in proportion to the users it holds: AccessKey at N=2000 spends
	// its minutes in versitygw. None makes no IAM user and no key, so N in
	// the thousands measures the operator.
	fs.StringVar(&access, "storage-access", string(tenancyv1alpha1.StorageAccessAccessKey), "spec.storage.access of every Organization: AccessKey (an IAM user and key each) or None (prefix only; the raw loop then skips the IAM user and key, and the floor side, which writes a key, cannot run).")
	fs.StringVar(&o.restartCompare, "restart-compare", "", "A second operator binary: after the steady state, the operator is restarted with --manager and with it in turns over the same Ready Organizations, each restart timed to its first pass (with its CPU), and the medians set side by side; empty skips it.")
	fs.IntVar(&o.restartCompareRounds, "restart-compare-rounds", 3, "Restarts of each binary with --restart-compare.")
	fs.DurationVar(&o.restartCompareResync, "restart-compare-resync", 0, "With --restart-compare, the restarted operators' --resync-period, and each restart also measures the operator's CPU over the N checks after its first pass (one resync pass); 0 leaves the default period and measures the first pass only.")
	fs.BoolVar(&o.operatorFirst, "operator-first", false, "Start with the orgforge side: in every one-round scenario and the headline's odd rounds (round 1, 3, ...) orgforge runs before raw.")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if *quick {
		ns, sweep, o.sweepN, o.profileN = "20,50", "1,4", 50, 50
		o.steady = 10 * time.Second
		// The N=50 scenario's orgforge side is the fleet's single-cluster
		// run.
		o.fleetN = 50
	}
	switch a := tenancyv1alpha1.StorageAccess(access); a {
	case tenancyv1alpha1.StorageAccessAccessKey, tenancyv1alpha1.StorageAccessNone:
		o.access = a
	default:
		return nil, fmt.Errorf("--storage-access must be AccessKey or None, got %q", access)
	}
	if o.access == tenancyv1alpha1.StorageAccessNone {
		o.floor = false
	}
	var err error
	if o.ns, err = parseInts(ns); err != nil {
		return nil, fmt.Errorf("--n: %w", err)
	}
	if o.sweep, err = parseInts(sweep); err != nil {
		return nil, fmt.Errorf("--sweep: %w", err)
	}
	for _, n := range append(slices.Clone(o.ns), o.sweepN) {
		if n < 1 || n > 9999 {
			return nil, fmt.Errorf("N must be between 1 and 9999, got %d", n)
		}
	}
	if o.usageN < 0 || o.usageN > 9999 {
		return nil, fmt.Errorf("--usage-n must be between 0 and 9999, got %d", o.usageN)
	}
	if o.fleetN < 0 || o.fleetN > 9999 {
		return nil, fmt.Errorf("--fleet-n must be between 0 and 9999, got %d", o.fleetN)
	}
	for _, c := range append(slices.Clone(o.sweep), o.concurrency) {
		if c < 1 || c > 64 {
			return nil, fmt.Errorf("concurrency must be between 1 and 64, got %d", c)
		}
	}
	if o.steady < 10*time.Second {
		return nil, fmt.Errorf("--steady-resync must be at least 10s (the operator's minimum)")
	}
	if o.dbMaxConns < 2 || o.dbMaxConns > 100 {
		return nil, fmt.Errorf("--database-max-connections must be between 2 and 100")
	}
	if o.appliers < 1 {
		return nil, fmt.Errorf("--appliers must be at least 1")
	}
	if o.rounds < 1 {
		return nil, fmt.Errorf("--rounds must be at least 1")
	}
	if o.restartCompare != "" {
		if o.restartCompare, err = filepath.Abs(o.restartCompare); err != nil {
			return nil, err
		}
		if o.restartCompareResync != 0 && o.restartCompareResync < 10*time.Second {
			return nil, fmt.Errorf("--restart-compare-resync must be at least 10s (the operator's minimum)")
		}
		if o.restartCompareRounds < 1 {
			return nil, fmt.Errorf("--restart-compare-rounds must be at least 1")
		}
	}
	if o.steadyN == 0 && len(o.ns) > 0 {
		o.steadyN = slices.Max(o.ns)
	}
	if !slices.Contains(o.ns, o.profileN) && len(o.ns) > 0 {
		o.profileN = slices.Max(o.ns)
	}
	return o, nil
}

func parseInts(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		v, err := strconv.Atoi(f)
		if err != nil {
			return nil, err
		}
		if !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	return out, nil
}

// scenario is one point of the run: N Organizations at concurrency C.
type scenario struct {
	Name        string
	N           int
	Concurrency int
	// Sweep marks a point of the concurrency sweep.
	Sweep bool
	// Delete times deletion; otherwise the stack is dropped as it is.
	Delete bool
	// Steady and Profile are done in the first round only.
	Steady  bool
	Profile bool
	// Floor adds the floor side (floor.go) to each round's creations.
	Floor bool
	// Rounds is how many side-by-side pairs the scenario runs.
	Rounds int
	// Round is the one being run, from 1; set by runScenario.
	Round int
}

// label names the scenario in logs and errors, with the round when it runs
// more than one.
func (sc scenario) label() string {
	if sc.Rounds > 1 {
		return fmt.Sprintf("%s round %d/%d", sc.Name, sc.Round, sc.Rounds)
	}
	return sc.Name
}

// stackDir is the folder, under --work, of one side's stack in the round
// being run.
func (sc scenario) stackDir(o *options, side string) string {
	if sc.Round > 1 {
		return filepath.Join(o.work, fmt.Sprintf("%s-r%d-%s", sc.Name, sc.Round, side))
	}
	return filepath.Join(o.work, sc.Name+"-"+side)
}

// plan lists the scenarios: the N scenarios first, then the sweep points
// that no N scenario already measured. The headline scenario, the largest
// N at --concurrency, runs --rounds rounds; every other scenario one.
func plan(o *options) []scenario {
	var out []scenario
	headline := 0
	if len(o.ns) > 0 {
		headline = slices.Max(o.ns)
	}
	for _, n := range o.ns {
		rounds := 1
		if n == headline {
			rounds = o.rounds
		}
		out = append(out, scenario{
			Name: fmt.Sprintf("n%d-c%d", n, o.concurrency), N: n, Concurrency: o.concurrency,
			Sweep: n == o.sweepN && slices.Contains(o.sweep, o.concurrency), Delete: o.deleteN,
			Steady: n == o.steadyN, Profile: o.profile && n == o.profileN, Rounds: rounds,
			Floor: o.floor && n == headline,
		})
	}
	for _, c := range o.sweep {
		if c == o.concurrency && slices.Contains(o.ns, o.sweepN) {
			continue
		}
		out = append(out, scenario{
			Name: fmt.Sprintf("n%d-c%d", o.sweepN, c), N: o.sweepN, Concurrency: c,
			Sweep: true, Delete: o.sweepDelete, Rounds: 1,
		})
	}
	return out
}

func main() {
	os.Exit(mainCode())
}

func mainCode() int {
	o, err := parseFlags(os.Args[1:])
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 2
	}
	// controller-runtime's client warns once when no logger is set.
	crlog.SetLogger(logr.Discard())
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	if err := run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 1
	}
	return 0
}

func run(ctx context.Context, o *options) error {
	bin, err := filepath.Abs(o.manager)
	if err != nil {
		return err
	}
	if _, err := os.Stat(bin); err != nil {
		return fmt.Errorf("operator binary: %w (run `make build` first)", err)
	}
	o.manager = bin
	if o.crdDir, err = filepath.Abs(o.crdDir); err != nil {
		return err
	}
	if err := os.MkdirAll(o.out, 0o755); err != nil {
		return err
	}
	if o.work == "" {
		if o.work, err = os.MkdirTemp("", "orgforge-bench-"); err != nil {
			return err
		}
		if !o.keepWork {
			defer func() { _ = os.RemoveAll(o.work) }()
		}
	} else if err := os.MkdirAll(o.work, 0o755); err != nil {
		return err
	}
	pgData := "the work folder"
	if o.pgVolume {
		v, err := mountVolume(o.work)
		if err != nil {
			logf("PostgreSQL's data stays in the work folder: no filesystem of its own: %v", err)
		} else {
			defer func() {
				if err := v.unmount(); err != nil {
					logf("Warning: %v", err)
				}
			}()
			o.pgBase, pgData = v.dir, v.describe()
		}
	}
	// Stacks' data removed in the background is gone before the run ends,
	// even one cut short (and before the volume is unmounted).
	defer discarded.Wait()

	scenarios := plan(o)
	res := &Results{
		Started: time.Now().UTC(),
		Settings: Settings{
			Ns: o.ns, Concurrency: o.concurrency, Sweep: o.sweep, SweepN: o.sweepN, SweepDelete: o.sweepDelete,
			SteadyN: o.steadyN, SteadyResyncSeconds: o.steady.Seconds(), DatabaseMaxConnections: o.dbMaxConns,
			Appliers: o.appliers, PostgresFsync: true, PostgresData: pgData, Rounds: o.rounds, OperatorFirst: o.operatorFirst,
			FleetN: o.fleetN, StorageAccess: string(o.access),
		},
		Machine: machineInfo(o.manager),
	}
	planned := scenarioNames(scenarios)
	if o.fleetN > 0 {
		planned = strings.TrimPrefix(planned+", "+fleetScenario(o).Name, ", ")
	}
	if o.usageN > 0 {
		planned = strings.TrimPrefix(planned+", "+usageScenario(o).Name, ", ")
	}
	logf("Plan: %s; results in %s; work folder %s", planned, o.out, o.work)
	start := time.Now()
	var failed []string
	for _, sc := range scenarios {
		if ctx.Err() != nil {
			failed = append(failed, sc.Name+": not run: "+ctx.Err().Error())
			continue
		}
		r := runScenario(ctx, o, sc, res)
		res.Scenarios = append(res.Scenarios, r)
		failed = append(failed, r.Errors...)
		for _, w := range r.Warnings {
			logf("Warning: %s", w)
		}
		// Written after every scenario, so that a run cut short still
		// leaves its figures.
		if err := writeResults(o.out, res); err != nil {
			return err
		}
	}
	// The fleet scenario runs after the N scenarios, so that it can take
	// the N scenario of its N as its single-cluster run. Each of these
	// runs only when its N is set, and returns its errors.
	extras := []struct {
		n   int
		sc  scenario
		run func() []string
	}{
		{o.fleetN, fleetScenario(o), func() []string { res.Fleet = runFleet(ctx, o, res); return res.Fleet.Errors }},
		{o.usageN, usageScenario(o), func() []string { res.Usage = runUsage(ctx, o, res); return res.Usage.Errors }},
	}
	for _, x := range extras {
		switch {
		case x.n == 0:
			continue
		case ctx.Err() != nil:
			failed = append(failed, x.sc.Name+": not run: "+ctx.Err().Error())
			continue
		}
		failed = append(failed, x.run()...)
		if err := writeResults(o.out, res); err != nil {
			return err
		}
	}
	// The last stack's data is still being removed; the run lasts until
	// it is gone.
	discarded.Wait()
	res.Finished = time.Now().UTC()
	res.TotalSeconds = time.Since(start).Seconds()
	res.Targets = evaluateTargets(res)
	if err := writeResults(o.out, res); err != nil {
		return err
	}
	if err := writePlots(o.out, res); err != nil {
		return fmt.Errorf("plots: %w", err)
	}
	logf("Done in %s: %s", time.Since(start).Round(time.Second), filepath.Join(o.out, "results.md"))
	if len(failed) > 0 {
		return fmt.Errorf("%d problem(s):\n  %s", len(failed), strings.Join(failed, "\n  "))
	}
	return nil
}

func scenarioNames(scs []scenario) string {
	names := make([]string, len(scs))
	for i, s := range scs {
		names[i] = s.Name
		if s.Rounds > 1 {
			names[i] += fmt.Sprintf(" (%d rounds)", s.Rounds)
		}
	}
	return strings.Join(names, ", ")
}

var logStart = time.Now()

// logf prints a progress line with the time since the start.
func logf(format string, args ...any) {
	d := time.Since(logStart).Round(time.Second)
	fmt.Printf("[%02d:%02d] %s\n", int(d.Minutes()), int(d.Seconds())%60, fmt.Sprintf(format, args...))
}
