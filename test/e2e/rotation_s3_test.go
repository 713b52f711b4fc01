package e2e_test

import (
	"context"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	tenancyv1alpha1 "github.com/orgforge/orgforge/api/v1alpha1"
	"github.com/orgforge/orgforge/controllers"
	"github.com/orgforge/orgforge/internal/testutil"
)

// TestRotationOfTheAccessKeyUnderIAMDelay rotates an organization's S3
// access key while a tenant writes with the old one, under the stack's IAM
// propagation delay: the Secret switches only once S3 honours the new key,
// the old key works through the grace period and is refused after it, and
// the user never holds more than IAM's two keys.
func TestRotationOfTheAccessKeyUnderIAMDelay(t *testing.T) {
	startOperator(t, nil)
	ctx := context.Background()
	const name = "rotkey"
	o := applyReady(t, testutil.NewOrg(name, withGrace(rotationGrace)))
	user := reg.Storage.UserName(name)
	before := secret(t, o, name+"-storage")
	old := storageClient(t, o)
	waitKeyWorks(t, func() error { return testutil.PutObject(ctx, old, stack.S3.Bucket, "orgs/rotkey/a.txt", "a") })

	// A tenant that keeps writing with the old key, and a watch on the
	// user's keys.
	var writes, failedWrites, mostKeys atomic.Int64
	var lastErr, firstFailure atomic.Value
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			if err := testutil.PutObject(ctx, old, stack.S3.Bucket, fmt.Sprintf("orgs/rotkey/w%d.txt", i%10), "w"); err != nil {
				if failedWrites.Add(1) == 1 {
					firstFailure.Store(time.Now())
				}
				lastErr.Store(err.Error())
			}
			writes.Add(1)
			if keys, err := reg.Storage.ListAccessKeys(ctx, user); err == nil && int64(len(keys)) > mostKeys.Load() {
				mostKeys.Store(int64(len(keys)))
			}
		}
	}()

	start := time.Now()
	setRotationToken(t, name, "k1")
	var pendingSeen bool
	var grace = before
	testutil.Eventually(t, 60*time.Second, "the storage Secret to switch keys", func() (bool, string) {
		grace = secret(t, o, name+"-storage")
		if _, ok := grace.Data["pending-access-key-id"]; ok {
			pendingSeen = true
		}
		return string(grace.Data["access-key-id"]) != string(before.Data["access-key-id"]), string(grace.Data["access-key-id"])
	})
	switched := time.Since(start)
	if !pendingSeen {
		t.Error("the new key never waited in pending-access-key-id, though S3 refuses new keys for a while")
	}
	if string(grace.Data["previous-access-key-id"]) != string(before.Data["access-key-id"]) ||
		string(grace.Data["previous-secret-access-key"]) != string(before.Data["secret-access-key"]) {
		t.Error("previous-* is not the key before the switch")
	}
	if _, ok := grace.Data["pending-access-key-id"]; ok {
		t.Error("pending-* is still in the Secret after the switch")
	}
	// The switch waited for the key to work: it works at once.
	fresh := stack.S3.Client(string(grace.Data["access-key-id"]), string(grace.Data["secret-access-key"]))
	if err := testutil.PutObject(ctx, fresh, stack.S3.Bucket, "orgs/rotkey/new.txt", "n"); err != nil {
		t.Errorf("the key the Secret switched to does not work: %v", err)
	}
	if err := testutil.PutObject(ctx, old, stack.S3.Bucket, "orgs/rotkey/old.txt", "o"); err != nil && time.Since(start) < rotationGrace {
		t.Errorf("the previous key stopped working within its grace period: %v", err)
	}
	testutil.Eventually(t, 60*time.Second, "the previous key to be refused", func() (bool, string) {
		err := testutil.PutObject(ctx, old, stack.S3.Bucket, "orgs/rotkey/old.txt", "o")
		return err != nil, "it still works"
	})
	revoked := time.Since(start)
	close(stop)
	<-done
	testutil.Eventually(t, 30*time.Second, "previous-* to leave the Secret", func() (bool, string) {
		s := secret(t, o, name+"-storage")
		_, has := s.Data["previous-access-key-id"]
		return !has && s.Annotations[controllers.AnnotationPreviousValidUntil] == "", fmt.Sprint(s.Annotations)
	})
	keys, err := reg.Storage.ListAccessKeys(ctx, user)
	if err != nil || len(keys) != 1 || keys[0] != string(grace.Data["access-key-id"]) {
		t.Errorf("keys after the grace period = %v, %v; want only the Secret's", keys, err)
	}
	if n := mostKeys.Load(); n > 2 {
		t.Errorf("the user held %d keys at once", n)
	}
	// Writes with the old key fail only once the grace period is over.
	until, err := time.Parse(time.RFC3339, grace.Annotations[controllers.AnnotationPreviousValidUntil])
	if err != nil {
		t.Fatalf("previous-valid-until: %v", err)
	}
	if first, ok := firstFailure.Load().(time.Time); ok && first.Before(until) {
		t.Errorf("a write with the old key failed at %v, before the end of its grace period at %v: %v", first, until, lastErr.Load())
	}
	t.Logf("%d writes with the old key during the rotation, %d refused (after its grace period), last: %v", writes.Load(), failedWrites.Load(), lastErr.Load())
	o = waitReady(t, name)
	if st := o.Status.Credentials; st.AccessKeyID != string(grace.Data["access-key-id"]) || st.RotationToken != "k1" {
		t.Errorf("status.credentials = %+v", st)
	}
	t.Logf("access key rotation under a %v IAM delay, grace %v: switched after %v, old key refused after %v",
		iamDelay, rotationGrace, switched.Round(time.Millisecond), revoked.Round(time.Millisecond))
}

