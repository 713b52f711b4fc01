package e2e_test

import (
	"context"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	tenancyv1alpha1 "github.com/orgforge/orgforge/api/v1alpha1"
	"github.com/orgforge/orgforge/internal/naming"
	"github.com/orgforge/orgforge/internal/testutil"
)

// TestAdoptingARotatedOrganizationWithoutItsSecretLeavesNoOldLoginWorking
// retains an Organization whose credentials rotated, so that its Secret
// names the login role org_<name>$1, loses that Secret as a lost
// Kubernetes cluster would, and applies the Organization again with
// adoption SameName and no rotation asked for. The adopted owner gets a
// new password, and the old login, which kept its password through
// Retain, must stop logging in: nobody holds a Secret for it any more.
func TestAdoptingARotatedOrganizationWithoutItsSecretLeavesNoOldLoginWorking(t *testing.T) {
	startOperator(t, nil)
	ctx := context.Background()
	const name = "adopt-rotated"
	o := applyReady(t, testutil.NewOrg(name, withGrace(rotationGrace), func(o *tenancyv1alpha1.Organization) {
		o.Spec.DeletionPolicy = tenancyv1alpha1.DeletionPolicyRetain
	}))
	dropRetained(t, o, "orgs/"+name+"/")
	exec(t, string(secret(t, o, naming.DatabaseSecretName(name)).Data["uri"]), "CREATE TABLE kept (v text); INSERT INTO kept VALUES ('still here')")
	rotateAndWait(t, o, "first")
	old := secret(t, o, naming.DatabaseSecretName(name))
	if got, want := string(old.Data["username"]), naming.LoginNames(name)[0]; got != want {
		t.Fatalf("the Secret's login after a rotation = %q, want %q", got, want)
	}
	deleteAndWait(t, name)
	if got := loginsThatWork(t, name); !slices.Equal(got, []string{naming.LoginNames(name)[0]}) {
		t.Fatalf("logins that may log in after Retain = %v, want the retained Secret's only", got)
	}
	lost := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: old.Namespace, Name: old.Name}}
	if err := k8s.Delete(ctx, lost); err != nil {
		t.Fatal(err)
	}

	adopted := applyReady(t, testutil.NewOrg(name, testutil.WithAdoption(tenancyv1alpha1.AdoptionSameName)))
	if a := adopted.Status.Adoption; a == nil || a.FromUID != string(o.UID) {
		t.Fatalf("status.adoption = %+v, want fromUID %s", a, o.UID)
	}
	fresh := secret(t, adopted, naming.DatabaseSecretName(name))
	if got := string(fresh.Data["username"]); got != naming.RoleName(name) {
		t.Errorf("the new Secret's login = %q, want the owner %q", got, naming.RoleName(name))
	}
	if v := kept(t, string(fresh.Data["uri"])); v != "still here" {
		t.Errorf("retained row read through the new Secret = %q", v)
	}
	checkSecretHoldsTheOnlyLogins(t, adopted)
	if err := login(ctx, string(old.Data["uri"])); err == nil {
		t.Error("the lost Secret's login still logs in after the adoption")
	}
}
