package v1alpha1_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tenancyv1alpha1 "github.com/orgforge/orgforge/api/v1alpha1"
	"github.com/orgforge/orgforge/internal/devstack"
	"github.com/orgforge/orgforge/internal/testutil"
)

var k8s client.Client

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	st, err := devstack.Start(context.Background(), devstack.Options{Kube: true, CRDPaths: []string{"../../config/crd/bases"}})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() { _ = st.Close() }()
	scheme := runtime.NewScheme()
	if err := tenancyv1alpha1.AddToScheme(scheme); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if k8s, err = client.New(st.Kube.Config, client.Options{Scheme: scheme}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}

func TestAPIServerRejectsInvalidOrganizationsWithReadableMessages(t *testing.T) {
	cases := map[string]testutil.Refusal{
		"name longer than 50 characters": {
			Obj: testutil.UnstructuredOrg(strings.Repeat("a", 51), nil), Message: "at most 50 characters",
		},
		"name with a dot": {
			Obj: testutil.UnstructuredOrg("acme.corp", nil), Message: "must be a DNS label",
		},
		"name with upper case": {
			Obj: testutil.UnstructuredOrg("Acme", nil), Message: "lowercase RFC 1123",
		},
		"name with an underscore": {
			Obj: testutil.UnstructuredOrg("acme_corp", nil), Message: "lowercase RFC 1123",
		},
		"unknown deletion policy": {
			Obj: testutil.UnstructuredOrg("bad-policy", map[string]any{"deletionPolicy": "Destroy"}), Message: `supported values: "Retain", "Delete"`,
		},
		"min connections above max": {
			Obj: testutil.UnstructuredOrg("bad-pool", testutil.PoolSpec(20, 10)), Message: "minConnections must not be greater than database.pool.maxConnections",
		},
		"max connections above 1000": {
			Obj: testutil.UnstructuredOrg("big-pool", testutil.PoolSpec(2, 1001)), Message: "should be less than or equal to 1000",
		},
		"max connections zero": {
			Obj: testutil.UnstructuredOrg("zero-pool", testutil.PoolSpec(0, 0)), Message: "should be greater than or equal to 1",
		},
		"negative min connections": {
			Obj: testutil.UnstructuredOrg("neg-pool", testutil.PoolSpec(-1, 10)), Message: "should be greater than or equal to 0",
		},
		"connections given as text": {
			Obj: testutil.UnstructuredOrg("text-pool", testutil.PoolSpec(2, "ten")), Message: "must be of type integer",
		},
		"extension carrying SQL": {
			Obj: testutil.UnstructuredOrg("sql-ext", testutil.ExtensionsSpec("pgcrypto; DROP DATABASE x")), Message: "should match",
		},
		"extension with a quote": {
			Obj: testutil.UnstructuredOrg("quote-ext", testutil.ExtensionsSpec(`pgcrypto"`)), Message: "should match",
		},
		"extension in upper case": {
			Obj: testutil.UnstructuredOrg("upper-ext", testutil.ExtensionsSpec("PGCrypto")), Message: "should match",
		},
		"extension listed twice": {
			Obj: testutil.UnstructuredOrg("dup-ext", testutil.ExtensionsSpec("citext", "citext")), Message: "Duplicate value",
		},
		"extension name over 63 characters": {
			Obj: testutil.UnstructuredOrg("long-ext", testutil.ExtensionsSpec(strings.Repeat("e", 64))), Message: "may not be more than 63",
		},
		"more than 32 extensions": {
			Obj: testutil.UnstructuredOrg("many-ext", testutil.ExtensionsSpec(testutil.NumberedExtensions(33)...)), Message: "must have at most 32 items",
		},
		"unknown storage access": {
			Obj: testutil.UnstructuredOrg("bad-access", map[string]any{"storage": map[string]any{"access": "Public"}}), Message: `supported values: "None", "AccessKey"`,
		},
		"namespace with an underscore": {
			Obj: testutil.UnstructuredOrg("bad-ns", map[string]any{"namespace": "kube_system"}), Message: "should match",
		},
		"namespace with a path": {
			Obj: testutil.UnstructuredOrg("path-ns", map[string]any{"namespace": "../default"}), Message: "should match",
		},
		"namespace over 63 characters": {
			Obj: testutil.UnstructuredOrg("long-ns", map[string]any{"namespace": strings.Repeat("n", 64)}), Message: "may not be more than 63",
		},
		"rotation every 30 seconds": {
			Obj: testutil.UnstructuredOrg("fast-rotate", map[string]any{"credentials": map[string]any{"rotateEvery": "30s", "gracePeriod": "10s"}}), Message: "rotateEvery must be at least 1m",
		},
		"rotation shorter than its grace period": {
			Obj: testutil.UnstructuredOrg("short-rotate", map[string]any{"credentials": map[string]any{"rotateEvery": "10m"}}), Message: "rotateEvery must be longer than credentials.gracePeriod",
		},
		"grace period of a second": {
			Obj: testutil.UnstructuredOrg("short-grace", map[string]any{"credentials": map[string]any{"gracePeriod": "1s"}}), Message: "gracePeriod must be between 10s and 720h",
		},
		"grace period that is not a duration": {
			Obj: testutil.UnstructuredOrg("text-grace", map[string]any{"credentials": map[string]any{"gracePeriod": "an hour"}}), Message: "gracePeriod",
		},
		"unknown adoption policy": {
			Obj: testutil.UnstructuredOrg("bad-adopt", map[string]any{"adoption": "Always"}), Message: `supported values: "Never", "SameName"`,
		},
		"display name over 256 characters": {
			Obj: testutil.UnstructuredOrg("long-display", map[string]any{"displayName": strings.Repeat("d", 257)}), Message: "may not be more than 256",
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			testutil.CheckRefused(t, k8s, tc)
			var got tenancyv1alpha1.Organization
			if err := k8s.Get(context.Background(), client.ObjectKey{Name: tc.Obj.GetName()}, &got); !apierrors.IsNotFound(err) {
				t.Errorf("object exists after rejection (err=%v)", err)
			}
		})
	}
}

