package testutil_test

import (
	"context"
	"errors"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	tenancyv1alpha1 "github.com/orgforge/orgforge/api/v1alpha1"
	"github.com/orgforge/orgforge/internal/testutil"
)

func TestPollReturnsTheLastDetailWhenTheConditionNeverHolds(t *testing.T) {
	calls := 0
	_, last, err := testutil.Poll(context.Background(), time.Millisecond, 20*time.Millisecond, func() (bool, string) {
		calls++
		return false, "not yet"
	})
	if err == nil || last != "not yet" || calls < 2 {
		t.Errorf("Poll = %q, %v after %d calls; want the last detail and an error after several calls", last, err, calls)
	}
	_, _, err = testutil.Poll(context.Background(), time.Millisecond, time.Second, func() (bool, string) {
		calls++
		return calls > 5, ""
	})
	if err != nil {
		t.Errorf("Poll on a condition that comes to hold: %v", err)
	}
}

func TestReadyAtGenerationNeedsTheConditionAndTheStatusAtTheGeneration(t *testing.T) {
	ready := func(condGen, statusGen int64, s metav1.ConditionStatus) *tenancyv1alpha1.Organization {
		o := testutil.NewOrg("a")
		o.Generation = 2
		o.Status.ObservedGeneration = statusGen
		o.Status.Conditions = []metav1.Condition{{Type: tenancyv1alpha1.ConditionReady, Status: s, ObservedGeneration: condGen}}
		return o
	}
	cases := map[string]struct {
		org  *tenancyv1alpha1.Organization
		want bool
	}{
		"ready at the generation": {ready(2, 2, metav1.ConditionTrue), true},
		"condition of an earlier": {ready(1, 2, metav1.ConditionTrue), false},
		"status of an earlier":    {ready(2, 1, metav1.ConditionTrue), false},
		"not ready":               {ready(2, 2, metav1.ConditionFalse), false},
		"no condition at all":     {testutil.NewOrg("b"), false},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			if got := testutil.ReadyAtGeneration(tc.org); got != tc.want {
				t.Errorf("ReadyAtGeneration = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestNewOrgAppliesItsOptionsInOrder(t *testing.T) {
	o := testutil.NewOrg("a", testutil.WithPool(1, 5), testutil.InNamespace("team"), testutil.WithExtensions("pgcrypto"),
		testutil.WithExtensions("citext"), testutil.WithLabel("k", "v"), testutil.WithDeletionPolicy(tenancyv1alpha1.DeletionPolicyRetain),
		testutil.WithAdoption(tenancyv1alpha1.AdoptionSameName))
	want := tenancyv1alpha1.OrganizationSpec{
		Namespace:      "team",
		DeletionPolicy: tenancyv1alpha1.DeletionPolicyRetain,
		Database: tenancyv1alpha1.DatabaseSpec{
			Pool:       tenancyv1alpha1.PoolSpec{MinConnections: 1, MaxConnections: 5},
			Extensions: []tenancyv1alpha1.ExtensionName{"pgcrypto", "citext"},
		},
		Storage:     tenancyv1alpha1.StorageSpec{Access: tenancyv1alpha1.StorageAccessAccessKey},
		Credentials: tenancyv1alpha1.CredentialsSpec{GracePeriod: &metav1.Duration{Duration: time.Hour}},
		Adoption:    tenancyv1alpha1.AdoptionSameName,
	}
	if diff := cmp.Diff(want, o.Spec); diff != "" || o.Labels["k"] != "v" {
		t.Errorf("spec (-want +got):\n%s\nlabels %v", diff, o.Labels)
	}
}

func TestParallelReturnsEveryError(t *testing.T) {
	errs := testutil.Parallel([]int{1, 2, 3, 4, 5}, 2, func(i int) error {
		if i%2 == 1 {
			return errors.New(strings.Repeat("x", i))
		}
		return nil
	})
	var got []string
	for _, err := range errs {
		got = append(got, err.Error())
	}
	slices.Sort(got)
	if want := []string{"x", "xxx", "xxxxx"}; !slices.Equal(got, want) {
		t.Errorf("errors %q, want %q", got, want)
	}
}

func TestProcessTellsAStopFromACrash(t *testing.T) {
	dir := t.TempDir()
	p, err := testutil.StartProcess(exec.Command("sh", "-c", "echo one; echo two; exec sleep 60"), filepath.Join(dir, "log"))
	if err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, "the log's second line", func() (bool, string) {
		return p.Tail(1) == "two", p.Log()
	})
	if p.Exited() || p.Signalled() {
		t.Fatal("the process counts as ended before it was stopped")
	}
	p.Stop(10 * time.Second)
	if !p.Exited() || !p.Signalled() || p.Err() == nil {
		t.Errorf("after Stop: exited %v, signalled %v, err %v", p.Exited(), p.Signalled(), p.Err())
	}

	crash, err := testutil.StartProcess(exec.Command("sh", "-c", "exit 3"), filepath.Join(dir, "crash"))
	if err != nil {
		t.Fatal(err)
	}
	<-crash.Done()
	if crash.Signalled() || crash.Err() == nil {
		t.Errorf("a process that exited on its own: signalled %v, err %v", crash.Signalled(), crash.Err())
	}
	if got := testutil.TailFile(filepath.Join(dir, "missing"), 3); !strings.Contains(got, "no such file") {
		t.Errorf("TailFile of a missing file = %q, want the error", got)
	}
}

// TestNoProductionCodeImportsTheKit keeps the kit out of the operator's
// binary: only tests, the bench and make dev's driver may use it.
func TestNoProductionCodeImportsTheKit(t *testing.T) {
	if testing.Short() {
		t.Skip("lists the module's packages with go list")
	}
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no go command")
	}
	out, err := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}}", "github.com/orgforge/orgforge").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, pkg := range strings.Fields(string(out)) {
		if strings.HasSuffix(pkg, "/internal/testutil") {
			t.Errorf("the manager's binary imports %s", pkg)
		}
	}
	if !strings.Contains(string(out), "github.com/orgforge/orgforge/internal/operator") {
		t.Errorf("go list -deps of the manager does not list internal/operator: the check is broken\n%s", out)
	}
}
