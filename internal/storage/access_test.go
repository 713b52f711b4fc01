package storage

import (
	"errors"
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// accessRequest asks for org's access under its own prefix, holding current.
func accessRequest(org string, current AccessKey) AccessRequest {
	return AccessRequest{
		Org:     org,
		Marker:  Marker{Org: org, UID: "uid-" + org},
		Prefix:  "orgs/" + org + "/",
		Current: current,
	}
}

// ensureAccess calls EnsureAccess on a claimed prefix and fails the test on
// an error.
func ensureAccess(t *testing.T, s *Service, req AccessRequest) Access {
	t.Helper()
	if _, err := s.EnsurePrefix(t.Context(), req.Prefix, req.Marker); err != nil {
		t.Fatalf("EnsurePrefix: %v", err)
	}
	a, err := s.EnsureAccess(t.Context(), req)
	if err != nil {
		t.Fatalf("EnsureAccess(%s): %v", req.Org, err)
	}
	return a
}

// newAccess gives org its access on a service of its own, as a first
// reconcile would.
func newAccess(t *testing.T, org string) (*Service, AccessRequest, Access) {
	t.Helper()
	s := newTestService(t)
	req := accessRequest(org, AccessKey{})
	return s, req, ensureAccess(t, s, req)
}

// keyIDs lists user's keys as IAM has them.
func keyIDs(t *testing.T, s *Service, user string) []string {
	t.Helper()
	ids, err := s.ListAccessKeys(t.Context(), user)
	if err != nil {
		t.Fatalf("ListAccessKeys(%s): %v", user, err)
	}
	return ids
}

// wantKeptAlone calls EnsureAccess with req and checks that it changed
// nothing: a's key is still the Secret's, and the user's only one.
func wantKeptAlone(t *testing.T, s *Service, req AccessRequest, a Access) {
	t.Helper()
	again := ensureAccess(t, s, req)
	if again.Key != a.Key || len(again.Changes) != 0 {
		t.Errorf("EnsureAccess again = key %s, changes %q; want key %s kept and no change", again.Key.ID, again.Changes, a.Key.ID)
	}
	if diff := cmp.Diff([]string{a.Key.ID}, keyIDs(t, s, a.User)); diff != "" {
		t.Errorf("the user's keys (-want +got):\n%s", diff)
	}
}

func TestEnsureAccessIssuesOneWorkingKeyAndChangesNothingTheSecondTime(t *testing.T) {
	t.Parallel()
	s := newTestService(t)
	req := accessRequest("access-new", AccessKey{})
	a := ensureAccess(t, s, req)
	want := []string{
		fmt.Sprintf("created IAM user %s with access to prefix %s only", UserName(req.Org), req.Prefix),
		fmt.Sprintf("issued access key %s for prefix %s", a.Key.ID, req.Prefix),
	}
	if diff := cmp.Diff(want, a.Changes); diff != "" {
		t.Errorf("Changes (-want +got):\n%s", diff)
	}
	if a.User != UserName(req.Org) || a.Key.ID == "" || a.Key.Secret == "" {
		t.Fatalf("EnsureAccess = %+v; want the organization's user and a whole key", a)
	}
	waitWorks(t, s, a.Key, req.Prefix)

	req.Current = a.Key
	wantKeptAlone(t, s, req, a)
}

func TestEnsureAccessDeletesAKeyThatNeverReachedTheSecret(t *testing.T) {
	t.Parallel()
	s, req, a := newAccess(t, "access-orphan")
	// A key issued by a reconcile that crashed before it wrote the Secret.
	orphan, err := s.CreateAccessKey(t.Context(), a.User)
	if err != nil {
		t.Fatalf("CreateAccessKey: %v", err)
	}
	req.Current = a.Key
	again := ensureAccess(t, s, req)
	if again.Key != a.Key {
		t.Errorf("EnsureAccess replaced the Secret's usable key %s with %s", a.Key.ID, again.Key.ID)
	}
	if diff := cmp.Diff([]string{a.Key.ID}, keyIDs(t, s, a.User)); diff != "" {
		t.Errorf("the user's keys after the orphan %s (-want +got):\n%s", orphan.ID, diff)
	}
	if want := []string{fmt.Sprintf("deleted 1 stale access keys of %s", a.User)}; !cmp.Equal(want, again.Changes) {
		t.Errorf("Changes = %q, want %q", again.Changes, want)
	}
}

func TestEnsureAccessRotatesAKeyIAMNoLongerHas(t *testing.T) {
	t.Parallel()
	s, req, first := newAccess(t, "access-lost")
	old := first.Key
	user := UserName(req.Org)
	if _, err := s.DeleteAccessKeys(t.Context(), user); err != nil {
		t.Fatalf("DeleteAccessKeys: %v", err)
	}
	req.Current = old
	a := ensureAccess(t, s, req)
	if a.Key.ID == old.ID || a.Key.Secret == "" {
		t.Fatalf("EnsureAccess kept the deleted key %s; want a new one", old.ID)
	}
	if want := []string{fmt.Sprintf("rotated to access key %s for prefix %s", a.Key.ID, req.Prefix)}; !cmp.Equal(want, a.Changes) {
		t.Errorf("Changes = %q, want %q", a.Changes, want)
	}
	if diff := cmp.Diff([]string{a.Key.ID}, keyIDs(t, s, user)); diff != "" {
		t.Errorf("the user's keys (-want +got):\n%s", diff)
	}
	waitWorks(t, s, a.Key, req.Prefix)
}

func TestEnsureAccessKeepsANewKeyThatS3DoesNotHonourYet(t *testing.T) {
	t.Parallel()
	s, req, a := newAccess(t, "access-young")
	// The stack's S3 refuses a key for iamDelay after IAM issued it, as S3
	// on AWS may: calling it broken would rotate to a key just as new.
	if works, err := s.AccessKeyWorks(t.Context(), a.Key.ID, a.Key.Secret, req.Prefix); err != nil || works {
		t.Fatalf("AccessKeyWorks of a key issued a moment ago = %v, %v; want false under the stack's IAM delay", works, err)
	}
	req.Current = a.Key
	wantKeptAlone(t, s, req, a)
}

func TestEnsureAccessWithNoneDeletesTheUserAndLeavesAnotherOrganizationsAlone(t *testing.T) {
	t.Parallel()
	s, req, a := newAccess(t, "access-none")

	// The same user name claimed by another organization's UID: not ours
	// to revoke.
	other := req
	other.None, other.Marker.UID = true, "uid-someone-else"
	if got, err := s.EnsureAccess(t.Context(), other); err != nil || len(got.Changes) != 0 {
		t.Fatalf("EnsureAccess(None) for another UID = %q, %v; want no change and no error", got.Changes, err)
	}
	if diff := cmp.Diff([]string{a.Key.ID}, keyIDs(t, s, a.User)); diff != "" {
		t.Errorf("keys after another UID's None (-want +got):\n%s", diff)
	}

	req.None, req.Current = true, a.Key
	got, err := s.EnsureAccess(t.Context(), req)
	if err != nil {
		t.Fatalf("EnsureAccess(None): %v", err)
	}
	if want := []string{fmt.Sprintf("deleted IAM user %s and its keys: storage.access is None", a.User)}; !cmp.Equal(want, got.Changes) {
		t.Errorf("Changes = %q, want %q", got.Changes, want)
	}
	if _, err := s.ListAccessKeys(t.Context(), a.User); !errors.Is(err, ErrNotFound) {
		t.Errorf("ListAccessKeys after None = %v, want ErrNotFound", err)
	}
	if again, err := s.EnsureAccess(t.Context(), req); err != nil || len(again.Changes) != 0 {
		t.Errorf("a second EnsureAccess(None) = %q, %v; want no change and no error", again.Changes, err)
	}
}