// TestRotationOfTheAccessKeyInterruptedAtEachStep interrupts an access key
// rotation, under the IAM delay, between the new key's creation and the
// Secret, between the key working and the switch, and between the old
// key's deletion and the Secret's clean-up, restarting the operator each
// time; and withdraws one rotation before its key reached the Secret. The
// user never holds more than two keys, the Secret's key always works, and
// once settled the user holds only the keys the Secret names.
func TestRotationOfTheAccessKeyInterruptedAtEachStep(t *testing.T) {
	ctx := context.Background()
	const name = "rotkeycrash"
	var secretFails atomic.Bool
	start := func() *operator {
		return launchOperator(t, operatorOptions{wrap: failSecretUpdates(name+"-storage", &secretFails)})
	}
	op := start()
	t.Cleanup(func() { op.stop() })
	restart := func() {
		op.stop()
		op = start()
	}
	o := applyReady(t, testutil.NewOrg(name, withGrace(rotationGrace), testutil.WithStorageAccess(tenancyv1alpha1.StorageAccessAccessKey)))
	user := reg.Storage.UserName(name)
	keys := func() []string {
		ids, err := reg.Storage.ListAccessKeys(ctx, user)
		if err != nil {
			t.Fatal(err)
		}
		slices.Sort(ids)
		return ids
	}
	var mostKeys atomic.Int64
	stop := make(chan struct{})
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
			if ids, err := reg.Storage.ListAccessKeys(ctx, user); err == nil && int64(len(ids)) > mostKeys.Load() {
				mostKeys.Store(int64(len(ids)))
			}
		}
	}()
	defer close(stop)
	keyWorks := func(id, secret string) bool {
		return testutil.PutObject(ctx, stack.S3.Client(id, secret), stack.S3.Bucket, "orgs/"+name+"/probe.txt", "p") == nil
	}
	current := func() *corev1.Secret { return secret(t, o, name+"-storage") }
	settled := func(what string) {
		t.Helper()
		testutil.Eventually(t, 60*time.Second, what, func() (bool, string) {
			s := current()
			want := []string{string(s.Data["access-key-id"])}
			for _, k := range []string{"previous-access-key-id", "pending-access-key-id"} {
				if id := string(s.Data[k]); id != "" {
					want = append(want, id)
				}
			}
			slices.Sort(want)
			got := keys()
			return slices.Equal(got, want) && keyWorks(string(s.Data["access-key-id"]), string(s.Data["secret-access-key"])),
				fmt.Sprintf("user's keys %v, the Secret's %v", got, want)
		})
	}
	settled("the first key to work")
	first := current()

	// 1. The new key is made, its Secret write fails; the rotation is
	// withdrawn and the operator restarted: the key nobody holds goes.
	secretFails.Store(true)
	setRotationToken(t, name, "a")
	testutil.Eventually(t, 30*time.Second, "a second key to be issued", func() (bool, string) { return len(keys()) == 2, fmt.Sprint(keys()) })
	setRotationToken(t, name, "")
	restart()
	secretFails.Store(false)
	testutil.Eventually(t, 30*time.Second, "the key no Secret holds to be deleted", func() (bool, string) {
		return slices.Equal(keys(), []string{string(first.Data["access-key-id"])}), fmt.Sprint(keys())
	})
	settled("the first key alone")

	// 2. The new key waits in pending-*; once it works the switch fails;
	// the restarted operator switches.
	setRotationToken(t, name, "b")
	var pending string
	testutil.Eventually(t, 30*time.Second, "the new key to wait in pending-*", func() (bool, string) {
		pending = string(current().Data["pending-access-key-id"])
		return pending != "", "no pending key"
	})
	secretFails.Store(true)
	s := current()
	testutil.Eventually(t, 60*time.Second, "the pending key to work", func() (bool, string) {
		return keyWorks(pending, string(s.Data["pending-secret-access-key"])), "refused"
	})
	time.Sleep(2 * time.Second) // the operator tries to switch, and fails
	if got := string(current().Data["access-key-id"]); got != string(first.Data["access-key-id"]) {
		t.Fatalf("the Secret switched to %s although its updates fail", got)
	}
	restart()
	secretFails.Store(false)
	testutil.Eventually(t, 30*time.Second, "the Secret to switch to the pending key", func() (bool, string) {
		return string(current().Data["access-key-id"]) == pending, string(current().Data["access-key-id"])
	})
	settled("the switched Secret")

	// 3. The grace period ends, the old key is deleted, the Secret's
	// clean-up fails; the restarted operator cleans it up.
	secretFails.Store(true)
	testutil.Eventually(t, 60*time.Second, "the old key to be deleted", func() (bool, string) {
		return slices.Equal(keys(), []string{pending}), fmt.Sprint(keys())
	})
	if got := string(current().Data["previous-access-key-id"]); got != string(first.Data["access-key-id"]) {
		t.Fatalf("previous-access-key-id = %q while the Secret's updates fail", got)
	}
	restart()
	secretFails.Store(false)
	testutil.Eventually(t, 30*time.Second, "previous-* to leave the Secret", func() (bool, string) {
		_, has := current().Data["previous-access-key-id"]
		return !has, "still there"
	})
	settled("the Secret after the grace period")
	if n := mostKeys.Load(); n > 2 {
		t.Errorf("the user held %d keys at once", n)
	}
}

