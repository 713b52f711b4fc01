package chaos_test

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/orgforge/orgforge/internal/naming"
	"github.com/orgforge/orgforge/internal/testutil"
)

const (
	leaseNamespace = "orgforge-system"
	leaseName      = "orgforge.tenancy.orgforge.io"
	// leaseDuration is controller-runtime's default, which orgforge keeps.
	leaseDuration = 15 * time.Second
)

func lease(ctx context.Context) (*coordinationv1.Lease, error) {
	l := &coordinationv1.Lease{}
	err := env.k8s.Get(ctx, client.ObjectKey{Namespace: leaseNamespace, Name: leaseName}, l)
	return l, err
}

// leads reports whether op's controller runs, which controller-runtime
// starts only once the manager holds the lease.
func leads(op *operator) bool {
	return strings.Contains(op.Log(), "Starting workers")
}

// TestLeaderElectionFailover runs two operators with leader election,
// SIGKILLs the leader in the middle of provisioning and checks that the
// other takes over within about the lease duration and finishes the work;
// in the long run a new follower joins after each kill and the leader is
// killed again. No organization may be provisioned twice.
func TestLeaderElectionFailover(t *testing.T) {
	sc := env.scale
	ctx := t.Context()
	ns := &corev1.Namespace{}
	ns.Name = leaseNamespace
	if err := env.k8s.Create(ctx, ns); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	flags := []string{"--leader-elect=true", "--leader-election-namespace=" + leaseNamespace}
	live := []*operator{startOperator(t, "leader-0", flags...), startOperator(t, "leader-1", flags...)}
	all := names("failover", sc.leaderOrgs)
	cleanupOrgs(t, all)
	rounds := split(all, sc.failovers)
	var killed time.Time

	for round, batch := range rounds {
		// The leader is the one whose controller runs; the other waits
		// for the Lease.
		var leader, follower *operator
		testutil.EventuallyEvery(t, poll, 2*time.Minute, "one operator to lead", func() (bool, string) {
			assertAlive(t, live...)
			leader, follower = nil, nil
			for i, op := range live {
				if leads(op) {
					if leader != nil {
						t.Fatalf("%s and %s run their controllers at once", leader.name, op.name)
					}
					leader, follower = op, live[1-i]
				}
			}
			return leader != nil, "no leader yet"
		})
		before, err := lease(ctx)
		if err != nil {
			t.Fatalf("the leader holds no Lease %s/%s: %v", leaseNamespace, leaseName, err)
		}
		holder := *before.Spec.HolderIdentity
		t.Logf("%s leads as %s", leader.name, holder)

		firstHalf, secondHalf := batch[:len(batch)/2], batch[len(batch)/2:]
		for _, n := range firstHalf {
			create(t, newOrg(n))
		}
		testutil.EventuallyEvery(t, poll, sc.converge, "the leader to provision an organization", func() (bool, string) {
			n, example := countReady(firstHalf)
			return n > 0, example
		})
		// The rest is created and the leader killed at once: it dies
		// with work pending.
		for _, n := range secondHalf {
			create(t, newOrg(n))
		}
		ready, _ := countReady(all)
		if leads(follower) {
			t.Fatal("the follower runs its controller while the leader lives")
		}
		killed = time.Now()
		last, err := lease(ctx)
		if err != nil {
			t.Fatal(err)
		}
		leader.Kill()
		sum.kill("leader")

		var after *coordinationv1.Lease
		observed := testutil.EventuallyEvery(t, poll, 4*leaseDuration, "the follower to take the lease", func() (bool, string) {
			assertAlive(t, follower)
			l, err := lease(ctx)
			if err != nil {
				return false, err.Error()
			}
			after = l
			return *l.Spec.HolderIdentity != holder, "holder " + *l.Spec.HolderIdentity
		})
		// The lease is taken once it has not been renewed for its
		// duration, checked every retry period.
		sinceRenew := after.Spec.AcquireTime.Sub(last.Spec.RenewTime.Time)
		if sinceRenew > 2*leaseDuration {
			t.Errorf("the follower took the lease %s after the leader's last renewal; the lease lasts %s", sinceRenew, leaseDuration)
		}
		testutil.EventuallyEvery(t, poll, time.Minute, "the follower's controller to start", func() (bool, string) {
			return leads(follower), "not started"
		})
		sum.figure("failover %d: leader SIGKILLed with %d/%d orgs Ready; lease taken %s after the kill (%s after the last renewal; lease %s)",
			round+1, ready, len(all), observed.Round(100*time.Millisecond), sinceRenew.Round(100*time.Millisecond), leaseDuration)
		live = []*operator{follower}
		if round < len(rounds)-1 {
			live = append(live, startOperator(t, fmt.Sprintf("leader-%d", round+2), flags...))
		}
	}
	waitReady(t, all, sc.converge)
	assertAlive(t, live...)
	sum.figure("failover: all %d orgs Ready %s after the last kill", len(all), time.Since(killed).Round(100*time.Millisecond))
	verifyProvisioned(t, "failover", all)
	checkProvisionedOnce(t, all)
	sum.orgs(len(all), 0)

	deleteAndVerifyGone(t, nil, group{"failover", all})
}

// checkProvisionedOnce reads the PostgreSQL statement log: each database
// was created by one CREATE DATABASE, and no statement of two racing
// operators failed because the other had just created the same thing.
func checkProvisionedOnce(t *testing.T, orgs []string) {
	t.Helper()
	b, err := os.ReadFile(env.stack.Postgres.LogPath)
	if err != nil {
		t.Fatal(err)
	}
	log := string(b)
	for _, n := range orgs {
		db := naming.DatabaseName(n)
		if c := strings.Count(log, fmt.Sprintf("CREATE DATABASE %q ", db)); c != 1 {
			t.Errorf("%d CREATE DATABASE statements for %s, want 1", c, db)
		}
		dup := regexp.MustCompile(`ERROR:\s+(role|database) "` + db + `" already exists`)
		if dup.MatchString(log) {
			t.Errorf("two writers raced to create %s: %s", db, dup.FindString(log))
		}
	}
}
