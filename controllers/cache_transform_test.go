package controllers

import (
	"maps"
	"runtime"
	"strings"
	"testing"
	"unsafe"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	tenancyv1alpha1 "github.com/orgforge/orgforge/api/v1alpha1"
)

func databaseSecretSample() map[string][]byte {
	return map[string][]byte{
		"host": []byte("db.example"), "port": []byte("5432"), "dbname": []byte("org_acme"),
		"username": []byte("org_acme"), "password": []byte("s3cret"), "sslmode": []byte("require"),
		"uri": []byte("postgresql://org_acme:s3cret@db.example:5432/org_acme"), "jdbc-url": []byte("jdbc:postgresql://db.example:5432/org_acme"),
		"pool-min-size": []byte("0"), "pool-max-size": []byte("5"),
	}
}

func TestCompactSecretDataTellsEveryEdit(t *testing.T) {
	want := databaseSecretSample()
	cases := map[string]struct {
		edit func(map[string][]byte)
		same bool
	}{
		"unchanged":            {edit: func(map[string][]byte) {}, same: true},
		"a dropped key edited": {edit: func(m map[string][]byte) { m["uri"] = []byte("postgresql://elsewhere") }},
		"a dropped key gone":   {edit: func(m map[string][]byte) { delete(m, "jdbc-url") }},
		"a kept key edited":    {edit: func(m map[string][]byte) { m["password"] = []byte("other") }},
		"a key added":          {edit: func(m map[string][]byte) { m["note"] = []byte("x") }},
		"values moved between keys": {edit: func(m map[string][]byte) {
			m["host"], m["port"] = []byte("db.example5432"), []byte("")
		}},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			got := maps.Clone(want)
			tc.edit(got)
			cached := compactSecretData(got)
			if _, ok := cached["uri"]; ok {
				t.Error("the cached data keeps uri, a key only written")
			}
			if string(cached["password"]) != string(got["password"]) {
				t.Error("the cached data lost the password, which the reconciler reads")
			}
			if again := compactSecretData(cached); !secretDataEqual(again, cached) {
				t.Error("compacting cached data changed it")
			}
			if same := secretDataEqual(cached, compactSecretData(want)); same != tc.same {
				t.Errorf("cached data equal to the wanted = %v, want %v", same, tc.same)
			}
		})
	}
}

func TestTransformSecretKeepsWhatTheReconcilerReads(t *testing.T) {
	truth := true
	in := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Name: "acme-database", Namespace: "org-acme", UID: "u1", ResourceVersion: "7",
			Labels:          map[string]string{LabelManagedBy: ManagedByValue, LabelOrganization: "acme"},
			Annotations:     map[string]string{AnnotationPasswordVerifier: "SCRAM-SHA-256$4096:x", AnnotationRotatedAt: "2026-12-01T00:00:00Z"},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: tenancyv1alpha1.GroupVersion.String(), Kind: "Organization", Name: "acme", UID: "o1", Controller: &truth}},
			ManagedFields:   []metav1.ManagedFieldsEntry{{Manager: "orgforge"}},
		},
		Type: corev1.SecretTypeOpaque,
		Data: databaseSecretSample(),
	}
	want := in.DeepCopy()
	want.ManagedFields = nil
	want.Data = compactSecretData(want.Data)
	out, err := TransformSecret(in)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, out); diff != "" {
		t.Errorf("transformed Secret (-want +got):\n%s", diff)
	}
}

func TestTransformOrganizationKeepsItsStatus(t *testing.T) {
	in := &tenancyv1alpha1.Organization{
		ObjectMeta: metav1.ObjectMeta{
			Name: "acme", Finalizers: []string{tenancyv1alpha1.FinalizerName},
			Annotations: map[string]string{
				corev1.LastAppliedConfigAnnotation: `{"apiVersion":"tenancy.orgforge.io/v1alpha1"}`,
				AnnotationBudgetedLogins:           "2",
			},
			ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kubectl"}},
		},
		Status: tenancyv1alpha1.OrganizationStatus{
			Namespace: "org-acme",
			Conditions: []metav1.Condition{{Type: tenancyv1alpha1.ConditionReady, Status: metav1.ConditionTrue,
				Reason: tenancyv1alpha1.ReasonProvisioned, Message: "Database and storage are ready"}},
		},
	}
	want := in.DeepCopy()
	want.ManagedFields = nil
	delete(want.Annotations, corev1.LastAppliedConfigAnnotation)
	out, err := TransformOrganization(in)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, out); diff != "" {
		t.Errorf("transformed Organization (-want +got):\n%s", diff)
	}
}

