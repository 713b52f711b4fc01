package main

import (
	"bytes"
	"cmp"
	"context"
	"io"
	"iter"
	"maps"
	"math"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

func parseMetrics(r io.Reader) (map[string]*dto.MetricFamily, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	return p.TextToMetricFamilies(r)
}

// writeVerbs are the values apiserver_request_total's verb label takes for
// requests that change something.
var writeVerbs = map[string]bool{
	"POST": true, "PUT": true, "PATCH": true, "APPLY": true, "DELETE": true, "DELETECOLLECTION": true,
}

// heartbeatResource is written by the apiserver itself (its identity lease,
// every 10s); the operator, run without leader election, never writes it.
const heartbeatResource = "coordination.k8s.io/leases"

// apiWrites sums apiserver_request_total over the write verbs, keyed by
// "VERB group/resource[/subresource]".
func apiWrites(fams map[string]*dto.MetricFamily) map[string]float64 {
	out := map[string]float64{}
	fam := fams["apiserver_request_total"]
	if fam == nil {
		return out
	}
	for _, m := range fam.GetMetric() {
		l := labels(m)
		if !writeVerbs[l["verb"]] {
			continue
		}
		out[requestKey(l)] += m.GetCounter().GetValue()
	}
	return out
}

// writesDelta is after minus before, dropping zero entries.
func writesDelta(before, after map[string]float64) map[string]int {
	out := map[string]int{}
	for k, v := range after {
		if d := int(v - before[k]); d != 0 {
			out[k] = d
		}
	}
	return out
}

// writesPerOrg is the writes of delta per organization of n, less the
// apiserver's heartbeat and the bench's own requests of kind own (its
// creates or deletes of the Organizations).
func writesPerOrg(delta map[string]int, own string, n int) float64 {
	others, _ := splitHeartbeat(delta)
	return round(float64(others-delta[own])/float64(n), 2)
}

// splitHeartbeat returns the writes not made by the apiserver's own
// heartbeat, and the heartbeat's.
func splitHeartbeat(delta map[string]int) (others, heartbeat int) {
	for k, v := range delta {
		if strings.HasSuffix(k, " "+heartbeatResource) {
			heartbeat += v
		} else {
			others += v
		}
	}
	return others, heartbeat
}

// profileAPIServer saves a CPU profile of the apiserver over secs seconds,
// read from its /debug/pprof as the admin.
func (e *env) profileAPIServer(ctx context.Context, secs int, path string) error {
	b, err := e.clientset.Discovery().RESTClient().Get().AbsPath("/debug/pprof/profile").
		Param("seconds", strconv.Itoa(secs)).Timeout(time.Duration(secs+30) * time.Second).DoRaw(ctx)
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}

// scrapeAPIServer reads the apiserver's metrics as the admin.
func (e *env) scrapeAPIServer(ctx context.Context) (map[string]*dto.MetricFamily, error) {
	b, err := e.clientset.Discovery().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		return nil, err
	}
	return parseMetrics(bytes.NewReader(b))
}

func labels(m *dto.Metric) map[string]string {
	out := map[string]string{}
	for _, lp := range m.GetLabel() {
		out[lp.GetName()] = lp.GetValue()
	}
	return out
}

// counterBy sums counter (or gauge) name by the value of label key, over the
// series whose labels include match.
func counterBy(fams map[string]*dto.MetricFamily, name, key string, match map[string]string) map[string]float64 {
	out := map[string]float64{}
	for l, m := range series(fams, name, match) {
		v := m.GetCounter().GetValue()
		if m.GetCounter() == nil {
			v = m.GetGauge().GetValue()
		}
		out[l[key]] += v
	}
	return out
}

// series yields the series of metric name whose labels include match,
// with their labels.
func series(fams map[string]*dto.MetricFamily, name string, match map[string]string) iter.Seq2[map[string]string, *dto.Metric] {
	return func(yield func(map[string]string, *dto.Metric) bool) {
		for _, m := range fams[name].GetMetric() {
			if l := labels(m); matches(l, match) && !yield(l, m) {
				return
			}
		}
	}
}

func matches(l, match map[string]string) bool {
	for k, v := range match {
		if l[k] != v {
			return false
		}
	}
	return true
}

// HistogramSummary is a histogram's count and mean.
type HistogramSummary struct {
	Count  uint64  `json:"count"`
	MeanMs float64 `json:"meanMs"`
	// TotalSeconds is the sum of all observations.
	TotalSeconds float64 `json:"totalSeconds"`
}

