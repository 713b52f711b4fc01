package chaos_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	tenancyv1alpha1 "github.com/orgforge/orgforge/api/v1alpha1"
	"github.com/orgforge/orgforge/internal/testutil"
)

// TestDependencyOutages stops PostgreSQL, and then S3 with IAM, while
// organizations are being provisioned. While a dependency is down the
// conditions say so with its reason, the other half still converges, the
// operator never exits, and every organization is Ready once it returns.
// An organization created while the default DatabaseCluster's server is
// down is not placed until that server can be searched for its database,
// and is then placed there.
func TestDependencyOutages(t *testing.T) {
	sc := env.scale
	op := startOperator(t, "outage")
	op.waitStarted(t)
	var (
		all    []string
		groups []group
	)

	// shows is what each condition message says while the dependency is
	// down; cluster is where the organizations are placed once it is back.
	outage := func(what, prefix, condType, reason, shows, cluster string, length time.Duration, stop func() error, start func(context.Context) error) {
		t.Helper()
		batch := names(prefix, sc.outageOrgs)
		all = append(all, batch...)
		groups = append(groups, group{prefix, batch})
		cleanupOrgs(t, batch)
		if err := stop(); err != nil {
			t.Fatalf("stopping %s: %v", what, err)
		}
		down := time.Now()
		restarted := false
		t.Cleanup(func() {
			if !restarted {
				_ = start(context.Background())
			}
		})
		for _, n := range batch {
			create(t, newOrg(n))
		}
		// The condition shows the outage while it lasts; the other
		// half of each organization does not wait for it.
		other := tenancyv1alpha1.ConditionStorageReady
		if condType == tenancyv1alpha1.ConditionStorageReady {
			other = tenancyv1alpha1.ConditionDatabaseReady
		}
		seen := testutil.EventuallyEvery(t, poll, max(length, time.Minute)+time.Minute, fmt.Sprintf("%s=False (%s) while %s is down", condType, reason, what), func() (bool, string) {
			assertAlive(t, op)
			all, err := orgs(t.Context())
			if err != nil {
				return false, err.Error()
			}
			unavailable, otherDone := 0, 0
			example := ""
			for _, n := range batch {
				o, ok := all[n]
				if !ok {
					continue
				}
				if c := testutil.DescribeCondition(o, condType); strings.HasPrefix(c, "False/"+reason+":") && strings.Contains(c, shows) {
					unavailable++
				} else if example == "" {
					example = n + " " + c
				}
				if strings.HasPrefix(testutil.DescribeCondition(o, other), "True/") {
					otherDone++
				}
			}
			return unavailable == len(batch) && otherDone == len(batch),
				fmt.Sprintf("%d/%d show %s (%q), %d/%d have %s True; e.g. %s", unavailable, len(batch), reason, shows, otherDone, len(batch), other, example)
		})
		if rest := length - time.Since(down); rest > 0 {
			time.Sleep(rest)
		}
		assertAlive(t, op)
		if err := start(context.Background()); err != nil {
			t.Fatalf("starting %s again: %v", what, err)
		}
		restarted = true
		downFor := time.Since(down)
		settle := waitReady(t, batch, sc.converge)
		assertAlive(t, op)
		placedOn(t, batch, cluster)
		sum.outage(fmt.Sprintf("%s %s", what, downFor.Round(time.Second)))
		sum.figure("outage: %s down %s; %s shown after %s; %d orgs Ready %s after it returned",
			what, downFor.Round(time.Second), reason, seen.Round(100*time.Millisecond), len(batch), settle.Round(100*time.Millisecond))
	}

	for i := range sc.pgOutages {
		outage("PostgreSQL", fmt.Sprintf("pgdown%d", i), tenancyv1alpha1.ConditionDatabaseReady, tenancyv1alpha1.ReasonDatabaseUnavailable,
			"DatabaseCluster "+tenancyv1alpha1.DefaultClusterName, tenancyv1alpha1.DefaultClusterName,
			sc.pgOutage, env.stack.Postgres.Stop, env.stack.Postgres.Start)
	}
	outage("S3+IAM", "s3down", tenancyv1alpha1.ConditionStorageReady, tenancyv1alpha1.ReasonStorageUnavailable,
		"", tenancyv1alpha1.DefaultClusterName, sc.s3Outage, env.stack.S3.Stop, env.stack.S3.Start)

	for _, b := range groups {
		verifyProvisioned(t, b.prefix, b.names)
	}
	sum.orgs(len(all), 0)

	deleteAndVerifyGone(t, []*operator{op}, groups...)
}

// placedOn checks that each named Organization is placed on the
// cluster given, in its annotation and its status.
func placedOn(t testing.TB, names []string, cluster string) {
	t.Helper()
	all, err := orgs(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		o, ok := all[n]
		if !ok {
			t.Errorf("%s is missing", n)
			continue
		}
		if a, s := o.Annotations[tenancyv1alpha1.AnnotationCluster], o.Status.Database.Cluster; a != cluster || s != cluster {
			t.Errorf("%s: annotation says cluster %q, status says %q; want %q", n, a, s, cluster)
		}
	}
}