func TestTransformMetadataKeepsLabelsAndAnnotations(t *testing.T) {
	in := &metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{
		Name:          "org-acme",
		Labels:        map[string]string{corev1.LabelMetadataName: "org-acme", LabelManagedBy: ManagedByValue, "team": "a"},
		Annotations:   map[string]string{"note": "x"},
		ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "orgforge"}},
	}}
	want := in.DeepCopy()
	want.ManagedFields = nil
	out, err := TransformMetadata(in)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, out); diff != "" {
		t.Errorf("transformed metadata (-want +got):\n%s", diff)
	}
}

// TestTransformSecretLeavesEveryKeyTheReconcilerReads lists the keys the
// reconciler reads from its Secrets: each must come out of the cache as it
// went in, whatever secretKeysDropped says.
func TestTransformSecretLeavesEveryKeyTheReconcilerReads(t *testing.T) {
	read := []string{"username", "password", "previous-username", "previous-password"}
	for _, prefix := range []string{"", "previous-", "pending-"} {
		read = append(read, prefix+"access-key-id", prefix+"secret-access-key")
	}
	data := databaseSecretSample()
	for _, k := range read {
		data[k] = []byte("value of " + k)
	}
	out, err := TransformSecret(&corev1.Secret{Data: data})
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range read {
		if got := string(out.(*corev1.Secret).Data[k]); got != "value of "+k {
			t.Errorf("key %q comes out of the cache as %q", k, got)
		}
	}
}

// TestTransformOrganizationSharesTheFleetsStrings transforms two
// Organizations decoded apart, as the cache receives them: what the fleet
// repeats must come out as one copy, and unchanged.
func TestTransformOrganizationSharesTheFleetsStrings(t *testing.T) {
	org := func() *tenancyv1alpha1.Organization {
		return &tenancyv1alpha1.Organization{Status: tenancyv1alpha1.OrganizationStatus{
			Conditions: []metav1.Condition{{Type: strings.Clone(tenancyv1alpha1.ConditionReady), Status: metav1.ConditionTrue,
				Reason: strings.Clone(tenancyv1alpha1.ReasonProvisioned), Message: strings.Clone("Organization is provisioned")}},
			Database: tenancyv1alpha1.DatabaseStatus{Cluster: strings.Clone("default"), Host: strings.Clone("db.example")},
			Storage:  tenancyv1alpha1.StorageStatus{Bucket: strings.Clone("tenants")},
		}}
	}
	a, b := org(), org()
	want := a.DeepCopy()
	for _, o := range []*tenancyv1alpha1.Organization{a, b} {
		if _, err := TransformOrganization(o); err != nil {
			t.Fatal(err)
		}
	}
	if diff := cmp.Diff(want, a); diff != "" {
		t.Errorf("transformed Organization (-want +got):\n%s", diff)
	}
	shared := map[string][2]string{
		"message": {a.Status.Conditions[0].Message, b.Status.Conditions[0].Message},
		"reason":  {a.Status.Conditions[0].Reason, b.Status.Conditions[0].Reason},
		"cluster": {a.Status.Database.Cluster, b.Status.Database.Cluster},
		"host":    {a.Status.Database.Host, b.Status.Database.Host},
		"bucket":  {a.Status.Storage.Bucket, b.Status.Storage.Bucket},
	}
	for what, s := range shared {
		if unsafe.StringData(s[0]) != unsafe.StringData(s[1]) {
			t.Errorf("the two Organizations' %s are two copies", what)
		}
	}
}

// TestCompactSecretDataIsSizedForWhatItKeeps: the database Secret drops
// more keys than it keeps, and its compacted data, digest and hashing
// included, must take less than a map made for all its keys would alone.
func TestCompactSecretDataIsSizedForWhatItKeeps(t *testing.T) {
	data := databaseSecretSample()
	kept := compactSecretData(data)
	compacting := allocatedBytes(func() any { return compactSecretData(data) })
	forAll := allocatedBytes(func() any {
		m := make(map[string][]byte, len(data))
		for k, v := range kept {
			m[k] = v
		}
		return m
	})
	if compacting >= forAll {
		t.Errorf("compacting allocates %d bytes a Secret, a map made for all its keys %d", compacting, forAll)
	}
}

// allocatedBytes is what f allocates a call, over many calls.
func allocatedBytes(f func() any) uint64 {
	const n = 1000
	keep := make([]any, n)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i := range keep {
		keep[i] = f()
	}
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(keep)
	return (after.TotalAlloc - before.TotalAlloc) / n
}
