package e2e_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	tenancyv1alpha1 "github.com/orgforge/orgforge/api/v1alpha1"
	"github.com/orgforge/orgforge/controllers"
	"github.com/orgforge/orgforge/internal/aurora"
	"github.com/orgforge/orgforge/internal/devstack"
	"github.com/orgforge/orgforge/internal/naming"
	"github.com/orgforge/orgforge/internal/testutil"
)

// The day-two tests follow an Organization across the three parts of its
// life after creation, where they meet: credentials rotated, then deleted
// with Retain and adopted, then rotated again; and usage counted while two
// logins are open.

// dayTwoServer is a PostgreSQL server the day-two tests run on: the suite's
// default cluster, or a fleet server of another major behind a
// DatabaseCluster.
type dayTwoServer struct {
	name string
	pg   *devstack.Postgres
	// on places an Organization on the server.
	on []testutil.OrgOption
}

// dayTwoServers are the suite's default server and its PostgreSQL 13. The
// PostgreSQL 13 server gets one DatabaseCluster, named prefix-pg13, for the
// whole test t, made before its subtests and deleted after them: two
// DatabaseClusters on one server would both hold an adopted organization's
// database, which the operator reports as a Conflict, rightly.
func dayTwoServers(t *testing.T, prefix string) []dayTwoServer {
	t.Helper()
	cluster := prefix + "-pg13"
	newCluster(t, cluster, fleetServer(t, 13), map[string]string{"fleet-test": cluster})
	waitCluster(t, cluster, "True", tenancyv1alpha1.ReasonConnected)
	return []dayTwoServer{
		// Pinned: the parallel tests' DatabaseClusters would take their
		// share of unpinned Organizations.
		{name: "default", pg: stack.Postgres, on: []testutil.OrgOption{testutil.OnCluster(tenancyv1alpha1.DefaultClusterName)}},
		{name: "PostgreSQL13", on: []testutil.OrgOption{testutil.OnCluster(cluster)}},
	}
}

// server is the PostgreSQL the Organizations of srv live on.
func (srv dayTwoServer) server(t *testing.T) *devstack.Postgres {
	t.Helper()
	if srv.pg != nil {
		return srv.pg
	}
	return fleetServer(t, 13)
}

// withRotationToken sets spec.credentials.rotationToken, as an
// Organization applied again from Git carries it.
func withRotationToken(token string) testutil.OrgOption {
	return func(o *tenancyv1alpha1.Organization) { o.Spec.Credentials.RotationToken = token }
}

// dropLeftOnServer drops, when the test ends, what an Organization deleted
// with Retain may have left on pg: its database, its logins and its owner.
// Cleanups run last-in first-out, so an Organization applied later that
// adopted them has deleted them by then.
func dropLeftOnServer(t *testing.T, pg *devstack.Postgres, org string) {
	t.Helper()
	t.Cleanup(func() {
		ctx := context.Background()
		l := naming.LoginNames(org)
		_ = testutil.SuperuserExec(ctx, pg, "postgres", "DROP DATABASE IF EXISTS "+naming.DatabaseName(org)+" WITH (FORCE)")
		for _, role := range []string{l[0], l[1], naming.RoleName(org)} {
			_ = testutil.SuperuserExec(ctx, pg, "postgres", fmt.Sprintf("DROP ROLE IF EXISTS %q", role))
		}
	})
}

// deleteRetained deletes an Organization of deletionPolicy Retain and has
// what it kept dropped when the test ends, unless something adopted it.
func deleteRetained(t *testing.T, pg *devstack.Postgres, o *tenancyv1alpha1.Organization) {
	t.Helper()
	deleteAndWait(t, o.Name)
	dropRetained(t, o, "orgs/"+o.Name+"/")
	dropLeftOnServer(t, pg, o.Name)
}