// histogramBy summarises histogram name by the value of label key.
func histogramBy(fams map[string]*dto.MetricFamily, name, key string, match map[string]string) map[string]HistogramSummary {
	out := map[string]HistogramSummary{}
	for l, m := range series(fams, name, match) {
		if m.GetHistogram() == nil {
			continue
		}
		h := out[l[key]]
		h.Count += m.GetHistogram().GetSampleCount()
		h.TotalSeconds += m.GetHistogram().GetSampleSum()
		out[l[key]] = h
	}
	for k, h := range out {
		if h.Count > 0 {
			h.MeanMs = round(h.TotalSeconds/float64(h.Count)*1000, 2)
			h.TotalSeconds = round(h.TotalSeconds, 3)
			out[k] = h
		}
	}
	return out
}

// OperatorMetrics is what the operator's own metrics say of one phase.
type OperatorMetrics struct {
	// Reconciles by result (success, error, requeue, requeue_after).
	Reconciles map[string]int `json:"reconciles"`
	// ReconcileTime is the reconcile duration, all results together.
	ReconcileTime HistogramSummary `json:"reconcileTime"`
	// QueueWait is the time an item waited in the workqueue.
	QueueWait HistogramSummary `json:"queueWait"`
	// Steps is orgforge_reconcile_step_duration_seconds by step.
	Steps map[string]HistogramSummary `json:"steps"`
	// ClientRequests is the operator's own API requests by method
	// (client-go's rest_client_requests_total).
	ClientRequests map[string]int `json:"clientRequests"`
	// Placement is the placement step's time per reconcile, from the
	// buckets of orgforge_reconcile_step_duration_seconds{step="placement"}.
	Placement Quantiles `json:"placement"`
	// placementBuckets are those buckets, kept so that delta can subtract
	// an earlier scrape's.
	placementBuckets []bucket
}

func operatorMetrics(fams map[string]*dto.MetricFamily) OperatorMetrics {
	ctl := map[string]string{"controller": "organization"}
	om := OperatorMetrics{
		Reconciles:     toInts(counterBy(fams, "controller_runtime_reconcile_total", "result", ctl)),
		ReconcileTime:  histogramBy(fams, "controller_runtime_reconcile_time_seconds", "controller", ctl)["organization"],
		QueueWait:      histogramBy(fams, "workqueue_queue_duration_seconds", "name", map[string]string{"name": "organization"})["organization"],
		Steps:          histogramBy(fams, "orgforge_reconcile_step_duration_seconds", "step", nil),
		ClientRequests: toInts(counterBy(fams, "rest_client_requests_total", "method", nil)),
	}
	om.placementBuckets = bucketsOf(fams, "orgforge_reconcile_step_duration_seconds", map[string]string{"step": "placement"})
	om.Placement = quantilesOf(om.placementBuckets, om.Steps["placement"])
	return om
}

// delta is m minus an earlier scrape of the same process.
func (m OperatorMetrics) delta(before OperatorMetrics) OperatorMetrics {
	out := OperatorMetrics{
		Reconciles:     subInts(m.Reconciles, before.Reconciles),
		ReconcileTime:  subHist(m.ReconcileTime, before.ReconcileTime),
		QueueWait:      subHist(m.QueueWait, before.QueueWait),
		Steps:          map[string]HistogramSummary{},
		ClientRequests: subInts(m.ClientRequests, before.ClientRequests),
	}
	for k, h := range m.Steps {
		if d := subHist(h, before.Steps[k]); d.Count > 0 {
			out.Steps[k] = d
		}
	}
	out.placementBuckets = subBuckets(m.placementBuckets, before.placementBuckets)
	out.Placement = quantilesOf(out.placementBuckets, out.Steps["placement"])
	return out
}

// bucket is one cumulative bucket of a Prometheus histogram: Count
// observations at or below UpperBound.
type bucket struct {
	UpperBound float64
	Count      uint64
}

// bucketsOf sums the cumulative buckets of histogram name over the series
// whose labels include match, by upper bound, in ascending order. A series
// without a +Inf bucket gets one of its sample count.
func bucketsOf(fams map[string]*dto.MetricFamily, name string, match map[string]string) []bucket {
	byBound := map[float64]uint64{}
	for _, m := range series(fams, name, match) {
		h := m.GetHistogram()
		if h == nil {
			continue
		}
		inf := false
		for _, b := range h.GetBucket() {
			byBound[b.GetUpperBound()] += b.GetCumulativeCount()
			inf = inf || math.IsInf(b.GetUpperBound(), 1)
		}
		if !inf {
			byBound[math.Inf(1)] += h.GetSampleCount()
		}
	}
	out := make([]bucket, 0, len(byBound))
	for ub, n := range byBound {
		out = append(out, bucket{UpperBound: ub, Count: n})
	}
	slices.SortFunc(out, func(a, b bucket) int { return cmp.Compare(a.UpperBound, b.UpperBound) })
	return out
}

