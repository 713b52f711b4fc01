package controllers

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/api/meta"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tenancyv1alpha1 "github.com/orgforge/orgforge/api/v1alpha1"
)

var (
	stepDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "orgforge_reconcile_step_duration_seconds",
		Help:    "Duration of each reconcile step.",
		Buckets: prometheus.ExponentialBuckets(0.001, 2, 16),
	}, []string{"step"})
	timeToReady = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "orgforge_organization_time_to_ready_seconds",
		Help:    "Time from an Organization's creation to its first Ready.",
		Buckets: prometheus.ExponentialBuckets(0.125, 2, 14),
	})
	externalErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "orgforge_external_errors_total",
		Help: "Errors from external services, by service and error class.",
	}, []string{"service", "class"})
)

// RegisterMetrics adds orgforge's metrics to reg (controller-runtime's
// metrics.Registry in main.go). Organizations are counted, and their usage
// reported, from reader, the manager's cache, at scrape time.
func RegisterMetrics(reg prometheus.Registerer, reader client.Reader) error {
	for _, c := range []prometheus.Collector{stepDuration, timeToReady, externalErrors, &orgCollector{reader: reader}} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}

var orgsDesc = prometheus.NewDesc("orgforge_organizations",
	"Organizations by condition type and status.", []string{"condition", "status"}, nil)

// orgCollector reports the Organizations by condition and each one's
// usage, from one list of them per scrape.
type orgCollector struct{ reader client.Reader }

func (c *orgCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- orgsDesc
	for _, d := range usageDescs {
		ch <- d
	}
}

func (c *orgCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var list tenancyv1alpha1.OrganizationList
	// The collector only reads, and a copy of every Organization at every
	// scrape is most of a scrape's cost at thousands of them.
	if err := c.reader.List(ctx, &list, client.UnsafeDisableDeepCopy); err != nil {
		return
	}
	counts := map[[2]string]int{}
	for _, t := range []string{tenancyv1alpha1.ConditionReady, tenancyv1alpha1.ConditionDatabaseReady, tenancyv1alpha1.ConditionStorageReady} {
		for _, st := range []string{"True", "False", "Unknown"} {
			counts[[2]string{t, st}] = 0
		}
		for i := range list.Items {
			st := "Unknown"
			if cond := meta.FindStatusCondition(list.Items[i].Status.Conditions, t); cond != nil {
				st = string(cond.Status)
			}
			counts[[2]string{t, st}]++
		}
	}
	for k, n := range counts {
		ch <- prometheus.MustNewConstMetric(orgsDesc, prometheus.GaugeValue, float64(n), k[0], k[1])
	}
	collectUsage(ch, list.Items)
}
