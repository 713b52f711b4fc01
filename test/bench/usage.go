package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	dto "github.com/prometheus/client_model/go"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tenancyv1alpha1 "github.com/orgforge/orgforge/api/v1alpha1"
	"github.com/orgforge/orgforge/internal/devstack"
	"github.com/orgforge/orgforge/internal/testutil"
)

// The usage scenario measures what reading usage costs: N Ready
// Organizations, each with usageObjects objects under its prefix, are
// reconciled once by a restarted operator whose usage is not due (the
// baseline pass), then, their status.usage removed by the bench, once by an
// operator restarted again, as it ships, which reads every Organization's
// usage (the refresh pass), then once more with usage not due (the second
// baseline). Each pass is timed from the operator's start
// until every Organization was reconciled (and, in the refresh pass, its
// usage read) and the operator is idle. The statements the operator sent to
// PostgreSQL (its admin role logs every statement for the passes), its
// S3 requests (through a counting proxy) and its CPU are taken. The
// refresh's cost is the refresh pass less the mean of the baselines.

// usageObjects are put under each organization's prefix, usageObjectBytes
// each.
const (
	usageObjects     = 3
	usageObjectBytes = 1024
)

// UsageResult is the usage scenario.
type UsageResult struct {
	N           int `json:"n"`
	Concurrency int `json:"concurrency"`
	// ObjectsPerOrg are the objects under each prefix.
	ObjectsPerOrg int `json:"objectsPerOrg"`
	// Baselines are the passes before and after the refresh pass.
	Baselines []UsagePass `json:"baselines"`
	Refresh   UsagePass   `json:"refresh"`
	// Per organization, the refresh pass less the baselines' mean.
	ExtraSQLPerOrg  float64 `json:"extraSqlPerOrg"`
	ExtraS3PerOrg   float64 `json:"extraS3PerOrg"`
	ExtraCPUSeconds float64 `json:"extraCpuSeconds"`
	ExtraSeconds    float64 `json:"extraSeconds"`
	// UsageStep is the usage step's time per organization in the refresh
	// pass (orgforge_reconcile_step_duration_seconds{step="usage"}).
	UsageStep HistogramSummary `json:"usageStep"`
	// Scrape is the operator's metrics text after the refresh pass.
	Scrape ScrapeSize `json:"scrape"`
	// Load is /proc/loadavg before and after the passes: the machine is
	// shared.
	LoadBefore string   `json:"loadBefore"`
	LoadAfter  string   `json:"loadAfter"`
	Errors     []string `json:"errors,omitempty"`
}

// UsagePass is one restarted operator's pass over the N Organizations.
type UsagePass struct {
	Seconds       float64        `json:"seconds"`
	Reconciles    int            `json:"reconciles"`
	SQLStatements int            `json:"sqlStatements"`
	SQLPerOrg     float64        `json:"sqlPerOrg"`
	S3Requests    map[string]int `json:"s3Requests"`
	S3PerOrg      float64        `json:"s3PerOrg"`
	CPUSeconds    float64        `json:"cpuSeconds"`
	// APIWrites are the Kubernetes writes of the pass, the apiserver's
	// own heartbeat left out.
	APIWrites int `json:"apiWrites"`
}

// ScrapeSize is the size of a scrape of the operator's metrics, and the
// share of its usage gauges.
type ScrapeSize struct {
	Bytes             int     `json:"bytes"`
	UsageSeries       int     `json:"usageSeries"`
	UsageBytes        int     `json:"usageBytes"`
	UsageBytesPerLine float64 `json:"usageBytesPerLine"`
}

// measureScrape sizes a scrape in the text format: the usage gauges are the
// orgforge_organization_* series but the time-to-Ready histogram's.
func measureScrape(text []byte) ScrapeSize {
	sz := ScrapeSize{Bytes: len(text)}
	for line := range bytes.Lines(text) {
		if bytes.HasPrefix(line, []byte("orgforge_organization_")) &&
			!bytes.HasPrefix(line, []byte("orgforge_organization_time_to_ready")) {
			sz.UsageSeries++
			sz.UsageBytes += len(line)
		}
	}
	if sz.UsageSeries > 0 {
		sz.UsageBytesPerLine = round(float64(sz.UsageBytes)/float64(sz.UsageSeries), 1)
	}
	return sz
}

// meanPass is the passes' mean seconds, CPU and figures per organization.
func meanPass(passes []UsagePass) UsagePass {
	var m UsagePass
	if len(passes) == 0 {
		return m
	}
	for _, p := range passes {
		m.Seconds += p.Seconds
		m.CPUSeconds += p.CPUSeconds
		m.SQLPerOrg += p.SQLPerOrg
		m.S3PerOrg += p.S3PerOrg
	}
	k := float64(len(passes))
	m.Seconds, m.CPUSeconds, m.SQLPerOrg, m.S3PerOrg = m.Seconds/k, m.CPUSeconds/k, m.SQLPerOrg/k, m.S3PerOrg/k
	return m
}