// subBuckets is a minus an earlier reading b of the same histogram.
func subBuckets(a, b []bucket) []bucket {
	before := map[float64]uint64{}
	for _, x := range b {
		before[x.UpperBound] = x.Count
	}
	out := make([]bucket, len(a))
	for i, x := range a {
		out[i] = bucket{UpperBound: x.UpperBound, Count: x.Count - min(x.Count, before[x.UpperBound])}
	}
	return out
}

// Quantiles summarises a histogram: its count and exact mean, and its
// median and 95th percentile estimated from the buckets.
type Quantiles struct {
	Count  uint64  `json:"count"`
	MeanMs float64 `json:"meanMs"`
	P50Ms  float64 `json:"p50Ms"`
	P95Ms  float64 `json:"p95Ms"`
}

func quantilesOf(buckets []bucket, h HistogramSummary) Quantiles {
	return Quantiles{Count: h.Count, MeanMs: h.MeanMs,
		P50Ms: round(bucketQuantile(0.5, buckets)*1000, 2), P95Ms: round(bucketQuantile(0.95, buckets)*1000, 2)}
}

// bucketQuantile estimates the q-quantile (0 < q < 1) of cumulative
// buckets as Prometheus's histogram_quantile does: it finds the bucket
// that holds the rank and interpolates linearly inside it, from 0 for the
// first bucket. A rank in the +Inf bucket gets the highest finite bound.
// It is 0 when the histogram is empty.
func bucketQuantile(q float64, buckets []bucket) float64 {
	if len(buckets) == 0 {
		return 0
	}
	total := buckets[len(buckets)-1].Count
	if total == 0 {
		return 0
	}
	rank := q * float64(total)
	lower, below := 0.0, uint64(0)
	for _, b := range buckets {
		if float64(b.Count) >= rank {
			if math.IsInf(b.UpperBound, 1) {
				return lower
			}
			in := b.Count - below
			if in == 0 {
				return b.UpperBound
			}
			return lower + (b.UpperBound-lower)*(rank-float64(below))/float64(in)
		}
		lower, below = b.UpperBound, b.Count
	}
	return lower
}

func subHist(a, b HistogramSummary) HistogramSummary {
	d := HistogramSummary{Count: a.Count - b.Count, TotalSeconds: round(a.TotalSeconds-b.TotalSeconds, 3)}
	if d.Count > 0 {
		d.MeanMs = round(d.TotalSeconds/float64(d.Count)*1000, 2)
	}
	return d
}

func subInts(a, b map[string]int) map[string]int {
	out := map[string]int{}
	for k, v := range a {
		if d := v - b[k]; d != 0 {
			out[k] = d
		}
	}
	return out
}

func toInts(m map[string]float64) map[string]int {
	out := make(map[string]int, len(m))
	for k, v := range m {
		out[k] = int(v)
	}
	return out
}

// writeMethods counts the write requests in a by-method map.
func writeMethods(byMethod map[string]int) int {
	n := 0
	for k, v := range byMethod {
		if writeVerbs[strings.ToUpper(k)] {
			n += v
		}
	}
	return n
}

func sumInts(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range maps.Keys(m) {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// apiLatency summarises apiserver_request_duration_seconds of the write
// verbs by "VERB group/resource[/subresource]", and etcd_request_duration_seconds
// by "etcd operation type".
func apiLatency(fams map[string]*dto.MetricFamily) map[string]HistogramSummary {
	out := map[string]HistogramSummary{}
	add := func(key string, h *dto.Histogram) {
		v := out[key]
		v.Count += h.GetSampleCount()
		v.TotalSeconds += h.GetSampleSum()
		out[key] = v
	}
	if fam := fams["apiserver_request_duration_seconds"]; fam != nil {
		for _, m := range fam.GetMetric() {
			l := labels(m)
			if !writeVerbs[l["verb"]] || m.GetHistogram() == nil {
				continue
			}
			add(requestKey(l), m.GetHistogram())
		}
	}
	if fam := fams["etcd_request_duration_seconds"]; fam != nil {
		for _, m := range fam.GetMetric() {
			l := labels(m)
			if m.GetHistogram() != nil && (l["operation"] == "create" || l["operation"] == "update" || l["operation"] == "delete") {
				add("etcd "+l["operation"], m.GetHistogram())
			}
		}
	}
	return out
}

// latencyDelta is the requests between two apiLatency readings, with their
// mean.
func latencyDelta(before, after map[string]HistogramSummary) map[string]HistogramSummary {
	out := map[string]HistogramSummary{}
	for k, a := range after {
		if d := subHist(a, before[k]); d.Count > 0 {
			out[k] = d
		}
	}
	return out
}

// requestKey names an apiserver request series by its labels, as
// "VERB group/resource/subresource".
func requestKey(l map[string]string) string {
	res := l["resource"]
	if l["group"] != "" {
		res = l["group"] + "/" + res
	}
	if l["subresource"] != "" {
		res += "/" + l["subresource"]
	}
	return l["verb"] + " " + res
}