// TestAdoptionOfARotatedOrganizationKeepsItsLoginAndRotatesOn rotates an
// Organization's credentials once, deletes it with Retain and applies it
// again with adoption SameName: the retained Secret's login, not the owner,
// is the one kept, with its password; the owner and the login are
// re-marked; and the adopted Organization rotates on to the other login.
func TestAdoptionOfARotatedOrganizationKeepsItsLoginAndRotatesOn(t *testing.T) {
	op := startOperator(t, nil)
	for _, srv := range dayTwoServers(t, "d2-rotated") {
		t.Run(srv.name, func(t *testing.T) {
			t.Parallel()
			name := "d2-rotated-" + map[string]string{"default": "a", "PostgreSQL13": "b"}[srv.name]
			pg := srv.server(t)
			opts := append(slices.Clone(srv.on), withGrace(rotationGrace), withRotationToken(""))
			logins := naming.LoginNames(name)

			first := applyReady(t, testutil.NewOrg(name, append(opts, testutil.WithDeletionPolicy(tenancyv1alpha1.DeletionPolicyRetain))...))
			rotateAndWait(t, first, "one")
			before := secret(t, first, naming.DatabaseSecretName(name))
			if got := string(before.Data["username"]); got != logins[0] {
				t.Fatalf("after one rotation the Secret's login is %q, want %q", got, logins[0])
			}
			exec(t, string(before.Data["uri"]), "CREATE TABLE kept (v text); INSERT INTO kept VALUES ('still here')")
			deleteRetained(t, pg, first)

			o := applyReady(t, testutil.NewOrg(name, append(opts, withRotationToken("one"),
				testutil.WithAdoption(tenancyv1alpha1.AdoptionSameName))...))
			if a := o.Status.Adoption; a == nil || a.FromUID != string(first.UID) {
				t.Errorf("status.adoption = %+v, want fromUID %s", a, first.UID)
			}
			s := secret(t, o, naming.DatabaseSecretName(name))
			if got := string(s.Data["username"]); got != logins[0] {
				t.Errorf("the adopted Secret's login is %q, want the rotated login %q", got, logins[0])
			}
			if string(s.Data["password"]) != string(before.Data["password"]) {
				t.Error("the adopted Secret's password changed, though the rotated login still logged in with it")
			}
			if v := kept(t, string(s.Data["uri"])); v != "still here" {
				t.Errorf("the row written through login %s reads %q", logins[0], v)
			}
			if o.Status.Credentials.DatabaseLogin != logins[0] {
				t.Errorf("status.credentials.databaseLogin = %q, want %q", o.Status.Credentials.DatabaseLogin, logins[0])
			}
			want := aurora.Marker{Org: name, UID: string(o.UID), Cluster: suiteClusterID(t, k8s)}.String()
			// Login $2 is made by the first rotation that needs it.
			for _, role := range []string{naming.RoleName(name), logins[0]} {
				if got := comment(t, pg, "role", role); got != want {
					t.Errorf("role %s is marked %q, want %q", role, got, want)
				}
			}
			if got := comment(t, pg, "database", naming.DatabaseName(name)); got != want {
				t.Errorf("database marker = %q, want %q", got, want)
			}
			checkSecretHoldsTheOnlyLoginsOn(t, pg, o)

			// The adopted Organization rotates on, to the other login; the
			// adopted one stops at the end of its grace period.
			grace, _, _ := rotateAndWait(t, o, "two")
			if got, prev := string(grace.Data["username"]), string(grace.Data["previous-username"]); got != logins[1] || prev != logins[0] {
				t.Errorf("the adopted Organization rotated to %q from %q; want %q from %q", got, prev, logins[1], logins[0])
			}
			if v := kept(t, string(secret(t, o, naming.DatabaseSecretName(name)).Data["uri"])); v != "still here" {
				t.Errorf("the row written before the adoption reads %q through login %s", v, logins[1])
			}
			checkSecretHoldsTheOnlyLoginsOn(t, pg, waitReady(t, name))
		})
	}
	if t.Failed() {
		t.Logf("events: %v", op.eventsSnapshot())
	}
}

