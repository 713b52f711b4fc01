package chaos_test

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	tenancyv1alpha1 "github.com/orgforge/orgforge/api/v1alpha1"
)

// TestCrashSafety provisions organizations, and then deletes them, while
// the operator is SIGKILLed at random moments and started again, and checks
// that nothing was lost, duplicated or left behind.
func TestCrashSafety(t *testing.T) {
	sc := env.scale
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, 6))
	t.Logf("kill schedule seed %d", seed)
	all := names("crash", sc.crashOrgs)
	batches := split(all, sc.crashKills+1)
	cleanupOrgs(t, all)

	// killRounds starts the operator, lets act start some work, waits a
	// random moment and kills it, once per batch but the last; the last
	// batch goes to an operator that is left running.
	killRounds := func(phase string, perOrg time.Duration, act func(batch []string), pending func() bool) (busy int, last *operator) {
		for i, batch := range batches {
			op := startOperator(t, fmt.Sprintf("crash-%s-%d", phase, i))
			// Every other round lets the operator come up first, so
			// that kills land both in start-up and in steady work.
			if i%2 == 1 {
				op.waitStarted(t)
			}
			act(batch)
			if i == len(batches)-1 {
				return busy, op
			}
			// A random moment within about the time the batch takes.
			time.Sleep(50*time.Millisecond + time.Duration(rng.Int64N(int64(len(batch))*int64(perOrg))))
			assertAlive(t, op)
			if pending() {
				busy++
			}
			op.Kill()
			sum.kill("crash " + phase)
		}
		return busy, nil
	}

	start := time.Now()
	created := []string{}
	busy, op := killRounds("provision", 250*time.Millisecond, func(batch []string) {
		for _, n := range batch {
			create(t, newOrg(n, func(o *tenancyv1alpha1.Organization) {
				if len(created)%3 == 0 {
					o.Spec.Database.Extensions = []tenancyv1alpha1.ExtensionName{"pgcrypto"}
				}
			}))
			created = append(created, n)
		}
	}, func() bool {
		n, _ := countReady(created)
		return n < len(created)
	})
	settle := waitReady(t, all, sc.converge)
	total := time.Since(start)
	assertAlive(t, op)
	sum.figure("crash: %d orgs provisioned under %d SIGKILLs (%d while work was pending) in %s; %s from the last restart to all Ready",
		len(all), sc.crashKills, busy, total.Round(time.Second), settle.Round(time.Second))
	verifyProvisioned(t, "crash", all)
	if t.Failed() {
		t.FailNow()
	}
	op.stop()
	sum.orgs(len(all), 0)

	start = time.Now()
	deleted := []string{}
	busy, op = killRounds("delete", 60*time.Millisecond, func(batch []string) {
		deleteOrgs(t, batch...)
		deleted = append(deleted, batch...)
	}, func() bool {
		all, err := orgs(t.Context())
		if err != nil {
			return true
		}
		for _, n := range deleted {
			if _, ok := all[n]; ok {
				return true
			}
		}
		return false
	})
	settle = awaitGone(t, []*operator{op}, group{"crash", all})
	sum.figure("crash: %d orgs deleted under %d SIGKILLs (%d while work was pending) in %s; %s from the last restart to all gone",
		len(all), sc.crashKills, busy, time.Since(start).Round(time.Second), settle.Round(time.Second))
}

// split cuts s into n nearly equal parts.
func split(s []string, n int) [][]string {
	out := make([][]string, n)
	for i, v := range s {
		out[i*n/len(s)] = append(out[i*n/len(s)], v)
	}
	return out
}