// s3Counter is a reverse proxy in front of the stack's S3 that counts the
// requests passing through it by kind.
type s3Counter struct {
	srv    *httptest.Server
	mu     sync.Mutex
	counts map[string]int
}

func startS3Counter(endpoint string) (*s3Counter, error) {
	target, err := url.Parse(endpoint)
	if err != nil {
		return nil, err
	}
	c := &s3Counter{counts: map[string]int{}}
	proxy := httputil.NewSingleHostReverseProxy(target)
	// The Host header stays the proxy's, which the request was signed for.
	c.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.mu.Lock()
		c.counts[s3Kind(r)]++
		c.mu.Unlock()
		proxy.ServeHTTP(w, r)
	}))
	return c, nil
}

// s3Kind names a request: ListObjectsV2 apart, by method otherwise.
func s3Kind(r *http.Request) string {
	if r.Method == http.MethodGet && r.URL.Query().Get("list-type") == "2" {
		return "ListObjectsV2"
	}
	return r.Method
}

// take returns the counts so far and starts again from zero.
func (c *s3Counter) take() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := c.counts
	c.counts = map[string]int{}
	return out
}

func (c *s3Counter) close() { c.srv.Close() }

func usageScenario(o *options) scenario {
	return scenario{Name: fmt.Sprintf("usage-n%d-c%d", o.usageN, o.concurrency), N: o.usageN,
		Concurrency: o.concurrency, Rounds: 1, Round: 1}
}

// runUsage runs the usage scenario.
func runUsage(ctx context.Context, o *options, res *Results) *UsageResult {
	sc := usageScenario(o)
	ur := &UsageResult{N: sc.N, Concurrency: sc.Concurrency, ObjectsPerOrg: usageObjects, LoadBefore: loadavg()}
	if err := runUsagePasses(ctx, o, sc, ur, res); err != nil {
		ur.Errors = append(ur.Errors, fmt.Sprintf("%s: %v", sc.Name, err))
	}
	ur.LoadAfter = loadavg()
	b, r, n := meanPass(ur.Baselines), ur.Refresh, float64(max(sc.N, 1))
	ur.ExtraSQLPerOrg = round(float64(r.SQLStatements)/n-b.SQLPerOrg, 2)
	ur.ExtraS3PerOrg = round(r.S3PerOrg-b.S3PerOrg, 2)
	ur.ExtraCPUSeconds = round(r.CPUSeconds-b.CPUSeconds, 2)
	ur.ExtraSeconds = round(r.Seconds-b.Seconds, 2)
	logf("%s: refresh of %d organizations: pass %.1fs (baselines' mean %.1fs), +%.2f SQL and +%.2f S3 requests per organization, +%.2f CPU s; usage step mean %.1f ms",
		sc.Name, sc.N, r.Seconds, b.Seconds, ur.ExtraSQLPerOrg, ur.ExtraS3PerOrg, ur.ExtraCPUSeconds, ur.UsageStep.MeanMs)
	return ur
}

