package e2e_test

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tenancyv1alpha1 "github.com/orgforge/orgforge/api/v1alpha1"
	"github.com/orgforge/orgforge/internal/testutil"
)

// secretWriteRace changes a Secret between the operator's read and its
// update, while on, so that the API server answers the update with a real
// 409 Conflict.
type secretWriteRace struct {
	client.Client
	name string
	on   *atomic.Bool
}

func (c secretWriteRace) Update(ctx context.Context, obj client.Object, opts ...client.UpdateOption) error {
	if s, ok := obj.(*corev1.Secret); ok && s.Name == c.name && c.on.Load() {
		patch := map[string]any{"metadata": map[string]any{"annotations": map[string]string{"test.orgforge.io/touched": time.Now().String()}}}
		if err := mergePatchSecret(ctx, s.Namespace, s.Name, patch); err != nil {
			return err
		}
	}
	return c.Client.Update(ctx, obj, opts...)
}

// externalErrorCount sums orgforge_external_errors_total for service.
func externalErrorCount(t *testing.T, service string) float64 {
	t.Helper()
	sum := 0.0
	for _, f := range gatherMetrics(t) {
		if f.GetName() != "orgforge_external_errors_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "service" && l.GetValue() == service {
					sum += m.GetCounter().GetValue()
				}
			}
		}
	}
	return sum
}

func TestAConflictOnASecretIsReportedAsAKubernetesErrorNotADatabaseOutage(t *testing.T) {
	on := &atomic.Bool{}
	startOperatorWith(t, nil, func(c client.Client) client.Client {
		return secretWriteRace{Client: c, name: "yankee-database", on: on}
	})
	o := applyReady(t, testutil.NewOrg("yankee"))
	before := externalErrorCount(t, "aurora")

	on.Store(true)
	// A derived key edited by hand: the operator writes it back, and loses
	// the race with another writer every time.
	sslmode := map[string]any{"stringData": map[string]string{"sslmode": "require"}}
	if err := mergePatchSecret(context.Background(), o.Status.Namespace, "yankee-database", sslmode); err != nil {
		t.Fatal(err)
	}
	o = waitCondition(t, "yankee", tenancyv1alpha1.ConditionDatabaseReady, "False", tenancyv1alpha1.ReasonKubernetesError, 30*time.Second)
	if got := externalErrorCount(t, "aurora"); got != before {
		t.Errorf("orgforge_external_errors_total{service=\"aurora\"} went from %v to %v on a Kubernetes conflict", before, got)
	}
	if c := testutil.ConditionOf(o, tenancyv1alpha1.ConditionReady); c.Reason != tenancyv1alpha1.ReasonKubernetesError {
		t.Errorf("Ready = %+v, want reason KubernetesError", c)
	}

	on.Store(false)
	waitReady(t, "yankee")
	if got := string(secret(t, o, "yankee-database").Data["sslmode"]); got != "disable" {
		t.Errorf("sslmode = %q, want the operator's disable back", got)
	}
}

func TestAnInvalidSpecIsReportedInOneWarningEvent(t *testing.T) {
	op := startOperator(t, nil)
	apply(t, testutil.NewOrg("zulu", testutil.InNamespace("kube-node-lease")))
	waitCondition(t, "zulu", tenancyv1alpha1.ConditionReady, "False", tenancyv1alpha1.ReasonInvalidSpec, 30*time.Second)
	// Let the reconciles the status write may trigger settle.
	time.Sleep(resync)
	var warnings []string
	for _, e := range op.eventsSnapshot() {
		if strings.HasPrefix(e, tenancyv1alpha1.ReasonInvalidSpec+": ") {
			warnings = append(warnings, e)
		}
	}
	if len(warnings) != 1 {
		t.Fatalf("%d InvalidSpec warnings, want 1: %v", len(warnings), warnings)
	}
	for _, want := range []string{"DatabaseReady", "StorageReady", "--allow-system-namespaces"} {
		if !strings.Contains(warnings[0], want) {
			t.Errorf("the warning does not mention %q: %s", want, warnings[0])
		}
	}
}
