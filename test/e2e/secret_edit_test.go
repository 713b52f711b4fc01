package e2e_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	tenancyv1alpha1 "github.com/orgforge/orgforge/api/v1alpha1"
	"github.com/orgforge/orgforge/internal/testutil"
)

// editPassword sets the database Secret's password as kubectl patch would,
// leaving every other key as it is.
func editPassword(t *testing.T, o *tenancyv1alpha1.Organization, name, password string) {
	t.Helper()
	patch := map[string]any{"stringData": map[string]string{"password": password}}
	if err := mergePatchSecret(context.Background(), o.Status.Namespace, name, patch); err != nil {
		t.Fatal(err)
	}
}

func TestAPasswordEditedInTheSecretBecomesTheRolesPassword(t *testing.T) {
	startOperator(t, nil)
	ctx := context.Background()
	o := applyReady(t, testutil.NewOrg("victor"))
	oldURI := string(secret(t, o, "victor-database").Data["uri"])

	const chosen = "Chosen-by-hand-7f3c9a21"
	editPassword(t, o, "victor-database", chosen)
	testutil.Eventually(t, 30*time.Second, "the edited password to log in through the Secret's uri", func() (bool, string) {
		s := secret(t, o, "victor-database")
		if string(s.Data["password"]) != chosen || !strings.Contains(string(s.Data["uri"]), chosen) {
			return false, "uri not rewritten"
		}
		err := login(ctx, string(s.Data["uri"]))
		return err == nil, fmt.Sprint(err)
	})
	waitReady(t, "victor")
	if err := login(ctx, oldURI); err == nil {
		t.Error("the password the Secret no longer holds still logs in")
	}

	// A password the role cannot take: Ready goes False and the role keeps
	// the password it had.
	working := string(secret(t, o, "victor-database").Data["uri"])
	editPassword(t, o, "victor-database", "")
	o = waitCondition(t, "victor", tenancyv1alpha1.ConditionReady, "False", tenancyv1alpha1.ReasonInvalidSecret, 30*time.Second)
	if c := testutil.ConditionOf(o, tenancyv1alpha1.ConditionDatabaseReady); c.Reason != tenancyv1alpha1.ReasonInvalidSecret || !strings.Contains(c.Message, "victor-database") {
		t.Errorf("DatabaseReady = %+v, want InvalidSecret naming the Secret", c)
	}
	if err := login(ctx, working); err != nil {
		t.Errorf("an invalid Secret changed the role's password: %v", err)
	}

	editPassword(t, o, "victor-database", chosen+"-2")
	waitReady(t, "victor")
	if err := login(ctx, string(secret(t, o, "victor-database").Data["uri"])); err != nil {
		t.Errorf("the Secret's login does not work once Ready again: %v", err)
	}
}