func runUsagePasses(ctx context.Context, o *options, sc scenario, ur *UsageResult, res *Results) error {
	dir := sc.stackDir(o, sideOrgforge)
	e, op, flags, err := startOperatorEnv(ctx, o, sc, dir, res)
	if err != nil {
		return err
	}
	defer func() { _ = e.close() }()
	tctx, stopTracker := context.WithCancel(ctx)
	t := startTracker(tctx, e.kube, sc.Name)
	defer func() { stopTracker(); <-t.done }()
	names := orgNames("org", sc)
	logf("%s: applying %d Organizations", sc.Name, sc.N)
	_, applyErrs := applyAll(ctx, e.kube, names, sc.Name, o.appliers, t, testutil.WithStorageAccess(o.access))
	missing := t.waitAll(ctx, names, readyMap, o.phaseTimeout)
	op.stop()
	if len(applyErrs) > 0 || len(missing) > 0 {
		return fmt.Errorf("%d not applied, %d not Ready (operator log %s)", len(applyErrs), len(missing), op.LogPath)
	}
	logf("%s: all Ready; putting %d objects under each prefix", sc.Name, usageObjects)
	s3c := e.st.S3.RootClient()
	body := strings.Repeat("u", usageObjectBytes)
	errs := testutil.Parallel(names, 16, func(name string) error {
		for i := range usageObjects {
			key := fmt.Sprintf("orgs/%s/data/object-%d", name, i)
			if err := testutil.PutObject(ctx, s3c, e.st.S3.Bucket, key, body); err != nil {
				return err
			}
		}
		return nil
	})
	if len(errs) > 0 {
		return fmt.Errorf("putting objects: %v", errs[0])
	}

	counter, err := startS3Counter(e.st.S3.Endpoint)
	if err != nil {
		return err
	}
	defer counter.close()
	// A role's setting wins over the server's command line, where the
	// stack sets log_statement=ddl; the operator's new sessions log all.
	logAll := fmt.Sprintf("ALTER ROLE %s SET log_statement = 'all'", devstack.AdminUser)
	if _, err := e.su.Exec(ctx, logAll); err != nil {
		return err
	}
	pass := func(name string, refreshed func() bool) (UsagePass, *operator, error) {
		f := flags
		// The S3 endpoint is the proxy's; the one written to Secrets stays
		// the stack's, so that no Secret changes.
		f.extra = []string{"--s3-endpoint=" + counter.srv.URL, "--tenant-s3-endpoint=" + e.st.S3.Endpoint}
		counter.take()
		mark := e.log.mark()
		apiBefore, err := e.scrapeAPIServer(ctx)
		if err != nil {
			return UsagePass{}, nil, err
		}
		start := time.Now()
		op, err := startOperator(ctx, o.manager, e.st, dir, name, f)
		if err != nil {
			return UsagePass{}, nil, err
		}
		if err := waitPass(ctx, op, sc.N, refreshed, time.Now().Add(o.phaseTimeout)); err != nil {
			return UsagePass{}, op, err
		}
		p := UsagePass{Seconds: round(time.Since(start).Seconds(), 2)}
		fams, err := op.scrape(ctx)
		if err != nil {
			return p, op, err
		}
		p.Reconciles = sumInts(operatorMetrics(fams).Reconciles)
		if st, err := op.stats(); err == nil {
			p.CPUSeconds = round(st.CPUSeconds, 2)
		}
		p.S3Requests = counter.take()
		total := 0
		for _, v := range p.S3Requests {
			total += v
		}
		p.S3PerOrg = round(float64(total)/float64(sc.N), 2)
		statements, err := e.log.ddlSince(mark)
		if err != nil {
			return p, op, err
		}
		p.SQLStatements = statements[appOperator]
		p.SQLPerOrg = round(float64(p.SQLStatements)/float64(sc.N), 2)
		if apiAfter, err := e.scrapeAPIServer(ctx); err == nil {
			p.APIWrites, _ = splitHeartbeat(writesDelta(apiWrites(apiBefore), apiWrites(apiAfter)))
		}
		return p, op, nil
	}

	baseline := func(k int) error {
		logf("%s: baseline pass %d: operator restarted, usage not due", sc.Name, k)
		b, op, err := pass(fmt.Sprintf("operator-baseline-%d", k), nil)
		if op != nil {
			op.stop()
		}
		if err != nil {
			return fmt.Errorf("baseline pass %d: %w", k, err)
		}
		ur.Baselines = append(ur.Baselines, b)
		return nil
	}
	if err := baseline(1); err != nil {
		return err
	}
	logf("%s: removing every organization's status.usage", sc.Name)
	errs = testutil.Parallel(names, 16, func(name string) error {
		org := &tenancyv1alpha1.Organization{ObjectMeta: metav1.ObjectMeta{Name: name}}
		return e.kube.Status().Patch(ctx, org, client.RawPatch(types.MergePatchType, []byte(`{"status":{"usage":null}}`)))
	})
	if len(errs) > 0 {
		return fmt.Errorf("removing status.usage: %v", errs[0])
	}
	logf("%s: refresh pass: operator restarted, every organization's usage due", sc.Name)
	since := time.Now().Truncate(time.Second)
	r, op, err := pass("operator-refresh", func() bool {
		n, err := usageReadSince(ctx, e.kube, since)
		return err == nil && n >= sc.N
	})
	if op != nil {
		var text bytes.Buffer
		if err := httpGet(ctx, "http://"+op.metrics+"/metrics", &text); err == nil {
			ur.Scrape = measureScrape(text.Bytes())
			if fams, err := parseMetrics(&text); err == nil {
				ur.UsageStep = operatorMetrics(fams).Steps["usage"]
			}
		}
		op.stop()
	}
	if err != nil {
		return fmt.Errorf("refresh pass: %w", err)
	}
	ur.Refresh = r
	// The second baseline, every usage just read and so not due, after
	// the refresh: the machine's drift over the three passes weighs on the
	// refresh as on the mean of the two baselines.
	if err := baseline(2); err != nil {
		return err
	}
	_, err = e.su.Exec(ctx, fmt.Sprintf("ALTER ROLE %s RESET log_statement", devstack.AdminUser))
	return err
}