// TestAdoptionDuringAGracePeriodEndsItWhenItWouldHaveEnded deletes a
// rotated Organization with Retain while its previous login's grace period
// runs, and applies it again with adoption SameName, once before the grace
// period ends and once after. Retain changes no login: both still log in
// while no Organization exists. The adopted Organization takes the grace
// period over as the Secret records it: it keeps the previous login, and
// its budget, until the recorded end and no later, and revokes it then, or
// at once when that end has passed.
func TestAdoptionDuringAGracePeriodEndsItWhenItWouldHaveEnded(t *testing.T) {
	startOperator(t, nil)
	servers := dayTwoServers(t, "d2-grace")
	cases := map[string]struct {
		grace time.Duration
		// afterGrace applies the Organization again once the grace
		// period recorded in the Secret has ended.
		afterGrace bool
	}{
		"within":    {grace: 45 * time.Second},
		"afterward": {grace: rotationGrace, afterGrace: true},
	}
	for _, srv := range servers {
		for cname, tc := range cases {
			t.Run(srv.name+"/"+cname, func(t *testing.T) {
				t.Parallel()
				ctx := context.Background()
				name := fmt.Sprintf("d2-grace-%s-%s", map[string]string{"default": "a", "PostgreSQL13": "b"}[srv.name], cname)
				pg := srv.server(t)
				opts := append(slices.Clone(srv.on), withGrace(tc.grace))
				logins, owner := naming.LoginNames(name), naming.RoleName(name)

				first := applyReady(t, testutil.NewOrg(name, append(opts, testutil.WithDeletionPolicy(tenancyv1alpha1.DeletionPolicyRetain))...))
				setRotationToken(t, name, "one")
				var during *corev1.Secret
				testutil.Eventually(t, 60*time.Second, "the Secret to switch to login $1", func() (bool, string) {
					during = secret(t, first, naming.DatabaseSecretName(name))
					return string(during.Data["username"]) == logins[0], string(during.Data["username"])
				})
				until, err := time.Parse(time.RFC3339, during.Annotations[controllers.AnnotationPreviousValidUntil])
				if err != nil {
					t.Fatalf("grace end %q: %v", during.Annotations[controllers.AnnotationPreviousValidUntil], err)
				}
				prevURI := uriOf(during, "previous-username", "previous-password")
				deleteRetained(t, pg, first)

				// Retain leaves the logins as they are, the previous one
				// included, whatever the grace period said.
				if tc.afterGrace {
					time.Sleep(time.Until(until) + time.Second)
				}
				for _, uri := range []string{string(during.Data["uri"]), prevURI} {
					if err := login(ctx, uri); err != nil {
						t.Errorf("a login of the retained Secret does not work while no Organization exists: %v", err)
					}
				}

				o := applyReady(t, testutil.NewOrg(name, append(opts, withRotationToken("one"),
					testutil.WithAdoption(tenancyv1alpha1.AdoptionSameName))...))
				s := secret(t, o, naming.DatabaseSecretName(name))
				if got := string(s.Data["username"]); got != logins[0] || string(s.Data["password"]) != string(during.Data["password"]) {
					t.Errorf("the adopted Secret's login is %q (same password: %v), want %q with its password",
						got, string(s.Data["password"]) == string(during.Data["password"]), logins[0])
				}
				if time.Now().Before(until) {
					// Within the grace period: the previous login is kept,
					// to the same end, and budgeted.
					if got := s.Annotations[controllers.AnnotationPreviousValidUntil]; got != during.Annotations[controllers.AnnotationPreviousValidUntil] {
						t.Errorf("the adopted grace period ends %q, want the recorded %q", got, during.Annotations[controllers.AnnotationPreviousValidUntil])
					}
					if string(s.Data["previous-username"]) != owner || string(s.Data["previous-password"]) != string(during.Data["previous-password"]) {
						t.Errorf("the adopted Secret's previous login is %q (same password: %v), want %q",
							s.Data["previous-username"], string(s.Data["previous-password"]) == string(during.Data["previous-password"]), owner)
					}
					if err := login(ctx, prevURI); err != nil && time.Now().Before(until) {
						t.Errorf("the previous login stopped within its grace period: %v", err)
					}
					if o.Annotations[controllers.AnnotationBudgetedLogins] != "2" {
						t.Errorf("the adopted Organization's budget does not count the two logins of its grace period: %v", o.Annotations)
					}
				} else if !tc.afterGrace {
					t.Log("the adoption took longer than the grace period; its checks within it are skipped")
				}
				testutil.Eventually(t, 60*time.Second, "the previous login to stop working", func() (bool, string) {
					return login(ctx, prevURI) != nil, "it still logs in"
				})
				testutil.Eventually(t, 30*time.Second, "previous-* to leave the Secret and the budget to count one login", func() (bool, string) {
					s = secret(t, o, naming.DatabaseSecretName(name))
					o = waitReady(t, name)
					_, has := s.Data["previous-password"]
					return !has && o.Annotations[controllers.AnnotationBudgetedLogins] == "", fmt.Sprint(o.Annotations)
				})
				checkSecretHoldsTheOnlyLoginsOn(t, pg, o)
				if got := loginsThatWorkOn(t, pg, name); !slices.Equal(got, []string{logins[0]}) {
					t.Errorf("logins that may log in after the adopted Organization settled = %v, want %v only", got, logins[:1])
				}
			})
		}
	}
}