func TestAPIServerFillsDefaultsForAMinimalOrganization(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	o := &tenancyv1alpha1.Organization{}
	o.Name = "minimal"
	if err := k8s.Create(ctx, testutil.UnstructuredOrg("minimal", nil)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = k8s.Delete(context.Background(), o) })
	if err := k8s.Get(ctx, client.ObjectKeyFromObject(o), o); err != nil {
		t.Fatal(err)
	}
	want := tenancyv1alpha1.OrganizationSpec{
		DeletionPolicy: tenancyv1alpha1.DeletionPolicyRetain,
		Database:       tenancyv1alpha1.DatabaseSpec{Pool: tenancyv1alpha1.PoolSpec{MinConnections: 2, MaxConnections: 10}},
		Storage:        tenancyv1alpha1.StorageSpec{Access: tenancyv1alpha1.StorageAccessAccessKey},
		Credentials:    tenancyv1alpha1.CredentialsSpec{GracePeriod: &metav1.Duration{Duration: time.Hour}},
		Adoption:       tenancyv1alpha1.AdoptionNever,
	}
	if diff := cmp.Diff(want, o.Spec); diff != "" {
		t.Errorf("defaulted spec (-want +got):\n%s", diff)
	}
}

func TestNamespaceCannotChangeOnceSet(t *testing.T) {
	cases := map[string]struct {
		initial string
		update  string
		allowed bool
	}{
		"explicit namespace changed":        {initial: "team-a", update: "team-b"},
		"explicit namespace removed":        {initial: "team-a", update: ""},
		"default namespace replaced":        {initial: "", update: "team-b"},
		"default namespace spelled out":     {initial: "", update: "org-{name}", allowed: true},
		"explicit namespace kept on update": {initial: "team-a", update: "team-a", allowed: true},
	}
	i := 0
	for name, tc := range cases {
		i++
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			objName := fmt.Sprintf("ns-case-%d", i)
			o := &tenancyv1alpha1.Organization{}
			o.Name = objName
			o.Spec.Namespace = tc.initial
			o.Spec.DeletionPolicy = tenancyv1alpha1.DeletionPolicyRetain
			o.Spec.Storage.Access = tenancyv1alpha1.StorageAccessAccessKey
			o.Spec.Database.Pool = tenancyv1alpha1.PoolSpec{MinConnections: 2, MaxConnections: 10}
			if err := k8s.Create(ctx, o); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = k8s.Delete(context.Background(), o) })
			o.Spec.Namespace = strings.ReplaceAll(tc.update, "{name}", objName)
			o.Spec.DisplayName = "changed"
			err := k8s.Update(ctx, o)
			switch {
			case tc.allowed && err != nil:
				t.Fatalf("update refused: %v", err)
			case !tc.allowed && err == nil:
				t.Fatal("update accepted; want spec.namespace is immutable")
			case !tc.allowed && !strings.Contains(err.Error(), "spec.namespace is immutable"):
				t.Fatalf("message %q does not say the namespace is immutable", err)
			}
		})
	}
}
