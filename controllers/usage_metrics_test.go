package controllers

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	tenancyv1alpha1 "github.com/orgforge/orgforge/api/v1alpha1"
)

func TestCollectUsageReportsKnownFiguresOfLiveOrganizationsOnly(t *testing.T) {
	now := metav1.Now()
	size, objects, bytes, conns := int64(8_000_000), int64(3), int64(4096), int32(2)
	org := func(name string, u *tenancyv1alpha1.UsageStatus, deleting bool) tenancyv1alpha1.Organization {
		o := tenancyv1alpha1.Organization{ObjectMeta: metav1.ObjectMeta{Name: name}}
		o.Status.Usage = u
		if deleting {
			o.DeletionTimestamp = &now
		}
		return o
	}
	full := &tenancyv1alpha1.UsageStatus{DatabaseBytes: &size, StorageObjects: &objects, StorageBytes: &bytes,
		Connections: &conns, ConnectionLimit: 10, UpdatedAt: &now}
	orgs := []tenancyv1alpha1.Organization{
		org("acme", full, false),
		org("never-read", nil, false),
		org("no-time", &tenancyv1alpha1.UsageStatus{DatabaseBytes: &size}, false),
		org("leaving", full, true),
		org("storage-only", &tenancyv1alpha1.UsageStatus{StorageObjects: &objects, StorageBytes: &bytes, UpdatedAt: &now}, false),
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(usageOnly(orgs))
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			if len(m.GetLabel()) != 1 || m.GetLabel()[0].GetName() != "organization" {
				t.Fatalf("%s has labels %v, want organization alone", f.GetName(), m.GetLabel())
			}
			got[m.GetLabel()[0].GetValue()+" "+f.GetName()] = m.GetGauge().GetValue()
		}
	}
	want := map[string]float64{}
	for _, e := range []struct {
		org, metric string
		v           float64
	}{
		{"acme", "orgforge_organization_database_bytes", 8_000_000},
		{"acme", "orgforge_organization_storage_objects", 3},
		{"acme", "orgforge_organization_storage_bytes", 4096},
		{"acme", "orgforge_organization_connections", 2},
		{"acme", "orgforge_organization_connections_limit", 10},
		{"storage-only", "orgforge_organization_storage_objects", 3},
		{"storage-only", "orgforge_organization_storage_bytes", 4096},
	} {
		want[e.org+" "+e.metric] = e.v
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("series (-want +got):\n%s", diff)
	}
}

// usageOnly collects the usage gauges of its Organizations.
type usageOnly []tenancyv1alpha1.Organization

func (u usageOnly) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range usageDescs {
		ch <- d
	}
}

func (u usageOnly) Collect(ch chan<- prometheus.Metric) { collectUsage(ch, u) }