// TestUsageCountsTheSessionsOfBothLoginsOfAGracePeriod opens a pool through
// the login a rotation switched to and another through the previous one,
// during the grace period: status.usage.connections counts both. The
// previous login's sessions stay open after its grace period, and are
// still counted.
func TestUsageCountsTheSessionsOfBothLoginsOfAGracePeriod(t *testing.T) {
	const period = 3 * time.Second
	startOperatorSettings(t, nil, nil, func(s *controllers.Settings) { s.UsagePeriod = period })
	for _, srv := range dayTwoServers(t, "d2-usage") {
		t.Run(srv.name, func(t *testing.T) {
			t.Parallel()
			name := "d2-usage-" + map[string]string{"default": "a", "PostgreSQL13": "b"}[srv.name]
			opts := append(slices.Clone(srv.on), withGrace(45*time.Second), testutil.WithStorageAccess(tenancyv1alpha1.StorageAccessNone))
			o := applyReady(t, testutil.NewOrg(name, opts...))
			logins := naming.LoginNames(name)
			setRotationToken(t, name, "one")
			var s *corev1.Secret
			testutil.Eventually(t, 60*time.Second, "the Secret to switch to login $1", func() (bool, string) {
				s = secret(t, o, naming.DatabaseSecretName(name))
				return string(s.Data["username"]) == logins[0], string(s.Data["username"])
			})
			startApp(t, string(s.Data["uri"]), 2)
			previous := startApp(t, uriOf(s, "previous-username", "previous-password"), 3)
			// Each login has a CONNECTION LIMIT of the pool's 10: during
			// the grace period the sessions count against both.
			connections := func(want, limit int32, what string) {
				t.Helper()
				testutil.Eventually(t, 10*period, what, func() (bool, string) {
					u := getOrg(t, name).Status.Usage
					if u == nil || u.Connections == nil {
						return false, "no usage"
					}
					return *u.Connections == want && u.ConnectionLimit == limit, fmt.Sprintf("%d connections of limit %d", *u.Connections, u.ConnectionLimit)
				})
			}
			connections(5, 20, "usage to count 2 sessions of "+logins[0]+" and 3 of "+naming.RoleName(name)+", of two limits of 10")

			// After the grace period, the previous login's sessions are
			// still open, and still the organization's.
			testutil.Eventually(t, 90*time.Second, "the previous login to be revoked", func() (bool, string) {
				_, has := secret(t, o, naming.DatabaseSecretName(name)).Data["previous-username"]
				return !has, "in grace"
			})
			after := getOrg(t, name).Status.Usage.UpdatedAt
			testutil.Eventually(t, 10*period, "usage read after the revocation", func() (bool, string) {
				u := getOrg(t, name).Status.Usage
				return u.UpdatedAt.After(after.Time), ""
			})
			connections(5, 10, "usage to count the 3 sessions of the revoked login still open, of the current login's limit")
			if got := previous.backends(t, 3); !slices.Equal(got, previous.pids) {
				t.Errorf("the previous login's pool lost connections: %v, then %v", previous.pids, got)
			}
		})
	}
}

// TestAdoptionOfARotatedOrganizationWithoutItsSecretLeavesNoOldLogin adopts
// what a rotated Organization left when its Secret was lost with it (a
// Kubernetes cluster rebuilt, the Secret deleted), applied again without
// any credentials spec: the owner gets a new password, which the new
// Secret holds, and the rotated login, whose password only the lost Secret
// held, no longer logs in.
func TestAdoptionOfARotatedOrganizationWithoutItsSecretLeavesNoOldLogin(t *testing.T) {
	startOperator(t, nil)
	ctx := context.Background()
	const name = "d2-lost-secret"
	opts := []testutil.OrgOption{testutil.OnCluster(tenancyv1alpha1.DefaultClusterName), withGrace(rotationGrace),
		testutil.WithStorageAccess(tenancyv1alpha1.StorageAccessNone)}
	first := applyReady(t, testutil.NewOrg(name, append(opts, testutil.WithDeletionPolicy(tenancyv1alpha1.DeletionPolicyRetain))...))
	rotateAndWait(t, first, "one")
	lost := secret(t, first, naming.DatabaseSecretName(name))
	exec(t, string(lost.Data["uri"]), "CREATE TABLE kept (v text); INSERT INTO kept VALUES ('still here')")
	deleteRetained(t, stack.Postgres, first)
	if err := k8s.Delete(ctx, lost); err != nil {
		t.Fatal(err)
	}

	o := applyReady(t, testutil.NewOrg(name, append(opts, testutil.WithAdoption(tenancyv1alpha1.AdoptionSameName))...))
	s := secret(t, o, naming.DatabaseSecretName(name))
	if v := kept(t, string(s.Data["uri"])); v != "still here" {
		t.Errorf("the retained row reads %q through the new Secret's login %s", v, s.Data["username"])
	}
	if err := login(ctx, string(lost.Data["uri"])); err == nil {
		t.Errorf("login %s still logs in with the password of the lost Secret", lost.Data["username"])
	}
	checkSecretHoldsTheOnlyLogins(t, o)
}