// TestRotateEveryRotatesBothCredentialsWithoutAResync runs an operator
// whose resync is far away: only the requeues a rotation asks for can
// rotate the credentials after rotateEvery and revoke the old ones at the
// end of the grace period.
func TestRotateEveryRotatesBothCredentialsWithoutAResync(t *testing.T) {
	startOperatorSettings(t, nil, nil, func(s *controllers.Settings) { s.ResyncPeriod = time.Hour })
	ctx := context.Background()
	const name = "rotevery"
	o := applyReady(t, testutil.NewOrg(name, withGrace(rotationGrace), func(o *tenancyv1alpha1.Organization) {
		o.Spec.Credentials.RotateEvery = &metav1.Duration{Duration: time.Minute}
	}))
	db, st := secret(t, o, name+"-database"), secret(t, o, name+"-storage")
	oldDB := string(db.Data["uri"])
	oldKey := stack.S3.Client(string(st.Data["access-key-id"]), string(st.Data["secret-access-key"]))
	waitKeyWorks(t, func() error { return testutil.PutObject(ctx, oldKey, stack.S3.Bucket, "orgs/rotevery/a.txt", "a") })

	testutil.Eventually(t, 2*time.Minute, "both Secrets to switch after rotateEvery", func() (bool, string) {
		db2, st2 := secret(t, o, name+"-database"), secret(t, o, name+"-storage")
		return string(db2.Data["username"]) != string(db.Data["username"]) && string(st2.Data["access-key-id"]) != string(st.Data["access-key-id"]),
			fmt.Sprintf("login %s, key %s", db2.Data["username"], st2.Data["access-key-id"])
	})
	testutil.Eventually(t, time.Minute, "both old credentials to stop working after the grace period", func() (bool, string) {
		return login(ctx, oldDB) != nil && testutil.PutObject(ctx, oldKey, stack.S3.Bucket, "orgs/rotevery/a.txt", "a") != nil, "one still works"
	})
	o = waitReady(t, name)
	c := o.Status.Credentials
	if c.LastRotation == nil || c.NextRotation == nil || !c.NextRotation.Time.After(c.LastRotation.Time) {
		t.Errorf("status.credentials = %+v; want the next rotation after the last", c)
	}
	if err := login(ctx, string(secret(t, o, name+"-database").Data["uri"])); err != nil {
		t.Errorf("the current login does not work: %v", err)
	}
}