// waitPass waits until the operator has run the placement step, which every
// reconcile past the fleet's start-up runs, n times, done is true (when
// set), and its Organization workqueue is empty with no worker busy.
func waitPass(ctx context.Context, op *operator, n int, done func() bool, deadline time.Time) error {
	org := map[string]string{"controller": "organization"}
	for {
		fams, err := op.scrape(ctx)
		if err == nil && operatorMetrics(fams).Steps["placement"].Count >= uint64(n) &&
			gaugeSum(fams, "workqueue_depth", map[string]string{"name": "organization"}) == 0 &&
			gaugeSum(fams, "controller_runtime_active_workers", org) == 0 && (done == nil || done()) {
			return nil
		}
		if op.Exited() {
			return fmt.Errorf("operator exited:\n%s", op.Tail(20))
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("the pass did not end by the deadline")
		}
		sleepCtx(ctx, 100*time.Millisecond)
	}
}

// gaugeSum sums gauge name over the series whose labels include match.
func gaugeSum(fams map[string]*dto.MetricFamily, name string, match map[string]string) float64 {
	total := 0.0
	for _, m := range series(fams, name, match) {
		total += m.GetGauge().GetValue()
	}
	return total
}

// usageReadSince counts the Organizations whose usage was read at or after
// since.
func usageReadSince(ctx context.Context, c client.Client, since time.Time) (int, error) {
	var list tenancyv1alpha1.OrganizationList
	if err := c.List(ctx, &list); err != nil {
		return 0, err
	}
	n := 0
	for _, org := range list.Items {
		if u := org.Status.Usage; u != nil && u.UpdatedAt != nil && !u.UpdatedAt.Time.Before(since) {
			n++
		}
	}
	return n, nil
}

// loadavg is /proc/loadavg's first three fields.
func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	return strings.Join(strings.Fields(string(b))[:3], " ")
}

// writeUsage writes the usage scenario's table.
func writeUsage(w func(string, ...any), u *UsageResult) {
	if u == nil {
		return
	}
	w("## Usage: a refresh of N=%d Ready Organizations, concurrency %d\n\n", u.N, u.Concurrency)
	w("Each Organization has %d objects of %d bytes under its prefix. The operator, with its default `--usage-period` (1h), is restarted three times over them: a baseline pass, every usage read when its Organization became Ready and so not due; once the bench has removed every status.usage, the refresh pass; then a second baseline pass, every usage just read. Each pass is timed from the operator's start until every Organization was reconciled (and, in the refresh pass, its usage read) and the operator is idle. SQL statements are every statement of the operator's admin role, logged for the passes; S3 requests are counted by a proxy in front of S3 (IAM is not counted). Load average (1, 5, 15 min) before: %s; after: %s.\n\n",
		usageObjects, usageObjectBytes, u.LoadBefore, u.LoadAfter)
	w("| pass | seconds | reconciles | SQL statements (per org) | S3 requests (per org) | S3 by kind | operator CPU s | API writes |\n")
	w("|---|---:|---:|---:|---:|---|---:|---:|\n")
	for _, p := range []struct {
		name string
		UsagePass
	}{{"baseline 1", at(u.Baselines, 0)}, {"refresh", u.Refresh}, {"baseline 2", at(u.Baselines, 1)}} {
		w("| %s | %.1f | %d | %d (%.2f) | %.0f (%.2f) | %v | %.2f | %d |\n", p.name, p.Seconds, p.Reconciles,
			p.SQLStatements, p.SQLPerOrg, p.S3PerOrg*float64(u.N), p.S3PerOrg, p.S3Requests, p.CPUSeconds, p.APIWrites)
	}
	w("\nThe refresh's own cost against the baselines' mean, per organization: **%.2f SQL statements, %.2f S3 requests**; for the %d: %+.1f s of pass time, %+.2f s of operator CPU. The usage step itself: %d reads, mean %.1f ms.\n\n",
		u.ExtraSQLPerOrg, u.ExtraS3PerOrg, u.N, u.ExtraSeconds, u.ExtraCPUSeconds, u.UsageStep.Count, u.UsageStep.MeanMs)
	if sc := u.Scrape; sc.Bytes > 0 {
		w("A scrape of the operator's metrics after the refresh: %d bytes, of which %d usage series in %d bytes, %.1f bytes a series.\n\n",
			sc.Bytes, sc.UsageSeries, sc.UsageBytes, sc.UsageBytesPerLine)
	}
}

// at is passes[i], or a zero pass when there is none.
func at(passes []UsagePass, i int) UsagePass {
	if i < len(passes) {
		return passes[i]
	}
	return UsagePass{}
}
