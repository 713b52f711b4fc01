package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/orgforge/orgforge/internal/devstack"
	"github.com/orgforge/orgforge/internal/testutil"
)

// operator is the orgforge binary running as its own process against a
// stack, as it runs in a cluster.
type operator struct {
	*testutil.Process
	args    []string
	metrics string
	probe   string
	pprof   string
}

// operatorFlags are the settings the bench changes; everything else is the
// operator's default.
type operatorFlags struct {
	maxConcurrentReconciles int
	databaseMaxConnections  int
	// resyncPeriod is left at the default when zero.
	resyncPeriod time.Duration
	// extra are more flags, after the stack's: a flag given again there
	// overrides the stack's value.
	extra []string
}

// startOperator runs bin against st with flags, its log in dir, and waits
// until its readyz passes (every service reachable).
func startOperator(ctx context.Context, bin string, st *devstack.Stack, dir, name string, f operatorFlags) (*operator, error) {
	services, err := st.OperatorFlags(dir)
	if err != nil {
		return nil, err
	}
	var addrs [3]string
	for i := range addrs {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		addrs[i] = "127.0.0.1:" + strconv.Itoa(port)
	}
	o := &operator{metrics: addrs[0], probe: addrs[1], pprof: addrs[2]}
	o.args = []string{
		"--kubeconfig", st.Kube.KubeconfigPath,
		"--leader-elect=false",
		"--metrics-bind-address", o.metrics,
		"--health-probe-bind-address", o.probe,
		"--pprof-bind-address", o.pprof,
		"--database-max-connections", strconv.Itoa(f.databaseMaxConnections),
		"--max-concurrent-reconciles", strconv.Itoa(f.maxConcurrentReconciles),
	}
	o.args = append(o.args, services...)
	if f.resyncPeriod > 0 {
		o.args = append(o.args, "--resync-period", f.resyncPeriod.String())
	}
	o.args = append(o.args, f.extra...)
	if o.Process, err = testutil.StartProcess(exec.Command(bin, o.args...), filepath.Join(dir, name+".log")); err != nil {
		return nil, err
	}
	if err := o.waitReady(ctx, time.Minute); err != nil {
		o.stop()
		return nil, err
	}
	return o, nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer func() { _ = l.Close() }()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func (o *operator) waitReady(ctx context.Context, timeout time.Duration) error {
	_, _, err := testutil.Poll(ctx, 100*time.Millisecond, timeout, func() (bool, string) {
		return o.Exited() || httpGet(ctx, "http://"+o.probe+"/readyz", nil) == nil, ""
	})
	switch {
	case o.Exited():
		return fmt.Errorf("operator exited (%v):\n%s", o.Err(), o.Tail(20))
	case err != nil:
		return fmt.Errorf("operator not ready after %s:\n%s", timeout, o.Tail(20))
	}
	return nil
}

// stop asks the operator to end, as a Deployment's rollout would, and kills
// it if it has not within 20s.
func (o *operator) stop() { o.Stop(20 * time.Second) }

// procStats is what /proc says of the operator process.
type procStats struct {
	PeakRSSMiB float64 `json:"peakRssMiB"`
	RSSMiB     float64 `json:"rssMiB"`
	CPUSeconds float64 `json:"cpuSeconds"`
}

// stats reads VmHWM (the peak resident set since start), VmRSS and the
// CPU time used so far (user+system).
func (o *operator) stats() (procStats, error) {
	pid := o.Cmd.Process.Pid
	return readProcStats(pid)
}

func readProcStats(pid int) (procStats, error) {
	var ps procStats
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return ps, err
	}
	sc := bufio.NewScanner(bytes.NewReader(status))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		var dst *float64
		switch k {
		case "VmHWM":
			dst = &ps.PeakRSSMiB
		case "VmRSS":
			dst = &ps.RSSMiB
		default:
			continue
		}
		kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
		if err != nil {
			return ps, fmt.Errorf("/proc/%d/status %s: %w", pid, k, err)
		}
		*dst = kb / 1024
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ps, err
	}
	ps.CPUSeconds, err = parseCPUSeconds(string(stat))
	return ps, err
}

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat's times; 100 on
// every Linux architecture Go supports.
const clockTicks = 100

// parseCPUSeconds reads utime and stime, the 14th and 15th fields of
// /proc/<pid>/stat; the command name before them may hold spaces, so the
// fields are counted from its closing parenthesis.
func parseCPUSeconds(stat string) (float64, error) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, fmt.Errorf("unexpected /proc stat %q", stat)
	}
	f := strings.Fields(stat[i+1:])
	// f[0] is field 3 (state); utime is field 14, stime field 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("unexpected /proc stat %q", stat)
	}
	utime, err := strconv.ParseFloat(f[11], 64)
	if err != nil {
		return 0, err
	}
	stime, err := strconv.ParseFloat(f[12], 64)
	if err != nil {
		return 0, err
	}
	return (utime + stime) / clockTicks, nil
}

