package controllers

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	tenancyv1alpha1 "github.com/orgforge/orgforge/api/v1alpha1"
	"github.com/orgforge/orgforge/internal/storage"
)

func TestARotationIsDueOnANewTokenOrOnceRotateEveryHasPassed(t *testing.T) {
	issued := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	hour := &metav1.Duration{Duration: time.Hour}
	cases := map[string]struct {
		spec tenancyv1alpha1.CredentialsSpec
		rot  rotation
		now  time.Time
		want string
	}{
		"nothing asked":            {rot: rotation{issuedAt: issued}, now: issued.Add(1000 * time.Hour)},
		"token acted on":           {spec: tenancyv1alpha1.CredentialsSpec{RotationToken: "a"}, rot: rotation{issuedAt: issued, token: "a"}, now: issued},
		"new token":                {spec: tenancyv1alpha1.CredentialsSpec{RotationToken: "b"}, rot: rotation{issuedAt: issued, token: "a"}, now: issued, want: `rotationToken "b"`},
		"token set the first time": {spec: tenancyv1alpha1.CredentialsSpec{RotationToken: "a"}, rot: rotation{issuedAt: issued}, now: issued, want: `rotationToken "a"`},
		"token removed":            {rot: rotation{issuedAt: issued, token: "a"}, now: issued},
		"before rotateEvery":       {spec: tenancyv1alpha1.CredentialsSpec{RotateEvery: hour}, rot: rotation{issuedAt: issued}, now: issued.Add(59 * time.Minute)},
		"at rotateEvery":           {spec: tenancyv1alpha1.CredentialsSpec{RotateEvery: hour}, rot: rotation{issuedAt: issued}, now: issued.Add(time.Hour), want: "rotateEvery 1h0m0s"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			if got := tc.rot.due(tc.spec, tc.now); got != tc.want {
				t.Errorf("due = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestTheSecretsAnnotationsRecordTheRotationTheyAreReadBackFrom(t *testing.T) {
	now := time.Date(2026, 3, 4, 5, 6, 7, 800, time.UTC)
	spec := tenancyv1alpha1.CredentialsSpec{RotationToken: "t", GracePeriod: &metav1.Duration{Duration: 40 * time.Second}}
	rot := rotated(spec, now)
	if want := time.Date(2026, 3, 4, 5, 6, 48, 0, time.UTC); !rot.validUntil.Equal(want) {
		t.Errorf("validUntil = %v, want %v: the grace period rounded up to the second", rot.validUntil, want)
	}
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Annotations: rot.annotations(), CreationTimestamp: metav1.NewTime(now.Add(-time.Hour))}}
	if diff := cmp.Diff(rot, readRotation(secret, spec, now), cmp.AllowUnexported(rotation{})); diff != "" {
		t.Errorf("read back (-want +got):\n%s", diff)
	}
	// A Secret written before rotations existed was issued at its creation.
	old := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{CreationTimestamp: metav1.NewTime(now)}}
	if got := readRotation(old, spec, now.Add(time.Hour)); !got.issuedAt.Equal(now) || got.switched || got.token != "" {
		t.Errorf("rotation of a Secret without annotations = %+v", got)
	}
	// Without a grace period, the annotation is removed.
	if a := (rotation{issuedAt: now, switched: true}).annotations(); a[AnnotationPreviousValidUntil] != "" || a[AnnotationRotatedAt] == "" {
		t.Errorf("annotations outside a grace period = %v", a)
	}
}

func TestTheRequeueIsTheEarliestWakeOrTheResync(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	cases := map[string]struct {
		wakes []wake
		want  time.Duration
	}{
		"no wake":           {want: time.Minute},
		"after the resync":  {wakes: []wake{wake(now.Add(time.Hour))}, want: time.Minute},
		"grace end earlier": {wakes: []wake{wake(now.Add(10 * time.Second)), {}}, want: 10*time.Second + 100*time.Millisecond},
		"earliest of two":   {wakes: []wake{wake(now.Add(30 * time.Second)), wake(now.Add(20 * time.Second))}, want: 20*time.Second + 100*time.Millisecond},
		"already past":      {wakes: []wake{wake(now.Add(-time.Second))}, want: 100 * time.Millisecond},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			if got := requeueAfter(time.Minute, now, tc.wakes...); got != tc.want {
				t.Errorf("requeueAfter = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestTheStatusMirrorsBothSecretsRotation(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	org := &tenancyv1alpha1.Organization{}
	org.Name = "acme"
	org.Spec.Credentials = tenancyv1alpha1.CredentialsSpec{RotationToken: "b", RotateEvery: &metav1.Duration{Duration: 24 * time.Hour}}
	s := newScope(org)
	s.db.current = "org_acme$1"
	s.db.rot = &rotation{issuedAt: t0, switched: true, token: "b", validUntil: t0.Add(time.Hour)}
	// The storage part has not rotated to token b yet.
	s.st.rot = &rotation{issuedAt: t0.Add(-time.Hour), token: "a"}
	s.st.data = map[string][]byte{"access-key-id": []byte("AKID")}
	got := credentialsStatus(s)
	want := tenancyv1alpha1.CredentialsStatus{
		DatabaseLogin: "org_acme$1", AccessKeyID: "AKID",
		LastRotation: metaTime(t0), NextRotation: metaTime(t0.Add(23 * time.Hour)), PreviousValidUntil: metaTime(t0.Add(time.Hour)),
		RotationToken: "a",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("status.credentials (-want +got):\n%s", diff)
	}
}

func TestAWakeIsScheduledOnlyForWhatIsStillToCome(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	spec := tenancyv1alpha1.CredentialsSpec{RotateEvery: &metav1.Duration{Duration: time.Hour}}
	// A rotation that is overdue, waiting for budget: no wake, or the
	// organization would be requeued at once, again and again.
	var w wake
	w.schedule(rotation{issuedAt: now.Add(-2 * time.Hour)}, spec, now)
	if !time.Time(w).IsZero() {
		t.Errorf("an overdue rotation scheduled a wake at %v", time.Time(w))
	}
	w.schedule(rotation{issuedAt: now, validUntil: now.Add(time.Minute)}, spec, now)
	if got := time.Time(w); !got.Equal(now.Add(time.Minute)) {
		t.Errorf("wake = %v, want the grace period's end", got)
	}
}

func TestARotationAskedForDuringAGracePeriodWakesAtItsEndNotBefore(t *testing.T) {
	now := time.Now()
	org := &tenancyv1alpha1.Organization{}
	org.Name = "acme"
	org.Spec.Credentials = tenancyv1alpha1.CredentialsSpec{RotationToken: "second", GracePeriod: &metav1.Duration{Duration: 24 * time.Hour}}
	s := newScope(org)
	end := now.Add(23 * time.Hour).Truncate(time.Second)
	s.db.secret = &corev1.Secret{}
	s.db.current, s.db.password = "org_acme$1", "new"
	s.db.previous, s.db.previousPassword = "org_acme", "old"
	s.db.rot = &rotation{issuedAt: now.Add(-time.Hour), switched: true, token: "first", validUntil: end}
	// The grace period's two logins are budgeted, as the rotation that
	// began it recorded.
	s.budgetLogins = 2
	s.st.secret = &corev1.Secret{}
	s.st.previous = storage.AccessKey{ID: "OLD"}
	s.st.rot = &rotation{issuedAt: now.Add(-time.Hour), switched: true, token: "first", validUntil: end}

	r := &OrganizationReconciler{}
	if err := r.planDatabaseRotation(t.Context(), s); err != nil {
		t.Fatal(err)
	}
	if err := r.planStorageRotation(t.Context(), s); err != nil {
		t.Fatal(err)
	}
	if s.db.switched || s.st.rotate {
		t.Fatal("a rotation started while the previous credential's grace period runs")
	}
	for part, w := range map[string]wake{"database": s.db.wake, "storage": s.st.wake} {
		if !time.Time(w).Equal(end) {
			t.Errorf("the %s part wakes at %v, want the grace end %v", part, time.Time(w), end)
		}
	}
	if !strings.Contains(s.db.waiting, "waits for the grace period of login org_acme to end") {
		t.Errorf("waiting = %q, want it to say the rotation waits for the grace period", s.db.waiting)
	}
}

func TestWithoutAccessKeyTheNextRotationIsTheDatabases(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	org := &tenancyv1alpha1.Organization{}
	org.Name = "acme"
	org.Spec.Storage.Access = tenancyv1alpha1.StorageAccessNone
	org.Spec.Credentials = tenancyv1alpha1.CredentialsSpec{RotateEvery: &metav1.Duration{Duration: 24 * time.Hour}}
	org.Status.Credentials.AccessKeyID = "GONE"
	s := newScope(org)
	s.db.current = "org_acme$1"
	s.db.rot = &rotation{issuedAt: t0.Add(48 * time.Hour), switched: true}
	// The storage Secret, with no key, was written at the creation.
	s.st.rot = &rotation{issuedAt: t0}
	s.st.data = map[string][]byte{"bucket": []byte("b")}
	got := credentialsStatus(s)
	if want := metaTime(t0.Add(72 * time.Hour)); !got.NextRotation.Equal(want) {
		t.Errorf("nextRotation = %v, want the database's %v", got.NextRotation, want)
	}
	if got.AccessKeyID != "" {
		t.Errorf("accessKeyID = %q with access None", got.AccessKeyID)
	}
}

func TestAStoragePartThatFailedBeforeItsKeyKeepsTheStatussKey(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	org := &tenancyv1alpha1.Organization{}
	org.Name = "acme"
	org.Spec.Storage.Access = tenancyv1alpha1.StorageAccessAccessKey
	org.Status.Credentials.AccessKeyID = "AKID"
	s := newScope(org)
	s.db.current = "org_acme"
	s.db.rot = &rotation{issuedAt: t0}
	s.st.rot = &rotation{issuedAt: t0}
	s.st.data = map[string][]byte{"bucket": []byte("b")}
	if got := credentialsStatus(s).AccessKeyID; got != "AKID" {
		t.Errorf("accessKeyID = %q after a storage part that did not reach its key, want AKID kept", got)
	}
}