// TestFleetAnAdoptedGracePeriodOverBudgetRunsToItsEnd adopts a retained
// Secret's grace period on a DatabaseCluster whose budget another
// Organization took meanwhile: two logins no longer fit. The grace period,
// which applications rely on, is not cut short; the condition says it runs
// over the budget, and it ends when the Secret says.
func TestFleetAnAdoptedGracePeriodOverBudgetRunsToItsEnd(t *testing.T) {
	startOperator(t, nil)
	ctx := context.Background()
	const cluster, name = "d2-overbudget", "d2-overbudget-a"
	pg := fleetServer(t, 15)
	newCluster(t, cluster, pg, map[string]string{"fleet-test": cluster}, withCapacity(20))
	waitCluster(t, cluster, "True", tenancyv1alpha1.ReasonConnected)
	opts := []testutil.OrgOption{testutil.OnCluster(cluster), withGrace(45 * time.Second), testutil.WithPool(1, 10),
		testutil.WithStorageAccess(tenancyv1alpha1.StorageAccessNone)}
	first := applyReady(t, testutil.NewOrg(name, append(opts, testutil.WithDeletionPolicy(tenancyv1alpha1.DeletionPolicyRetain))...))
	setRotationToken(t, name, "one")
	var during *corev1.Secret
	testutil.Eventually(t, 60*time.Second, "the Secret to switch to login $1", func() (bool, string) {
		during = secret(t, first, naming.DatabaseSecretName(name))
		return string(during.Data["username"]) == naming.LoginNames(name)[0], string(during.Data["username"])
	})
	until, err := time.Parse(time.RFC3339, during.Annotations[controllers.AnnotationPreviousValidUntil])
	if err != nil {
		t.Fatal(err)
	}
	prevURI := uriOf(during, "previous-username", "previous-password")
	deleteRetained(t, pg, first)
	// Another Organization takes half the cluster's budget.
	applyReady(t, testutil.NewOrg("d2-overbudget-b", testutil.OnCluster(cluster), testutil.WithPool(1, 10),
		testutil.WithStorageAccess(tenancyv1alpha1.StorageAccessNone)))

	o := applyReady(t, testutil.NewOrg(name, append(opts, withRotationToken("one"), testutil.WithAdoption(tenancyv1alpha1.AdoptionSameName))...))
	if time.Now().After(until) {
		t.Skip("the adoption took longer than the grace period")
	}
	c := testutil.ConditionOf(o, tenancyv1alpha1.ConditionDatabaseReady)
	if c.Status != "True" || !strings.Contains(c.Message, "grace period") || !strings.Contains(c.Message, "budget") {
		t.Errorf("DatabaseReady = %s: %s; want True, saying the grace period runs over the budget", c.Status, c.Message)
	}
	if err := login(ctx, prevURI); err != nil && time.Now().Before(until) {
		t.Errorf("the previous login was cut off within its grace period: %v", err)
	}
	testutil.Eventually(t, 60*time.Second, "the previous login to stop working", func() (bool, string) {
		return login(ctx, prevURI) != nil, "it still logs in"
	})
	testutil.Eventually(t, 30*time.Second, "the condition to no longer speak of the budget", func() (bool, string) {
		c := testutil.ConditionOf(waitReady(t, name), tenancyv1alpha1.ConditionDatabaseReady)
		return !strings.Contains(c.Message, "budget"), c.Message
	})
	checkSecretHoldsTheOnlyLoginsOn(t, pg, getOrg(t, name))
}