// ReadyMemory is the operator's memory with every Organization Ready,
// read after a garbage collection, so that the heap is what the operator
// keeps (its cache above all) and not the garbage of the creations.
type ReadyMemory struct {
	// RSSMiB is VmRSS after the collection; the Go runtime returns freed
	// pages to the system lazily, so it still holds some of that garbage.
	RSSMiB float64 `json:"rssMiB"`
	// HeapInuseMiB is go_memstats_heap_inuse_bytes after the collection:
	// the spans holding live objects.
	HeapInuseMiB float64 `json:"heapInuseMiB"`
	// HeapAllocMiB is go_memstats_heap_alloc_bytes after it: the live
	// objects themselves.
	HeapAllocMiB float64 `json:"heapAllocMiB"`
	// SettledRSSMiB is VmRSS once the runtime has returned what it will of
	// those pages: the lowest RSS seen until it has fallen by less than
	// rssSettleStep over rssSettleWindow, at most rssSettleMax after the
	// collection. The operator goes on checking organizations meanwhile,
	// as it does at rest.
	SettledRSSMiB float64 `json:"settledRSSMiB,omitempty"`
}

// How readyMemory waits for the RSS to settle after its collection.
const (
	rssSettleStep   = 0.5 // MiB
	rssSettleWindow = 15 * time.Second
	rssSettleMax    = 90 * time.Second
	rssSettleEvery  = time.Second
)

// readyMemory is memoryAfterGC with the RSS also read once it has
// settled.
func (o *operator) readyMemory(ctx context.Context) (ReadyMemory, error) {
	m, err := o.memoryAfterGC(ctx)
	if err != nil {
		return m, err
	}
	settled, err := o.settledRSS(ctx, m.RSSMiB)
	if err != nil {
		return m, err
	}
	m.SettledRSSMiB = round(settled, 2)
	return m, nil
}

// memoryAfterGC forces a collection through the pprof heap endpoint
// (?gc=1), then reads the heap from the metrics and the RSS from /proc.
func (o *operator) memoryAfterGC(ctx context.Context) (ReadyMemory, error) {
	var m ReadyMemory
	if err := httpGet(ctx, "http://"+o.pprof+"/debug/pprof/heap?gc=1", nil); err != nil {
		return m, err
	}
	fams, err := o.scrape(ctx)
	if err != nil {
		return m, err
	}
	const mib = 1 << 20
	m.HeapInuseMiB = round(gaugeSum(fams, "go_memstats_heap_inuse_bytes", nil)/mib, 2)
	m.HeapAllocMiB = round(gaugeSum(fams, "go_memstats_heap_alloc_bytes", nil)/mib, 2)
	st, err := o.stats()
	if err != nil {
		return m, err
	}
	m.RSSMiB = round(st.RSSMiB, 2)
	return m, nil
}

// settledRSS samples the RSS, from rss, until it has fallen by less than
// rssSettleStep over rssSettleWindow or rssSettleMax has passed, and
// returns the lowest seen.
func (o *operator) settledRSS(ctx context.Context, rss float64) (float64, error) {
	lowest, mark, markAt, start := rss, rss, time.Now(), time.Now()
	for time.Since(start) < rssSettleMax {
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(rssSettleEvery):
		}
		st, err := o.stats()
		if err != nil {
			return 0, err
		}
		lowest = min(lowest, st.RSSMiB)
		if mark-lowest >= rssSettleStep {
			mark, markAt = lowest, time.Now()
		} else if time.Since(markAt) >= rssSettleWindow {
			break
		}
	}
	return lowest, nil
}

// scrape reads the operator's Prometheus metrics.
func (o *operator) scrape(ctx context.Context) (map[string]*dto.MetricFamily, error) {
	var buf bytes.Buffer
	if err := httpGet(ctx, "http://"+o.metrics+"/metrics", &buf); err != nil {
		return nil, err
	}
	return parseMetrics(&buf)
}

// profile saves a pprof profile, e.g. "profile?seconds=20" or "heap".
func (o *operator) profile(ctx context.Context, what, path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer func() { _ = f.Close() }()
	return httpGet(ctx, "http://"+o.pprof+"/debug/pprof/"+what, f)
}

func httpGet(ctx context.Context, url string, w io.Writer) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	if w == nil {
		w = io.Discard
	}
	_, err = io.Copy(w, resp.Body)
	return err
}
